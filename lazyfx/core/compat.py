"""What differs between the torch releases lazyfx supports, in one place.

lazyfx supports torch ``MIN_TORCH`` and newer (pyproject.toml declares the same floor;
docs/install.md lists the releases last verified with ``python -m tools.compat``). What
lives here are behaviour gates: a check that ATen changed between releases. A rule asks the
gate and follows the installed torch; each gate names the release that changed it and what
changed, so the rule stays exact on both sides of the change.

Releases before 2.13 are not supported. Tried on 2026-12-02: on 2.10.0 and 2.7.1 the fallback
for operations without a shape rule (fake tensors) records the kernels' 32-bit indexing and
size-1 branches as requirements and refuses lazy modules whose size it can tell on 2.13; on
2.7.1 and 2.4.1 ``F.bilinear`` on fake tensors crashes the interpreter, and 2.4.1 lacks APIs
lazyfx uses (``UninitializedBuffer(persistent=)``, torch.fx's ``CURRENT_PATCHER``).

Example:
    >>> from lazyfx.core import compat
    >>> compat.TORCH_VERSION >= compat.MIN_TORCH
    True
    >>> compat.parse_version("2.15.0+cu132"), compat.parse_version("2.6.0a0+git1234")
    ((2, 15, 0), (2, 6, 0))
"""

from __future__ import annotations

import re

import torch
from torch.utils._python_dispatch import TorchDispatchMode

#: The oldest torch release lazyfx supports (the floor pyproject.toml declares).
MIN_TORCH = (2, 13)


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


# -- torch internals the analysis works around ---------------------------------------------------

class DispatchMode(TorchDispatchMode):
    """A ``TorchDispatchMode`` whose ``__torch_dispatch__`` stays a plain method.

    torch (2.13 at least) wraps every subclass's ``__torch_dispatch__`` in
    ``torch._disable_dynamo``, which imports ``torch._dynamo`` at the mode's first use: about
    1.5 s here, as long as importing torch itself, paid by the first analysis in each process
    (every ``lazyfx check`` of a changed model). lazyfx's modes only watch or answer what the
    analysis runs, never under ``torch.compile``, so they opt out by the class hook torch
    provides for it (``_should_skip_dynamo``; a release without the hook has no wrapper either).
    """

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False
