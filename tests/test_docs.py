"""The docs are part of the product: generated pages are current, the README's
quick start is what CI runs, and internal links resolve."""

import pathlib
import re

from tools import docgen

ROOT = pathlib.Path(__file__).parent.parent


def test_generated_pages_are_current():
    for name, render in docgen.PAGES.items():
        assert (ROOT / "docs" / name).read_text() == render(), f"docs/{name} is stale: run python -m tools.docgen"


def test_readme_quick_start_is_two_commands_and_ci_runs_the_second():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start\s+```bash\n(.*?)```", readme, re.S).group(1).strip().splitlines()
    assert len(block) == 2
    assert "lazyfx show" in block[0] and "torch==2.13.0" in block[0]
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci == block[1]


def test_markdown_links_resolve():
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#]+\.md|examples/)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
