"""Assertions in forward: ``torch._assert`` and the ``_assert_is_none`` guards torch.fx adds.

``torch._assert(cond, msg)`` fails when the condition is false for every
input (a shape error with the user's message), adds the condition to the
input domain when it depends on the input, and cannot be decided from
shapes when it tests tensor values.
"""

from __future__ import annotations

import torch
from torch.fx._symbolic_trace import _assert_is_none

from lazyfx.core.checks import require
from lazyfx.core.registry import NOT_DIFFERENTIALLY_TESTED, rule
from lazyfx.core.values import TensorMeta
from lazyfx.errors import DataDependentError


@rule(torch._assert)
def assert_(condition, message) -> None:
    """No output; ``condition`` must hold."""
    if isinstance(condition, TensorMeta):
        raise DataDependentError(f"torch._assert on a tensor's values cannot be checked from shapes ({message})")
    require(condition, str(message))


@rule(_assert_is_none)
def assert_is_none(value, message) -> None:
    """The guard torch.fx adds for an argument specialized to None."""
    require(value is None, str(message))


# torch.fx adds this guard itself, and lazyfx removes it from the graph after tracing: no model
# calls it, so no differential case can reach it.
NOT_DIFFERENTIALLY_TESTED[_assert_is_none] = "only in torch.fx's own guards for arguments specialized to None"
