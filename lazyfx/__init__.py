"""lazyfx: static shape inference for PyTorch lazy modules.

>>> import lazyfx
>>> report = lazyfx.infer(model, ("B", 3, 32, 32))      # every shape, as formulas in B
>>> eager = lazyfx.materialize(model, ("B", 3, 32, 32), device="cuda")

See https://github.com/ (docs/) for the guide.
"""

from lazyfx.api import infer, materialize
from lazyfx.errors import (
    LazyFXError,
    MaterializeError,
    ResolutionError,
    ShapeError,
    SpecError,
    TraceError,
    UnsupportedOpError,
)
from lazyfx.report import Report
from lazyfx.spec import Dim, TensorSpec
from lazyfx.values import TensorMeta

__version__ = "0.1.0"

__all__ = [
    "infer",
    "materialize",
    "Dim",
    "TensorSpec",
    "TensorMeta",
    "Report",
    "LazyFXError",
    "SpecError",
    "TraceError",
    "UnsupportedOpError",
    "ShapeError",
    "ResolutionError",
    "MaterializeError",
    "__version__",
]
