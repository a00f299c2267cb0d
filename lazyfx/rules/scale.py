"""A size from a scale factor, ``int(float(in) * scale)``, as interpolation and fractional
max pooling compute it -- PyTorch multiplies in double precision and truncates
(``compute_output_size`` in aten/src/ATen/native/UpSample.cpp, ``_sym_int`` in
torch/nn/functional.py when the scale is recomputed). With a symbolic size that
product is kept exact: an integer scale multiplies; a float scale is a dyadic rational
``p/2**k`` and ``in*p`` is exact in double precision, so ``int(in*s) == (in*p)//2**k``
(for ``|p| <= 2**20``: exact for every size below ``2**33``); a float just above a
fraction ``p/q`` with ``q <= 1000`` (``0.1``, ``1.1``) errs upward by less than
``in*s/2**53``, never reaching the next integer while ``in*s < 2**40``, so ``(in*p)//q`` is
exact too. Any other float scale with a symbolic size (``0.7`` is just below ``7/10``, and
``int(90*0.7)`` is 62) is refused rather than approximated.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Optional

from lazyfx.core.symbolic import DimExpr, floordiv, is_concrete
from lazyfx.errors import ShapeError, UnsupportedOpError

_EXACT_NUMERATOR = 2**20
_SMALL_DENOMINATOR = 1000


def scaled_size(size: DimExpr, scale: Any, op: str = "interpolate") -> DimExpr:
    """``int(float(size) * scale)`` as PyTorch computes it (truncation toward zero)."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise ShapeError(f"{op}: scale factor must be a number, got {scale!r}")
    if isinstance(scale, float) and not math.isfinite(scale):
        raise ShapeError(f"{op}: scale factor {scale} gives a size that cannot be converted to int64")
    if is_concrete(size):
        return int(size * scale)  # int*int stays exact; int*float is the double product
    if isinstance(scale, int) or scale.is_integer():
        return size * int(scale)
    p, q = _exact_fraction(abs(scale), op)
    magnitude = floordiv(size * p, q)
    return magnitude if scale > 0 else -magnitude


def exact_fraction(scale: float) -> Optional[tuple[int, int]]:
    """``(p, q)`` with ``int(n * scale) == (n*p)//q`` for every size ``n`` (see the module
    docstring), or None when float rounding has no such formula."""
    exact = Fraction(scale)
    if exact.numerator <= _EXACT_NUMERATOR:
        return exact.numerator, exact.denominator
    near = exact.limit_denominator(_SMALL_DENOMINATOR)
    if float(near) == scale and exact > near:
        return near.numerator, near.denominator
    return None


def _exact_fraction(scale: float, op: str) -> tuple[int, int]:
    fraction = exact_fraction(scale)
    if fraction is None:
        raise UnsupportedOpError(
            f"{op}: scale factor {scale!r} with a symbolic input size: float rounding of size*{scale!r} has no "
            f"exact formula (e.g. int(90*0.7) is 62); use a factor such as 0.5, 1.5 or 2, or give the output size"
        )
    return fraction
