"""Every shape rule against PyTorch on the meta device: same output shapes and dtypes,
or both reject. Each case also runs with some sizes symbolic, and the symbolic answer
(output formula and input domain) must agree with PyTorch at the drawn sizes."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cases import CASES
from differential import check


@pytest.mark.parametrize("name", sorted(CASES))
@given(data=st.data())
def test_rule_agrees_with_pytorch(name, data):
    check(CASES[name](data.draw))
