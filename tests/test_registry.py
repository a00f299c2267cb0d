"""The registry is consistent: one rule per key, and every rule is reached by a
differential case (so adding a rule without a case fails here)."""

import pytest
import torch.nn as nn
from torch.nn.modules.lazy import LazyModuleMixin

import case_reach
from cases import CASES
import lazyfx.rules.all  # noqa: F401  (registers every rule)
from lazyfx.core.registry import NOT_DIFFERENTIALLY_TESTED, RESOLVERS, RULES, Registry, key_name, lookup_by_class


@pytest.mark.xdist_group(case_reach.GROUP)
def test_every_rule_has_a_differential_case():
    reached = frozenset().union(*(case_reach.reach(name).keys for name in CASES))
    missing = [key_name(r.key) for r in RULES if r.key not in reached and r.key not in NOT_DIFFERENTIALLY_TESTED]
    assert not missing, f"rules without a differential case in tests/cases.py: {sorted(missing)}"


def test_registry_refuses_duplicates():
    registry = Registry("shape rule")
    registry.register(nn.ReLU)(lambda m, x: x)
    with pytest.raises(ValueError, match="duplicate shape rule for nn.ReLU"):
        registry.register(nn.ReLU)(lambda m, x: x)


def test_lookup_by_class_finds_the_nearest_registered_base():
    class Pool(nn.MaxPool2d):
        pass

    class Shadowing(Pool):
        pass

    registry = Registry("shape rule")
    registry.register(nn.MaxPool2d)(max_pool := lambda m, x: x)
    registry.register(Shadowing)(shadowing := lambda m, x: x)
    assert lookup_by_class(registry, nn.MaxPool2d).fn is max_pool
    assert lookup_by_class(registry, Pool).fn is max_pool  # a subclass behaves like its base
    assert lookup_by_class(registry, Shadowing).fn is shadowing  # unless it has its own rule
    assert lookup_by_class(registry, nn.ReLU) is None
    assert lookup_by_class({nn.MaxPool2d: 0, nn.Module: 1}, Pool) == 0  # a falsy entry is an entry
    assert lookup_by_class(RULES, Pool) is RULES.get(nn.MaxPool2d)


def test_every_builtin_lazy_class_has_a_resolver():
    lazy_classes = {value for name, value in vars(nn).items() if not name.startswith("_") and isinstance(value, type)
                    and issubclass(value, LazyModuleMixin) and issubclass(value, nn.Module)}
    assert lazy_classes and lazy_classes == {r.key for r in RESOLVERS}
    assert all(getattr(cls, "cls_to_become") in RULES for cls in lazy_classes)
