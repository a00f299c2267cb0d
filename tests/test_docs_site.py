"""The documentation site builds with warnings as errors (broken links and anchors, missing
pages, docstrings griffe cannot read), and what it renders is complete: every snippet
(example sources and their recorded output) is included and the API reference is there."""

import html
import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).parent.parent


def test_site_builds_strictly_and_includes_every_snippet(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                            cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    pages = {p.relative_to(site).as_posix(): p.read_text() for p in site.rglob("*.html")}
    assert not [name for name, html in pages.items() if "--8&lt;--" in html or "--8<--" in html]
    examples = html.unescape(re.sub(r"<[^>]+>", "", pages["examples/index.html"]))  # the text, as a reader sees it
    for output in (ROOT / "examples" / "output").glob("*.txt"):
        for line in output.read_text().splitlines()[:3]:
            assert line.strip() in examples, f"{output.name} not shown: {line!r} missing"
    api = pages["api/index.html"]
    for name in ("lazyfx.infer", "lazyfx.materialize", "lazyfx.Dim", "lazyfx.Report", "lazyfx.ShapeError"):
        assert f'id="{name}"' in api, f"{name} missing from the API reference"
