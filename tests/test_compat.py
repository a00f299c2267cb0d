"""lazyfx.core.compat: each behaviour gate takes the branch the installed torch actually follows
(the torch call itself is the referee), the shims work on this torch, and the declared floor
is the same in the code, pyproject.toml, the README and docs/install.md."""

import re
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from differential import Example, check, fn_module

from lazyfx.core import compat

ROOT = Path(__file__).resolve().parents[1]


def _accepts(call) -> bool:
    try:
        call()
    except RuntimeError:
        return False
    return True


@pytest.mark.parametrize("version, expected", [
    ("2.13.0+cpu", (2, 13, 0)), ("2.4.1+cu121", (2, 4, 1)), ("2.15.0", (2, 15, 0)),
    ("2.6.0a0+git1234abc", (2, 6, 0)), ("2.10", (2, 10, 0)),
])
def test_parse_version(version, expected):
    assert compat.parse_version(version) == expected


def test_parse_version_refuses_garbage():
    with pytest.raises(ValueError, match="not a torch version"):
        compat.parse_version("nightly")


def test_installed_torch_is_supported():
    assert compat.TORCH_VERSION == compat.parse_version(torch.__version__)
    assert compat.torch_at_least(*compat.MIN_TORCH)
    assert not compat.torch_at_least(compat.TORCH_VERSION[0] + 1)


# -- the behaviour gates against the installed PyTorch ------------------------------------------


@pytest.mark.parametrize("mode", ["reflect", "replicate"])
@pytest.mark.parametrize("shape", [(2, 2, 2), (1, 2, 2, 2)])
def test_pad_gate_matches_pytorch(mode, shape):
    """A crop of W to 0 next to H >= 1 (on the CPU): accepted by the older kernels (replicate
    through 2.13, reflect through 2.14), refused by the newer ones."""
    crop = lambda x: F.pad(x, (-2, 0, 0, 0), mode)  # noqa: E731
    accepted = _accepts(lambda: crop(torch.zeros(shape)))
    assert accepted == (not compat.PAD_EVERY_OUTPUT_POSITIVE[mode])
    check(Example(fn_module(crop, 1, f"{mode} crop to 0"), [(shape, torch.float32)]))
    module = {"reflect": nn.ReflectionPad2d, "replicate": nn.ReplicationPad2d}[mode]((0, 0, -2, 0))
    check(Example(module, [(shape, torch.float32)]))


@pytest.mark.parametrize("mode", ["reflect", "replicate"])
def test_pad_crop_to_one_is_accepted_everywhere(mode):
    crop = lambda x: F.pad(x, (-1, 0, 0, 0), mode)  # noqa: E731
    assert _accepts(lambda: crop(torch.zeros(2, 2, 2)))
    check(Example(fn_module(crop, 1, f"{mode} crop to 1"), [((2, 2, 2), torch.float32)], [[False, True, True]]))


def test_rnn_cell_gate_matches_pytorch():
    """An unbatched input with a 2-D hx: broadcast through 2.14, refused from 2.15."""
    cell = nn.RNNCell(3, 4)
    accepted = _accepts(lambda: cell(torch.zeros(3), torch.zeros(4, 4)))
    assert accepted == compat.RNN_CELL_BROADCASTS_2D_HIDDEN
    check(Example(cell, [((3,), torch.float32), ((4, 4), torch.float32)]))


def test_rnn_cell_unbatched_with_1d_hidden_is_accepted_everywhere():
    cell = nn.RNNCell(3, 4)
    assert _accepts(lambda: cell(torch.zeros(3), torch.zeros(4)))
    check(Example(cell, [((3,), torch.float32), ((4,), torch.float32)]))


# -- one floor, declared everywhere ---------------------------------------------------------------


def _floor() -> str:
    return ".".join(map(str, compat.MIN_TORCH))


def test_pyproject_declares_the_floor():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.findall(r'"torch>=([\d.]+)"', pyproject) == [_floor()]


@pytest.mark.parametrize("doc", ["README.md", "docs/install.md"])
def test_docs_state_the_floor(doc):
    assert f"torch >= {_floor()}" in (ROOT / doc).read_text()
