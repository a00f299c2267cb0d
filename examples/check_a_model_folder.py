"""Check a folder of models for shape bugs, as CI and the pre-commit hook do.

shape_check_project/pyproject.toml lists two models under [tool.lazyfx]; one of
them has a deliberate bug (a hard-coded nn.Linear that no longer fits). `lazyfx
check` reports it like a linter, path:line:col, and exits 1; given the changed
files (as pre-commit passes them), it checks only the models that use them.

Run: python examples/check_a_model_folder.py
"""

import pathlib
import subprocess
import sys

PROJECT = pathlib.Path(__file__).parent / "shape_check_project"


def lazyfx_check(*args):
    command = [sys.executable, "-m", "lazyfx", "check", *args]
    result = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True)
    print("$", " ".join(["lazyfx", "check", *args]))
    for line in (result.stdout + result.stderr).splitlines():
        if line.strip():
            print("  " + line)
    print("  exit code:", result.returncode)


lazyfx_check()                                  # every configured model
lazyfx_check("models/segmenter.py")             # only the models that use a changed file
lazyfx_check("--format", "github")              # annotations on the pull request in GitHub Actions
