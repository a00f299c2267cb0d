"""tools/compat.py, the parts that need no network: every pip command it runs is pinned to the
torch under test, and the summary line is pytest's own (or says how the run ended without one:
a crash, or the exit status)."""

import importlib.util
from pathlib import Path

# loaded from its file: the repository root need not be on sys.path (pytest run from elsewhere)
_SPEC = importlib.util.spec_from_file_location("tools_compat", Path(__file__).resolve().parents[1] / "tools/compat.py")
tool = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(tool)


def test_pip_environment_pins_torch_and_drops_the_callers_python_path(monkeypatch, tmp_path):
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    monkeypatch.setenv("PIP_CONSTRAINT", "/etc/xdg/pip/constraints.txt")
    pin = tmp_path / "torch-2.15.0.constraints.txt"
    env = tool.pip_environment(pin)
    assert env["PIP_CONSTRAINT"] == str(pin)
    assert "PYTHONPATH" not in env


def _log(tmp_path: Path, text: str) -> Path:
    log = tmp_path / "run.log"
    log.write_text(text)
    return log


def test_summary_is_pytests_closing_line(tmp_path):
    log = _log(tmp_path, "....F\nFAILED tests/test_x.py::test_y - AssertionError\n"
                         "=== 6 failed, 1324 passed, 2 skipped in 512.30s (0:08:32) ===\n")
    assert tool.pytest_summary(log) == "6 failed, 1324 passed, 2 skipped in 512.30s"


def test_quiet_summary_without_rules(tmp_path):
    assert tool.pytest_summary(_log(tmp_path, "....\n4 passed in 0.51s\n")) == "4 passed in 0.51s"


def test_a_crash_has_no_summary(tmp_path):
    log = _log(tmp_path, "....Fatal Python error: Segmentation fault\n  File \"x.py\", line 3 in f\n")
    assert tool.pytest_summary(log) is None


def test_a_run_killed_by_a_signal_is_a_crash():
    assert tool.suite_outcome(-11, None, 200.4) == "pytest crashed (exit -11, signal 11) after 200s, no summary"
    assert tool.suite_outcome(139, None, 12.0) == "pytest crashed (exit 139, signal 11) after 12s, no summary"


def test_a_run_that_exits_without_its_closing_line_is_not_called_a_crash():
    # pytest -qq, or a usage error: exit 1 or 4, no signal
    assert tool.suite_outcome(1, None, 200.0) == "pytest exited 1 after 200s without a summary line"
    assert tool.suite_outcome(1, "17 failed, 40 passed in 200.00s", 200.0) == "17 failed, 40 passed in 200.00s"
    assert tool.suite_outcome(0, "40 passed in 9.10s", 9.1) == "40 passed in 9.10s"
