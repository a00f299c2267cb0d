"""The one registry of shape rules and lazy-module resolvers.

A rule is registered under one or more keys:

* the callable of a ``call_function`` node (``torch.flatten``, ``F.relu``,
  ``operator.add``);
* :class:`Method` ``("view")`` for a ``call_method`` node;
* the module class for a ``call_module`` node (``nn.Conv2d``).

A rule has the signature of the operation it models, with
:class:`~lazyfx.core.values.TensorMeta` in place of tensors; module rules take the
module first (``rule(module, input)``) and read only its hyperparameters
(never its parameter tensors, so the same rule serves a lazy module's
resolved view). Registering a key twice is an error.

A *resolver* maps a built-in lazy class (``nn.LazyLinear``) to the
constructor arguments its input determines (``in_features``) and the shapes
of its parameters; the eager class's rule then computes the output.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Any, Callable, Iterator


@dataclass(frozen=True)
class Method:
    """Registry key of a tensor method (``x.view(...)`` is ``Method("view")``)."""

    name: str

    def __str__(self) -> str:
        return f"Tensor.{self.name}"


@dataclass(frozen=True)
class Rule:
    key: Any
    fn: Callable[..., Any]

    @functools.cached_property  # (read for every node the rule computes)
    def name(self) -> str:
        return f"{self.fn.__module__.removeprefix('lazyfx.rules.')}.{self.fn.__name__}"


def key_name(key: Any) -> str:
    """How a key is shown in reports and docs: ``torch.flatten``, ``Tensor.view``, ``nn.Conv2d``."""
    if isinstance(key, Method):
        return str(key)
    if isinstance(key, type):
        module = key.__module__
        if module.startswith("torch.nn.modules"):
            return f"nn.{key.__name__}"
        return f"{module}.{key.__qualname__}"
    if hasattr(key, "_schema"):  # an operator overload: torch.ops.namespace.name.overload
        return f"torch.ops.{key}"
    module = getattr(key, "__module__", None) or ""
    name = getattr(key, "__name__", repr(key))
    if module in ("_operator", "operator"):
        return f"operator.{name}"
    if module == "builtins":
        return name
    if module.startswith("torch.nn.functional"):
        return f"F.{name}"
    if module.startswith("torch._C._nn"):
        return f"F.{name}"
    if module.startswith("torch"):
        return f"torch.{name}"
    return f"{module}.{name}" if module else name


class Registry:
    """Maps keys to entries; refuses duplicates."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[Any, Rule] = {}

    def register(self, *keys: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        if not keys:
            raise TypeError("register() needs at least one key")

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            for key in keys:
                if key in self._entries:
                    raise ValueError(
                        f"duplicate {self.what} for {key_name(key)}: "
                        f"{self._entries[key].fn.__qualname__} and {fn.__qualname__}"
                    )
                self._entries[key] = Rule(key, fn)
            return fn

        return decorate

    @contextlib.contextmanager
    def suspended(self, *keys: Any) -> Iterator[None]:
        """Within the block the rules for ``keys`` are absent (for testing and benchmarking
        the meta-kernel fallback on operations that do have a rule)."""
        removed = {key: self._entries.pop(key) for key in keys if key in self._entries}
        try:
            yield
        finally:
            self._entries.update(removed)

    def get(self, key: Any) -> Rule | None:
        try:
            return self._entries.get(key)
        except TypeError:  # an unhashable call target
            return None

    def __contains__(self, key: Any) -> bool:
        return self.get(key) is not None

    def __iter__(self) -> Iterator[Rule]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)


def lookup_by_class(table: Any, cls: type) -> Any:
    """The entry of the nearest class in ``cls``'s MRO that ``table`` (a :class:`Registry` or a
    dict keyed by class) holds, else None: subclasses behave like their base (a subclass of
    ``nn.MaxPool2d`` pools like it).

    >>> import torch.nn as nn
    >>> class MyPool(nn.MaxPool2d): pass
    >>> lookup_by_class({nn.MaxPool2d: 2}, MyPool), lookup_by_class({nn.MaxPool2d: 2}, nn.ReLU)
    (2, None)
    """
    for base in cls.__mro__:
        found = table.get(base)
        if found is not None:
            return found
    return None


RULES = Registry("shape rule")

# Rules no CPU-only differential test can execute (the real op needs a device), with why.
# Every other rule is reached by a differential case (tests/test_registry.py enforces it).
NOT_DIFFERENTIALLY_TESTED: dict = {
    Method("cuda"): "the real op needs a CUDA device",
    Method("item"): "returns a tensor's value: its rule always raises DataDependentError (tests/test_data_dependent.py)",
}
RESOLVERS = Registry("lazy resolver")


def rule(*keys: Any):
    """Register a shape rule under ``keys``."""
    return RULES.register(*keys)


def resolver(*lazy_classes: type):
    """Register the resolver of built-in lazy classes."""
    return RESOLVERS.register(*lazy_classes)
