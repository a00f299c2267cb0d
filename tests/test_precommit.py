"""A real pre-commit run: a commit with a shape bug is blocked with the finding, the fixed
commit passes."""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

GOOD = textwrap.dedent("""
    import torch.nn as nn


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.LazyConv2d(8, 3)
            self.fc = nn.Linear({in_features}, 10)

        def forward(self, x):
            return self.fc(self.conv(x).flatten(1))
""")

PYPROJECT = textwrap.dedent("""
    [[tool.lazyfx.models]]
    target = "model.py:Net"
    inputs = ["B,3,32,32"]
    expect_output = "B,10"
""")

HOOKS = textwrap.dedent(f"""
    repos:
      - repo: local
        hooks:
          - id: lazyfx-check
            name: lazyfx shape check
            entry: {sys.executable} -m lazyfx check
            language: system
            types: [python]
            require_serial: true
""")


def git(repo, *args, check=True):
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=check)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_pre_commit_blocks_a_shape_bug_and_passes_the_fix(tmp_path):
    pre_commit = [sys.executable, "-m", "pre_commit"]
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "dev@example.com")
    git(repo, "config", "user.name", "dev")
    (repo / "pyproject.toml").write_text(PYPROJECT)
    (repo / ".pre-commit-config.yaml").write_text(HOOKS)
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "cache")}
    subprocess.run([*pre_commit, "install"], cwd=repo, check=True, capture_output=True, env=env)

    (repo / "model.py").write_text(GOOD.format(in_features=6272))  # 8*28*28 would be right: a bug
    git(repo, "add", ".")
    blocked = subprocess.run(["git", "commit", "-qm", "model"], cwd=repo, capture_output=True, text=True, env=env)
    assert blocked.returncode != 0
    assert "model.py:12:9: LFX030 Linear has in_features=6272 but the input's last dim is 7200" in blocked.stdout + blocked.stderr

    (repo / "model.py").write_text(GOOD.format(in_features=7200))
    git(repo, "add", ".")
    passed = subprocess.run(["git", "commit", "-qm", "model"], cwd=repo, capture_output=True, text=True, env=env)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "lazyfx shape check" in passed.stdout + passed.stderr
