"""Libraries that patch torch on import (PyTorch Geometric replaces torch.select and
torch.index_select with Python wrappers) change neither the rules lazyfx uses nor the ops page,
whichever is imported first."""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).parent.parent

PROBE = """
import torch, torch.nn as nn
{first}
import lazyfx
from tools import docgen

class Pick(nn.Module):
    def forward(self, x, i):
        return torch.index_select(x, 1, i) + torch.select(x, 1, 0).unsqueeze(1)

report = lazyfx.infer(Pick(), ("B", 5), "K:int64")
rules = {{n.target: n.rule for n in report.nodes if n.op == "call_function"}}
assert rules["torch.index_select"] == "index.index_select", rules
assert rules["torch.select"] == "index.select", rules
assert (docgen.ROOT / "docs" / "ops.md").read_text() == docgen.PAGES["ops.md"](), "ops.md differs"
print(report.output)
"""


def run_probe(first: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", PROBE.format(first=first)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_torch_geometric_imported_first():
    assert run_probe("import torch_geometric") == "(B, K)"


def test_torch_geometric_imported_later():
    assert run_probe("import lazyfx.rules.all; import torch_geometric") == "(B, K)"
