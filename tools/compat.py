"""Run the test suite against one torch release, in a fresh virtual environment.

    python -m tools.compat 2.15.0                      # the whole suite; prints one summary line
    python -m tools.compat 2.4.1 -- tests/test_zoo.py  # only these pytest arguments
    python -m tools.compat 2.15.0 --reuse -- -x        # keep the venv of an earlier run, stop at a failure

The venv is ``<venvs>/torch-<version>`` (default ``/tmp/compat-venvs``), made with
this interpreter and using the venv's own pip. Every pip command pins torch twice:
``torch==<version>`` on its command line, and ``PIP_CONSTRAINT`` pointing at a file
that holds the same pin -- the constraint in the environment replaces the one pip's
configuration files name (a machine-wide cap such as ``torch<=2.14.1`` included), so pip
can neither refuse the release nor swap it for another while it resolves the extras.
lazyfx is installed from this checkout with the first of ``dev``, then its parts
(``onnx``, ``docs``), that resolves for that torch. The installed lazyfx then runs the
README's demo (``python -m lazyfx show lazyfx.demo:Net --input B,3,32,32``), and the suite
runs from the checkout (``python -m pytest`` in the repository root imports its ``lazyfx``).
The last line printed is the summary, e.g.::

    torch 2.15.0, python 3.11.7, extras [dev]: README demo ok; suite: 1330 passed, 1 skipped in 612.3s (2026-12-02); log ...

The full output of pip and pytest goes to ``<venvs>/torch-<version>.log``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VENVS = Path("/tmp/compat-venvs")
# Tried in order; the first whose install resolves is used. ``dev`` holds the others.
EXTRAS = ("dev", "onnx,docs", "onnx", "docs", "")


class Step:
    """Runs commands with the output appended to one log file."""

    def __init__(self, log: Path, env: dict[str, str]):
        self.log, self.env = log, env

    def run(self, args: Sequence[str], **kwargs) -> int:
        with self.log.open("a") as out:
            out.write(f"\n$ {' '.join(map(str, args))}\n")
            out.flush()
            return subprocess.run(list(map(str, args)), stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                  **kwargs).returncode


def pip_environment(constraints: Path) -> dict[str, str]:
    """The environment for the venv's commands: pip's constraint is the torch pin alone,
    and nothing of the calling environment's Python path leaks in."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV")}
    env["PIP_CONSTRAINT"] = str(constraints)
    return env


def make_venv(path: Path, reuse: bool) -> Path:
    python = path / "bin" / "python"
    if reuse and python.exists():
        return python
    if path.exists():
        shutil.rmtree(path)
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    return python


def installed_torch(step: Step, python: Path) -> Optional[str]:
    """The venv's torch version without its local part (``2.4.1+cu121`` -> ``2.4.1``)."""
    out = subprocess.run([str(python), "-c", "import torch; print(torch.__version__)"], capture_output=True,
                         text=True, env=step.env, cwd="/")
    return out.stdout.strip().split("+")[0] if out.returncode == 0 else None


def install(step: Step, python: Path, torch_version: str) -> Optional[str]:
    """Install torch, then lazyfx with the first extras that resolve; returns those extras
    ('' for none), or None when not even torch installs."""
    pip = [python, "-m", "pip", "install", "--disable-pip-version-check"]
    if step.run([*pip, f"torch=={torch_version}"]) != 0:
        return None
    for extras in EXTRAS:
        target = f"{REPO}[{extras}]" if extras else str(REPO)
        if step.run([*pip, f"torch=={torch_version}", target]) == 0:
            return extras
    return None


_SUMMARY = re.compile(r"^=*\s*(\d+ \w+.* in [\d.]+s.*?)\s*=*$")


def pytest_summary(log: Path) -> Optional[str]:
    """pytest's closing line (``6 failed, 1324 passed in 500.1s``), from the log."""
    lines = log.read_text(errors="replace").splitlines()
    for line in reversed(lines):
        match = _SUMMARY.match(line.strip())
        if match:
            return re.sub(r" \(\d+:\d\d:\d\d\)$", "", match.group(1))
    return None


def suite_outcome(rc: int, summary: Optional[str], seconds: float) -> str:
    """What the summary line says of pytest's run: its closing line, or, without one, a
    crash (killed by a signal) or the exit status it stopped with (a usage error, or ``-qq``,
    which leaves the closing line out)."""
    if rc < 0 or rc > 128:
        signal = -rc if rc < 0 else rc - 128
        return f"pytest crashed (exit {rc}, signal {signal}) after {seconds:.0f}s, no summary"
    if summary is None:
        return f"pytest exited {rc} after {seconds:.0f}s without a summary line"
    return summary


def run_suite(step: Step, python: Path, pytest_args: Sequence[str]) -> str:
    start = time.monotonic()
    rc = step.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *pytest_args], cwd=REPO)
    return suite_outcome(rc, pytest_summary(step.log), time.monotonic() - start)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.compat", description=__doc__.split("\n")[0])
    parser.add_argument("torch_version", help="the torch release to test, e.g. 2.15.0")
    parser.add_argument("--venvs", type=Path, default=DEFAULT_VENVS, help="where the venvs go (%(default)s)")
    parser.add_argument("--reuse", action="store_true",
                        help="keep an existing venv for this release (the installs still run, and find it done)")
    parser.add_argument("--find-links", action="append", default=[], metavar="DIR",
                        help="also look for wheels here (e.g. ones fetched before with pip download)")
    parser.epilog = "Arguments after -- go to pytest (default: the whole suite)."
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.pytest_args = argv[split + 1 :]

    version = args.torch_version
    args.venvs.mkdir(parents=True, exist_ok=True)
    constraints = args.venvs / f"torch-{version}.constraints.txt"
    constraints.write_text(f"torch=={version}\n")
    log = args.venvs / f"torch-{version}.log"
    log.write_text(f"tools.compat {version} {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC\n")
    step = Step(log, pip_environment(constraints))
    if args.find_links:
        step.env["PIP_FIND_LINKS"] = " ".join([*args.find_links, step.env.get("PIP_FIND_LINKS", "")]).strip()
    python = make_venv(args.venvs / f"torch-{version}", args.reuse)

    head = f"torch {version}, python {platform.python_version()}"
    extras = install(step, python, version)
    if extras is None:
        print(f"{head}: install failed (see {log})")
        return 2
    got = installed_torch(step, python)
    if got != version:
        print(f"{head}: the venv has torch {got}, not {version} (see {log})")
        return 2
    demo = "ok" if step.run([python, "-m", "lazyfx", "show", "lazyfx.demo:Net", "--input", "B,3,32,32"], cwd="/") == 0 \
        else "failed"
    summary = run_suite(step, python, args.pytest_args)
    date = datetime.date.today().isoformat()
    print(f"{head}, extras [{extras}]: README demo {demo}; suite: {summary} ({date}); log {log}")
    passed = " passed" in summary and not re.search(r"failed|error|crashed", summary)
    return 0 if passed and demo == "ok" else 1


if __name__ == "__main__":
    raise SystemExit(main())
