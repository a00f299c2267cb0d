"""lazyfx.core.copying: the one deep copy with a memo, which the analysis (meta_copy) and
materialize (copy_model) share."""

import doctest

import torch
import torch.nn as nn

from lazyfx.core import copying
from lazyfx.core.copying import copy_module


def test_copying_examples_pass():
    result = doctest.testmod(copying)
    assert result.attempted >= 5 and result.failed == 0


def test_copy_module_asks_once_per_tensor_and_deep_copies_what_it_is_not_given():
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, nn.BatchNorm1d(3), shared)
    asked = []

    def replace(module, tensor, is_parameter):
        asked.append((type(module).__name__, tensor.shape, is_parameter))
        return nn.Parameter(torch.zeros_like(tensor)) if is_parameter else None

    copied = copy_module(model, replace)
    assert asked == [("Linear", (3, 3), True), ("Linear", (3,), True), ("BatchNorm1d", (3,), True),
                     ("BatchNorm1d", (3,), True), ("BatchNorm1d", (3,), False), ("BatchNorm1d", (3,), False),
                     ("BatchNorm1d", (), False)]
    assert copied[0] is copied[2] and copied[0] is not shared  # sharing survives the copy
    assert torch.equal(copied[0].weight, torch.zeros(3, 3)) and not torch.equal(shared.weight, torch.zeros(3, 3))
    # a buffer replace() returned None for is a deep copy of the user's: equal, not the same tensor
    assert torch.equal(copied[1].running_var, model[1].running_var)
    assert copied[1].running_var is not model[1].running_var


def test_copy_module_replaces_only_the_given_modules_tensors():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    copied = copy_module(model, lambda m, t, p: nn.Parameter(t.detach().to("meta")), modules=[model[1]])
    assert copied[0].weight.device.type == "cpu" and copied[1].weight.device.type == "meta"
    assert model[1].weight.device.type == "cpu"
