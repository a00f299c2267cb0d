"""What differs between the torch releases lazyfx supports, in one place.

lazyfx supports torch ``MIN_TORCH`` and newer (pyproject.toml declares the same floor;
docs/install.md lists the releases last verified with ``python -m tools.compat``).
Two kinds of difference live here:

* **Behaviour gates**: a check that ATen changed between releases. A rule asks the gate
  and follows the installed torch; each gate names the release that changed it and what
  changed, so the rule stays exact on both sides of the change.
* **API shims**: a private or young torch API whose signature grew, called the way the
  installed release accepts.

Example:
    >>> from lazyfx import compat
    >>> compat.TORCH_VERSION >= compat.MIN_TORCH
    True
    >>> compat.parse_version("2.15.0+cu132"), compat.parse_version("2.6.0a0+git1234")
    ((2, 15, 0), (2, 6, 0))
"""

from __future__ import annotations

import inspect
import re

import torch
import torch.fx._symbolic_trace as fx_symbolic_trace
import torch.fx.experimental._config
from torch.nn.parameter import UninitializedBuffer

#: The oldest torch release lazyfx supports (the floor pyproject.toml declares).
MIN_TORCH = (2, 4)


def parse_version(version: str) -> tuple[int, ...]:
    """``(major, minor, patch)`` of a torch version string, without its pre-release or local part.

    Example:
        >>> parse_version("2.4.1+cu121")
        (2, 4, 1)
    """
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", version)
    if match is None:
        raise ValueError(f"not a torch version: {version!r}")
    return tuple(int(part or 0) for part in match.groups())


#: The installed torch, as ``(major, minor, patch)``.
TORCH_VERSION = parse_version(torch.__version__)


def torch_at_least(*release: int) -> bool:
    """Whether the installed torch is ``release`` or newer.

    Example:
        >>> torch_at_least(2, 4)
        True
    """
    return TORCH_VERSION >= release


# -- behaviour gates ----------------------------------------------------------------------------

#: Reflection/replication padding of 2 or 3 dims, per mode. The older shape checks
#: (``reflection_pad2d``/``replication_pad3d`` ... in aten/src/ATen/native/ReflectionPad.cpp and
#: ReplicationPadding.cpp) want *some* output size ``>= 1`` and none negative, so negative pads
#: can crop one padded dim to 0; the newer ones check every padded output size ``>= 1``
#: ("Calculated output H: 2 W: 0 must be >= 1 in every dimension"), as 1-D padding always did.
#: Replication changed in torch 2.14; reflection in torch 2.15 (torch 2.14's meta kernel for it
#: already checks the new way, its CPU kernel the old way: lazyfx follows the CPU kernels a dry
#: run uses, which is what the differential tests compare against).
PAD_EVERY_OUTPUT_POSITIVE = {"replicate": torch_at_least(2, 14), "reflect": torch_at_least(2, 15)}

#: ``nn.RNNCell`` with an unbatched (1-D) input and a 2-D ``hx (M, K)``. Through torch 2.14 the
#: cell unsqueezes both, only ``M == hidden_size`` is checked, and the 3-D ``hx`` broadcasts
#: through the matmul to an ``(M, hidden_size)`` result; torch 2.15 checks
#: that ``hx`` is 2-D after the unsqueeze ("Expected 2D hidden0 (batch x hidden_size), but got 3D
#: tensor"), for every cell.
RNN_CELL_BROADCASTS_2D_HIDDEN = not torch_at_least(2, 15)


# -- API shims -----------------------------------------------------------------------------------

# torch 2.5 added ``persistent`` to UninitializedBuffer (a lazy buffer registered with
# persistent=False keeps that when it is materialized); torch 2.4 has only the module's
# _non_persistent_buffers_set, which copying a module keeps anyway.
_BUFFER_HAS_PERSISTENT = "persistent" in inspect.signature(UninitializedBuffer.__new__).parameters


def uninitialized_buffer(requires_grad: bool, device, dtype, persistent: bool = True) -> UninitializedBuffer:
    """A new ``UninitializedBuffer``, with ``persistent`` where the installed torch has it.

    Example:
        >>> buffer = uninitialized_buffer(False, "meta", torch.float32)
        >>> type(buffer).__name__, buffer.dtype
        ('UninitializedBuffer', torch.float32)
    """
    if _BUFFER_HAS_PERSISTENT:
        return UninitializedBuffer(requires_grad, device, dtype, persistent=persistent)
    return UninitializedBuffer(requires_grad, device, dtype)


# The norm layers' ``bias`` option (``nn.BatchNorm2d(8, bias=False)``, the lazy ones too) is newer
# than torch 2.4, whose norms have a bias exactly when they are affine.
NORM_HAS_BIAS_OPTION = "bias" in inspect.signature(torch.nn.modules.batchnorm._LazyNormBase.__init__).parameters


# ``torch.fx.experimental._config.backed_size_oblivious`` (kernels decide a size test for every size
# at once, as if no size were 0 or 1) is newer than torch 2.4, whose fake-tensor kernels decide
# with the representative sizes and record a guard for each decision.
HAS_BACKED_SIZE_OBLIVIOUS = hasattr(torch.fx.experimental._config, "backed_size_oblivious")


# torch.fx's patcher of the trace under way (``_symbolic_trace.CURRENT_PATCHER``) is a module global
# in the releases after 2.4; torch 2.4 keeps it local to ``Tracer.trace``, where nothing outside the
# trace can see or restore it.
_FX_HAS_CURRENT_PATCHER = hasattr(fx_symbolic_trace, "CURRENT_PATCHER")


def fx_current_patcher():
    """torch.fx's patcher of the trace under way (None outside a trace, and always on torch 2.4).

    Example:
        >>> fx_current_patcher() is None
        True
    """
    return getattr(fx_symbolic_trace, "CURRENT_PATCHER", None)


def set_fx_current_patcher(patcher) -> None:
    """Make ``patcher`` torch.fx's current one, where the installed torch has such a global.

    Example:
        >>> set_fx_current_patcher(fx_current_patcher())
    """
    if _FX_HAS_CURRENT_PATCHER:
        fx_symbolic_trace.CURRENT_PATCHER = patcher
