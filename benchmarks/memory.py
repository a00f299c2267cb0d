"""Peak memory of materialize against the alternatives, each in a fresh process.

    python -m benchmarks.memory [--width 4096] [--layers 6]

The model is an MLP of lazy layers (``--layers`` LazyLinear of ``--width``
features, ~width^2 parameters each). Each measurement runs in its own
process: it builds the lazy model, records the peak resident set size
(RSS high-water mark), does the work, and reports how much the peak grew,
as a multiple of the final parameters' bytes (1.0 = nothing but the
parameters was ever allocated).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys
import torch, torch.nn as nn
import lazyfx

width, layers, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
torch.set_num_threads(1)

def lazy():
    return nn.Sequential(*[nn.LazyLinear(width) for _ in range(layers)])

def eager():
    return nn.Sequential(*[nn.Linear(width, width) for _ in range(layers)])

model = lazy() if mode != "eager constructor" else None
x = None
if mode == "real dry run":
    x = torch.zeros(1, width)
lazyfx.infer(nn.Sequential(nn.LazyLinear(4)), ("B", 4))  # warm the imports
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
if mode == "materialize cpu":
    result = lazyfx.materialize(model, ("B", width), inplace=True)
elif mode == "materialize meta":
    result = lazyfx.materialize(model, ("B", width), device="meta", inplace=True)
elif mode == "real dry run":
    with torch.no_grad():
        model.eval()(x)
    result = model
else:
    result = eager()
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
params = sum(p.numel() * p.element_size() for p in (result.parameters() if mode != "materialize meta" else []))
print(json.dumps({"grew": after - before, "params": params}))
"""

MODES = ["materialize cpu", "materialize meta", "real dry run", "eager constructor"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--layers", type=int, default=6)
    args = parser.parse_args(argv)
    param_bytes = args.layers * (args.width * args.width + args.width) * 4
    print(f"MLP of {args.layers} x LazyLinear({args.width}): {param_bytes / 2**20:.0f} MiB of parameters")
    print(f"{'':20}{'peak grew (MiB)':>16}{'x params':>10}")
    for mode in MODES:
        out = subprocess.run([sys.executable, "-c", CHILD, str(args.width), str(args.layers), mode],
                             capture_output=True, text=True, check=True).stdout
        grew = json.loads(out.strip().splitlines()[-1])["grew"]
        print(f"{mode:20}{grew / 2**20:16.0f}{grew / param_bytes:10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
