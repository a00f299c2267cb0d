"""The benchmark runner keeps working (its quick mode runs and writes the report); the
numbers themselves are measured by `python -m benchmarks`, never asserted in tests."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).parent.parent


def test_quick_benchmark_writes_its_tables(tmp_path):
    output = tmp_path / "benchmarks.md"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--no-memory", "--output", str(output)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    text = output.read_text()
    for heading in ("## ResNet-50", "## Targets", "## Scaling"):
        assert heading in text
    assert "| infer (B symbolic) |" in text and "| torch.export (dynamic B) |" in text
    for column in ("conv stack (B symbolic)", "fx.symbolic_trace (conv stack)", "ceil-mode pool stack (T symbolic)"):
        assert f" {column} |" in text.split("## Scaling")[1]
    for target in ("| per node, 1,000 vs 100 nodes, within 1.5x (conv stack (H, W symbolic)) |",
                   "| infer (B symbolic) <= 1.2x fx.symbolic_trace (1,000-node conv stack) |",
                   "| formula linear in depth (100 vs 1 ceil-mode pools) |"):
        assert target in text
    assert "| 100 | " in text.split("formula characters")[1]
    assert (tmp_path / "benchmarks-scaling.png").stat().st_size > 1000


def test_precommit_benchmark_runs_every_case():
    """benchmarks/precommit.py, as small as it goes: its table, no timing asserted."""
    result = subprocess.run([sys.executable, "-m", "benchmarks.precommit", "--models", "2", "--repeat", "1"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for row in ("every model analysed (no cache)", "nothing changed (all from the cache, no torch import)",
                "one model's file changed", "that model alone, --no-cache", "One model changed / that model alone"):
        assert row in result.stdout


def test_scaling_only_rewrites_the_scaling_section(tmp_path):
    output = tmp_path / "benchmarks.md"
    output.write_text("# Benchmarks\n\nkept\n\n## Scaling\n\nold numbers\n")
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--scaling-only", "--quick", "--output", str(output)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    text = output.read_text()
    assert text.startswith("# Benchmarks\n\nkept\n\n## Scaling\n\nMeasured by `python -m benchmarks --scaling-only`")
    assert "old numbers" not in text and "| formula linear in depth (100 vs 1 ceil-mode pools) |" in text
