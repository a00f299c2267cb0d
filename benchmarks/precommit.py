"""`lazyfx check` as pre-commit runs it: a fresh interpreter per run, on a project of N small
models (default 10) that share a file of blocks.

    python -m benchmarks.precommit                 # 10 models, 5 rounds
    python -m benchmarks.precommit --models 2 --repeat 1

Each round times, in this order: a run with the cache removed (every model analysed), a run
where nothing changed (every model from the cache: torch is not imported), a run after one
model's file changed (that model analysed again), and the changed model alone without the
cache (``--no-cache`` on a configuration listing only it: the torch import and its analysis,
the floor for a run that has to analyse it). ``python -c pass`` and ``python -c "import
torch"`` are the interpreter's and torch's own start. Medians of the rounds; the targets
(issue 17) are an unchanged run of 10 models within 0.3 s and a run with one model changed
within 1.2x the changed model alone.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent

BLOCKS = '''import torch.nn as nn


def stage(channels):
    return nn.Sequential(nn.LazyConv2d(channels, 3, padding=1), nn.LazyBatchNorm2d(), nn.ReLU(), nn.MaxPool2d(2))
'''

MODEL = '''import torch.nn as nn

from models.blocks import stage


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(stage({width}), stage({width} * 2), stage({width} * 4))
        self.head = nn.LazyLinear(10)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))
'''

TABLE = '''
[[tool.lazyfx.models]]
name = "m{index}"
target = "models/m{index}.py:Net"
inputs = ["B,3,32,32"]
expect_output = "B,10"
'''


def make_project(folder: pathlib.Path, models: int) -> None:
    (folder / "models").mkdir(parents=True)
    (folder / "models" / "__init__.py").write_text("")
    (folder / "models" / "blocks.py").write_text(BLOCKS)
    for index in range(models):
        (folder / "models" / f"m{index}.py").write_text(MODEL.format(width=8 + index))
    (folder / "pyproject.toml").write_text("".join(TABLE.format(index=i) for i in range(models)))
    (folder / "one.toml").write_text(TABLE.format(index=0))


def timed(command: list[str], folder: pathlib.Path, env: dict) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return elapsed


def measure(models: int, repeat: int) -> dict[str, list[float]]:
    work = pathlib.Path(tempfile.mkdtemp(prefix="lazyfx-precommit-"))
    try:
        make_project(work, models)
        cache = work / ".lazyfx_cache"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        env.pop("LAZYFX_CACHE_DIR", None)
        check = [sys.executable, "-m", "lazyfx", "check"]
        times: dict[str, list[float]] = {name: [] for name in ROWS}
        timed(check, work, env)  # warm the file system caches and the bytecode
        for round_ in range(repeat):
            shutil.rmtree(cache, ignore_errors=True)
            times["cold"].append(timed(check, work, env))
            times["unchanged"].append(timed(check, work, env))
            width = 8 + (round_ + 1) * models  # a width no round used before: a real change
            (work / "models" / "m0.py").write_text(MODEL.format(width=width))
            times["one changed"].append(timed(check, work, env))
            times["changed alone"].append(timed([*check, "--no-cache", "--config", "one.toml"], work, env))
            times["python"].append(timed([sys.executable, "-c", "pass"], work, env))
            times["import torch"].append(timed([sys.executable, "-c", "import torch"], work, env))
        return times
    finally:
        shutil.rmtree(work, ignore_errors=True)


ROWS = {
    "cold": "every model analysed (no cache)",
    "unchanged": "nothing changed (all from the cache, no torch import)",
    "one changed": "one model's file changed",
    "changed alone": "that model alone, --no-cache (torch import + its analysis)",
    "python": "`python -c pass`",
    "import torch": "`python -c \"import torch\"`",
}


def table(times: dict[str, list[float]], models: int) -> str:
    median = {name: statistics.median(values) for name, values in times.items()}
    lines = [f"| `lazyfx check`, {models} models | median s | rounds |", "| --- | ---: | ---: |"]
    lines += [f"| {label} | {median[name]:.3f} | {len(times[name])} |" for name, label in ROWS.items()]
    ratio = median["one changed"] / median["changed alone"]
    lines += ["", f"One model changed / that model alone: {ratio:.2f}x (target <= 1.2x); "
              f"unchanged: {median['unchanged']:.3f} s (target <= 0.3 s for 10 models)."]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=10, help="models in the project (default 10)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds (default 5)")
    args = parser.parse_args(argv)
    print(table(measure(args.models, args.repeat), args.models))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
