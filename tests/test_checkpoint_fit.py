"""A checkpoint no input size fits is refused (issue 13 point 4, issue 12 point 8).

``report.fit`` and ``materialize(state_dict=)`` name the key and both shapes
for a checkpoint that contradicts the model: a concrete size that differs, a
symbolic one no input size reaches, a different rank. A state_dict given as a
path, or holding something other than tensors, is an explicit error naming
the key, never an AttributeError from deep inside.
"""

from __future__ import annotations

import pathlib

import pytest
import torch
import torch.nn as nn

import lazyfx
from lazyfx.errors import LazyFXError, ShapeError, SpecError


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 64, 3, stride=2)
        self.head = nn.LazyLinear(10)

    def forward(self, x):
        return self.head(torch.flatten(self.conv(x), 1))


def checkpoint(size: int = 32) -> dict:
    return lazyfx.materialize(Net(), ("B", 3, size, size), seed=0).state_dict()


def test_a_fitting_checkpoint_is_accepted():
    domain = lazyfx.infer(Net(), ("B", 3, "H", "H")).fit(checkpoint())
    assert domain.contains(B=2, H=32) and not domain.contains(B=2, H=28)


def test_a_fitting_checkpoint_materializes_with_its_values():
    state = checkpoint()
    eager = lazyfx.materialize(Net(), ("B", 3, "H", "H"), state_dict=state)
    assert all(torch.equal(state[k], v) for k, v in eager.state_dict().items())
    assert eager(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_a_symbolic_size_no_input_reaches_is_refused():
    report = lazyfx.infer(Net(), ("B", 3, "H", "H"))  # head needs 64*k**2 inputs: never 7
    with pytest.raises(ShapeError, match=r"'head.weight' has shape \(10, 7\).*64") as info:
        report.fit({"head.weight": torch.zeros(10, 7)})
    assert info.value.diagnostics[0].code.code == "LFX030"


def test_materialize_refuses_a_checkpoint_no_input_fits():
    state = {**checkpoint(), "head.weight": torch.zeros(10, 7)}
    with pytest.raises(ShapeError, match=r"'head.weight' has shape \(10, 7\)"):
        lazyfx.materialize(Net(), ("B", 3, "H", "H"), state_dict=state)


def test_a_concrete_dim_of_a_partly_symbolic_shape_is_checked():
    report = lazyfx.infer(Net(), ("B", 3, "H", "H"))  # (10, 64*k**2): 10 rows
    with pytest.raises(ShapeError, match=r"'head.weight' has shape \(5, 14400\), but the inputs resolve it to \(10,"):
        report.fit({"head.weight": torch.zeros(5, 64 * 15 * 15)})


def test_a_different_rank_is_refused():
    with pytest.raises(ShapeError, match=r"'head.weight' has shape \(10,\)"):
        lazyfx.infer(Net(), ("B", 3, "H", "H")).fit({"head.weight": torch.zeros(10)})


@pytest.mark.parametrize("path", ["model.pt", pathlib.Path("model.pt")])
def test_a_path_is_a_spec_error_saying_how_to_load_it(path):
    with pytest.raises(SpecError, match=r"torch.load\(.*weights_only=True\)"):
        lazyfx.materialize(Net(), state_dict=path)
    with pytest.raises(SpecError, match=r"torch.load\(.*weights_only=True\)"):
        lazyfx.materialize(Net(), ("B", 3, 32, 32), state_dict=path)
    with pytest.raises(SpecError, match=r"weights_only=True"):
        lazyfx.infer(Net(), ("B", 3, "H", "H")).fit(path)


@pytest.mark.parametrize("value", [[1, 2], 3, None])
def test_a_value_that_is_not_a_tensor_names_the_key(value):
    state = {**checkpoint(), "head.weight": value}
    with pytest.raises(SpecError, match="'head.weight'"):
        lazyfx.materialize(Net(), state_dict=state)
    with pytest.raises(SpecError, match="'head.weight'"):
        lazyfx.infer(Net(), ("B", 3, "H", "H")).fit(state)


@pytest.mark.parametrize("shape", [(10,), (10, 2304, 1), ()])
def test_a_wrong_rank_without_inputs_names_the_key(shape):
    state = {**checkpoint(), "head.weight": torch.zeros(shape)}
    with pytest.raises(ShapeError, match=r"'head.weight' has shape"):
        lazyfx.materialize(Net(), state_dict=state)


def test_a_wrong_rank_for_a_convolution_names_the_key():
    class Conv(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.LazyConv2d(4, 3)

        def forward(self, x):
            return self.conv(x)

    with pytest.raises(ShapeError, match=r"'conv.weight' has shape \(4, 3\)"):
        lazyfx.materialize(Conv(), state_dict={"conv.weight": torch.zeros(4, 3), "conv.bias": torch.zeros(4)})


def test_every_malformed_checkpoint_is_a_lazyfx_error():
    for state in ({"head.weight": "x"}, {"head.weight": torch.zeros(2, 2, 2)}, {1: torch.zeros(3)}):
        with pytest.raises(LazyFXError):
            lazyfx.materialize(Net(), state_dict=state, strict=False)


def test_a_size_only_the_domain_rules_out_names_the_key_and_both_shapes():
    report = lazyfx.infer(Net(), ("B", 3, "H", "H"))  # 64*k**2 is never 64*15*16
    with pytest.raises(ShapeError, match=r"'head.weight' has shape \(10, 15360\), but the inputs resolve it to "
                                         r"\(10, 64\*\(\(H - 3\)//2 \+ 1\)\*\*2\) \(no input size gives"):
        report.fit({"head.weight": torch.zeros(10, 64 * 15 * 16)})
    assert report.fit({"head.weight": torch.zeros(10, 64 * 15 * 15)}).contains(B=1, H=31)
