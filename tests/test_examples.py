"""Every script in examples/ runs (as a user would run it) and prints what the docs show."""

import pathlib
import subprocess
import sys

import pytest

EXAMPLES = sorted((pathlib.Path(__file__).parent.parent / "examples").glob("*.py"))

EXPECTED = {
    "quickstart.py": ["head: LazyLinear -> Linear(in_features=2304)", "bit-identical to a dry run: True"],
    "valid_input_sizes.py": ["valid for: H >= 10 and W >= 10", "H = W = 9: rejected", "H = W = 64: ok",
                             "refused: lazy module '2' (LazyLinear) needs in_features"],
    "materialize_for_device.py": ["meta parameters:", "after to_empty: torch.Size([2, 1000])", "scripted:"],
}


def test_every_example_is_checked():
    assert {p.name for p in EXAMPLES} == set(EXPECTED)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(path):
    result = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    for line in EXPECTED[path.name]:
        assert line in result.stdout, f"{path.name} did not print {line!r}:\n{result.stdout}"
