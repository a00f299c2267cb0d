"""Every shape rule against PyTorch (its real kernels, on tiny CPU tensors): same output shapes and dtypes,
or both reject. Each case also runs with some sizes symbolic, and the symbolic answer
(output formula and input domain) must agree with PyTorch at the drawn sizes."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from cases import CASES
from differential import Example, check, fn_module


@pytest.mark.parametrize("name", sorted(CASES))
@given(data=st.data())
def test_rule_agrees_with_pytorch(name, data):
    check(CASES[name](data.draw))


def test_circular_pad_wrapping_next_to_an_emptied_dim():
    """Hypothesis found it: a circular pad larger than what the crop leaves is accepted where
    another padded dim is cropped to 0 (the copies are empty), with that dim symbolic too."""
    module = fn_module(lambda x: F.pad(x, (-1, -3, -1, 2), "circular"), 1, "circular next to an empty dim")
    for symbolic in ([False, False, True], [False, True, True], [False, False, False]):
        check(Example(module, [((1, 2, 4), torch.float32)], [symbolic]))
