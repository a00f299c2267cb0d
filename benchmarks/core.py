"""lazyfx against the alternatives on a lazy ResNet-50, in one run, as ratios.

    python -m benchmarks.core [--repeat 7]

Each alternative is timed interleaved with the others (warm-up first, then
the median of --repeat rounds), in this process:

* ``infer (B symbolic)``: lazyfx.infer with a symbolic batch, fx tracing included;
* ``meta dry run``: the lazy model run once on a concrete meta batch (it initializes
  the lazy modules on meta, so a fresh model each round);
* ``real dry run``: the same on a real CPU batch of 1 in eval mode;
* ``materialize cpu``: lazyfx.materialize(device="cpu");
* ``eager constructor``: building the equivalent eager ResNet-50 directly;
* ``torch.export (dynamic B)``: exporting the eager model with a dynamic batch Dim.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import lazyfx
from benchmarks.models import ResNet50

SPEC = ("B", 3, 224, 224)


def meta_dry_run():
    with torch.device("meta"):  # (.to("meta") would break the lazy parameters: pytorch#70505)
        model = ResNet50()
    model(torch.empty(2, 3, 224, 224, device="meta"))


def real_dry_run():
    model = ResNet50().eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))


def export_dynamic_batch(eager=ResNet50(lazy=False).eval()):
    batch = torch.export.Dim("B", min=2, max=1024)
    torch.export.export(eager, (torch.zeros(2, 3, 224, 224),), dynamic_shapes=({0: batch},))


CANDIDATES = {
    "infer (B symbolic)": lambda: lazyfx.infer(ResNet50(), SPEC),
    "meta dry run": meta_dry_run,
    "real dry run": real_dry_run,
    "materialize cpu": lambda: lazyfx.materialize(ResNet50(), SPEC, device="cpu"),
    "eager constructor": lambda: ResNet50(lazy=False),
}


def measure(candidates, repeat: int) -> dict[str, float]:
    for fn in candidates.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeat):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--export", action="store_true", help="also time torch.export (slow)")
    args = parser.parse_args(argv)
    candidates = dict(CANDIDATES)
    if args.export:
        candidates["torch.export (dynamic B)"] = export_dynamic_batch
    medians = measure(candidates, args.repeat)
    base = medians["infer (B symbolic)"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeat}")
    print(f"{'':28}{'seconds':>10}{'x infer':>10}")
    for name, seconds in medians.items():
        print(f"{name:28}{seconds:10.4f}{seconds / base:10.2f}")
    print(f"materialize cpu / eager constructor: {medians['materialize cpu'] / medians['eager constructor']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
