"""Check a folder of models for shape bugs, as CI and the pre-commit hook do.

shape_check_project/pyproject.toml lists two models under [tool.lazyfx]; one of
them has a deliberate bug (a hard-coded nn.Linear that no longer fits). `lazyfx
check` reports it like a linter, path:line:col, and exits 1; given the changed
files (as pre-commit passes them), it checks only the models that use them.
--ignore (or `ignore` in [tool.lazyfx], or a `# lazyfx: ignore[LFX030]` comment
on the line) silences a code; --format sarif writes SARIF 2.1.0 for GitHub code
scanning. The cache folder (.lazyfx_cache/ beside pyproject.toml) makes a second
run that changed nothing skip the analysis, and torch's import, altogether.

Run: python examples/check_a_model_folder.py
"""

import json
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
lazyfx_check("--ignore", "LFX030")              # selection by code

sarif = subprocess.run([sys.executable, "-m", "lazyfx", "check", "--format", "sarif"], cwd=PROJECT,
                       capture_output=True, text=True)
log = json.loads(sarif.stdout)
print("$ lazyfx check --format sarif")
for result in log["runs"][0]["results"]:
    where = result["locations"][0]["physicalLocation"]
    print(f"  SARIF {log['version']}: {result['ruleId']} ({result['level']}) at "
          f"{where['artifactLocation']['uri']}:{where['region']['startLine']}")
