"""lazyfx: static shape inference for PyTorch lazy modules.

>>> import lazyfx
>>> report = lazyfx.infer(model, ("B", 3, 32, 32))      # every shape, as formulas in B
>>> eager = lazyfx.materialize(model, ("B", 3, 32, 32), device="cuda")

The public names are imported on first use, so that ``import lazyfx`` (and
``lazyfx --help``) does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lazyfx.core import VERSION as __version__

_EXPORTS = {
    "infer": "lazyfx.api",
    "materialize": "lazyfx.api",
    "export": "lazyfx.api",
    "Call": "lazyfx.inputs.spec",
    "Const": "lazyfx.inputs.spec",
    "Dim": "lazyfx.inputs.spec",
    "TensorSpec": "lazyfx.inputs.spec",
    "TensorMeta": "lazyfx.core.values",
    "Report": "lazyfx.outputs.report",
    "LazyFXError": "lazyfx.errors",
    "SpecError": "lazyfx.errors",
    "TraceError": "lazyfx.errors",
    "UndecidedConditionError": "lazyfx.errors",
    "UnsupportedOpError": "lazyfx.errors",
    "DataDependentError": "lazyfx.errors",
    "ShapeError": "lazyfx.errors",
    "ResolutionError": "lazyfx.errors",
    "MaterializeError": "lazyfx.errors",
}

__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:
    from lazyfx.api import export, infer, materialize
    from lazyfx.core.values import TensorMeta
    from lazyfx.errors import (
        DataDependentError,
        LazyFXError,
        MaterializeError,
        ResolutionError,
        ShapeError,
        SpecError,
        TraceError,
        UndecidedConditionError,
        UnsupportedOpError,
    )
    from lazyfx.inputs.spec import Call, Const, Dim, TensorSpec
    from lazyfx.outputs.report import Report


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lazyfx' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
