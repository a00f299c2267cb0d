"""Declared sizes are requirements: lazyfx check reports every size you promise that the model rejects.

A classifier's head was sized for 64x64 images (two conv + pool stages, then a
hard-coded nn.Linear(32*16*16, 10)). The team declares "any square image of at
least 32 pixels"; the check names the smallest declared size that fails, the
condition it violates and the line that imposes it, and confirms by running the
model at that size. A symbol declared without bounds is a size that varies: a
skip connection concatenated at the wrong resolution only works for 1x1 images,
and that is a finding too, while a plain lower bound (a kernel must fit) is not.

Run: python examples/declared_sizes.py
"""

import os
import tempfile
import textwrap

import torch

MODELS = textwrap.dedent("""
    import torch
    import torch.nn as nn


    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.LazyConv2d(16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                          nn.LazyConv2d(32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
            self.head = nn.Linear(32 * 16 * 16, 10)  # sized for 64x64 inputs

        def forward(self, x):
            return self.head(self.features(x).flatten(1))


    class SkipNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.down = nn.LazyConv2d(16, 3, stride=2, padding=1)
            self.side = nn.LazyConv2d(8, 1)
            self.head = nn.LazyLinear(10)

        def forward(self, x):
            y = torch.cat([self.down(x), self.side(x)], dim=1)  # 'side' should be strided too
            return self.head(y.mean((2, 3)))


    class Fixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.LazyConv2d(8, 3)
            self.head = nn.LazyLinear(10)

        def forward(self, x):
            return self.head(self.conv(x).mean((2, 3)))
""")

PYPROJECT = textwrap.dedent("""
    [[tool.lazyfx.models]]
    name = "classifier"
    target = "models.py:Classifier"
    inputs = ["B,3,H,W"]
    constraints = ["H>=32", "W==H"]          # any square image of at least 32 pixels

    [[tool.lazyfx.models]]
    name = "skip"
    target = "models.py:SkipNet"
    inputs = ["B,3,H,W"]                     # no bounds: H and W are sizes that vary

    [[tool.lazyfx.models]]
    name = "fixed"
    target = "models.py:Fixed"
    inputs = ["B,3,H,W"]                     # valid for H, W >= 3: a lower bound is fine
""")


def main() -> None:
    import sys

    from lazyfx.cli import main as lazyfx

    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(folder, "models.py"), "w") as f:
            f.write(MODELS)
        with open(os.path.join(folder, "pyproject.toml"), "w") as f:
            f.write(PYPROJECT)
        os.chdir(folder)
        sys.path.insert(0, folder)
        sys.stderr = sys.stdout  # the summary line too, in order
        print("$ lazyfx check")
        code = lazyfx(["check"])
        print("exit code:", code)

        import models

        for size in (32, 64):  # the counterexample fails in PyTorch; the size the head was made for runs
            model = models.Classifier()
            head_inputs = []  # the sizes that reach the head, to hold against the finding
            model.head.register_forward_pre_hook(lambda module, args: head_inputs.append(tuple(args[0].shape)))
            try:
                model(torch.zeros(1, 3, size, size))
                print(f"Classifier at {size}x{size}: runs")
            except RuntimeError:  # not PyTorch's message: its wording differs between torch releases
                print(f"Classifier at {size}x{size}: fails in PyTorch: the head, "
                      f"Linear(in_features={model.head.in_features}), gets an input of size {head_inputs[-1]}")


if __name__ == "__main__":
    main()
