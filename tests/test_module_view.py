"""Shape rules read modules through a ModuleView: every attribute must read as the module itself
answers it (its class's lookup order included), a lazy module's resolved sizes filled in, the
module left untouched, and parameters in the analysis dtype where one is set."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from lazyfx.core.values import analysis_dtype
from lazyfx.rules.lazy import ModuleView


class _Odd(nn.Linear):
    scale = 3  # a class attribute

    @property
    def doubled(self):  # a property (a data descriptor, setter or not): before the instance's dict
        return self.out_features * 2

    @property
    def mode(self):
        return "property"

    @mode.setter
    def mode(self, value):
        pass

    def extra(self):
        return "method"


def _odd() -> _Odd:
    module = _Odd(3, 4)
    module.__dict__["mode"] = "instance"  # hidden by the properties, as Python's lookup says
    module.__dict__["doubled"] = "instance"
    module.__dict__["scale"] = 5  # hides the class attribute
    module.register_buffer("steps", torch.zeros(()))
    module.child = nn.ReLU()
    return module


NAMES = ("in_features", "out_features", "weight", "bias", "steps", "child", "scale", "doubled", "mode", "training",
         "_parameters")


@pytest.mark.parametrize("arguments", [None, {"out_features": 9}], ids=["shared", "copied"])
def test_a_view_reads_every_attribute_as_the_module_answers_it(arguments):
    module = _odd()
    before = dict(module.__dict__)
    view = ModuleView(module, arguments)
    for name in NAMES:
        expected = (arguments or {}).get(name, getattr(module, name))
        assert getattr(view, name) is expected, name
    assert (view.mode, view.doubled, view.scale) == ("property", 8, 5)  # (a property reads the module itself)
    assert view.extra() == "method" and view.__class__ is _Odd and isinstance(view, nn.Linear)
    with pytest.raises(AttributeError):
        view.missing
    with pytest.raises(AttributeError):
        view.in_features = 5
    assert module.__dict__ == before and module.out_features == 4


def test_a_lazy_modules_view_has_its_resolved_sizes_and_its_eager_class():
    lazy = nn.LazyLinear(4)
    view = ModuleView(lazy, {"in_features": 7}, nn.Linear)
    assert (view.in_features, view.out_features, view.__class__) == (7, 4, nn.Linear)
    assert lazy.in_features == 0


def test_a_views_parameters_read_in_the_analysis_dtype():
    module = nn.Linear(3, 4)
    with analysis_dtype(torch.float16):
        view = ModuleView(module)
        assert view.weight.dtype == torch.float16 and view.weight.shape == (4, 3)
    assert module.weight.dtype == torch.float32
    assert ModuleView(module).weight is module.weight  # (counterpart: no target dtype, the parameter itself)
