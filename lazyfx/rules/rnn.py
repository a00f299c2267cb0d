"""Recurrent layers: nn.RNN, nn.LSTM, nn.GRU and the cells nn.RNNCell, nn.LSTMCell, nn.GRUCell.

Shapes follow the PyTorch docs (https://pytorch.org/docs/stable/generated/torch.nn.LSTM.html and
the RNN, GRU and cell pages). The checks are those of ``RNNBase.forward``/``check_forward_args`` in
torch/nn/modules/rnn.py and of the cell checks in ATen's aten/src/ATen/native/RNN.cpp
(``check_rnn_cell_forward_input``/``_hidden``). Packed sequences are not supported.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from lazyfx.core import compat
from lazyfx.core.checks import require_equal, require_positive
from lazyfx.core.registry import rule
from lazyfx.core.symbolic import DimExpr, fmt
from lazyfx.core.values import TensorMeta, dtype_name
from lazyfx.errors import ShapeError, UnsupportedOpError
from lazyfx.rules._util import shape_str


def _name(module: nn.Module) -> str:
    return module.__class__.__name__


# -- nn.RNN / nn.LSTM / nn.GRU ------------------------------------------------------------


def _num_directions(module: nn.RNNBase) -> int:
    return 2 if module.bidirectional else 1


def _state_size(module: nn.RNNBase) -> int:
    """The size of ``h``: ``proj_size`` when the LSTM projects, else ``hidden_size``."""
    return module.proj_size if module.proj_size > 0 else module.hidden_size


def _batch_dim(module: nn.RNNBase) -> int:
    return 0 if module.batch_first else 1


def _sequence_input(module: nn.RNNBase, input: Any) -> tuple[TensorMeta, bool]:
    """The input as a batched 3-D sequence, and whether it was batched."""
    if not isinstance(input, TensorMeta):
        raise UnsupportedOpError(
            f"{_name(module)}: only a tensor input is supported (packed sequences are not), "
            f"got {type(input).__name__}"
        )
    if input.ndim not in (2, 3):
        raise ShapeError(f"{_name(module)}: Expected input to be 2D or 3D, got {input.ndim}D tensor instead")
    if input.ndim == 3:
        return input, True
    d = _batch_dim(module)
    return input.with_shape((*input.shape[:d], 1, *input.shape[d:])), False


def _check_input(module: nn.RNNBase, x: TensorMeta) -> None:
    """``RNNBase.check_input`` (dtype and feature size) and ATen's non-empty sequence."""
    weight_dtype = module.weight_ih_l0.dtype
    if x.dtype != weight_dtype:
        raise ShapeError(
            f"{_name(module)} input dtype ({dtype_name(x.dtype)}) does not match weight dtype "
            f"({dtype_name(weight_dtype)})"
        )
    require_equal(
        x.shape[-1],
        module.input_size,
        lambda: f"input.size(-1) must be equal to input_size. Expected {module.input_size}, "
        f"got {fmt(x.shape[-1])}",
    )
    seq_len = x.shape[1 - _batch_dim(module)]
    require_positive(seq_len, "Expected sequence length to be larger than 0 in RNN")


def _expected_state(module: nn.RNNBase, x: TensorMeta, size: int) -> tuple[DimExpr, ...]:
    """``(D*num_layers, N, size)``, as ``get_expected_hidden_size`` computes it."""
    return (_num_directions(module) * module.num_layers, x.shape[_batch_dim(module)], size)


def _check_state(state: TensorMeta, expected: tuple, dtype: torch.dtype, label: str) -> None:
    """``check_hidden_size``: the state's size must be exactly ``expected``; the kernels then
    need its dtype to be the input's."""
    message = lambda: f"Expected {label} size {fmt(expected)}, got {shape_str(state.shape)}"  # noqa: E731
    if state.ndim != len(expected):
        raise ShapeError(message())
    for got, want in zip(state.shape, expected):
        require_equal(got, want, message)
    if state.dtype != dtype:
        raise ShapeError(
            f"{label} dtype ({dtype_name(state.dtype)}) must be the input's ({dtype_name(dtype)})"
        )


def _state_dims(module: nn.RNNBase, state: TensorMeta, batched: bool, what: str) -> TensorMeta:
    """A given state as 3-D: it must be 3-D for a batched input, 2-D (and gets a batch of 1) else."""
    want = 3 if batched else 2
    if state.ndim != want:
        kind = "batched 3-D" if batched else "unbatched 2-D"
        raise ShapeError(f"For {kind} input, {what} should also be {want}-D but got {state.ndim}-D tensor")
    return state if batched else state.with_shape((state.shape[0], 1, *state.shape[1:]))


def _sequence_output(module: nn.RNNBase, x: TensorMeta, batched: bool) -> TensorMeta:
    """``(L, N, D*H_out)`` (``(N, L, D*H_out)`` with ``batch_first``, ``(L, D*H_out)`` unbatched)."""
    out = x.with_shape((*x.shape[:2], _num_directions(module) * _state_size(module)))
    return out if batched else _drop_dim(out, _batch_dim(module))


def _state_output(state: tuple, dtype: torch.dtype, batched: bool) -> TensorMeta:
    """``h_n``/``c_n``: ``(D*num_layers, N, size)``, or ``(D*num_layers, size)`` unbatched."""
    meta = TensorMeta(tuple(state), dtype)
    return meta if batched else _drop_dim(meta, 1)


def _drop_dim(x: TensorMeta, d: int) -> TensorMeta:
    return x.with_shape(x.shape[:d] + x.shape[d + 1 :])


@rule(nn.RNN, nn.GRU)
def rnn_module(module: nn.RNNBase, input, hx=None):
    """``input (L, N, H_in)`` (``(N, L, H_in)`` with ``batch_first``, ``(L, H_in)`` unbatched) ->
    ``(output (L, N, D*H_out), h_n (D*num_layers, N, H_out))`` with ``D = 2`` when
    bidirectional; ``hx`` must be ``(D*num_layers, N, H_out)`` (https://pytorch.org/docs/stable/generated/torch.nn.GRU.html)."""
    x, batched = _sequence_input(module, input)
    if hx is not None:
        if not isinstance(hx, TensorMeta):
            raise ShapeError(f"{_name(module)}: hx must be a tensor, got {type(hx).__name__}")
        hx = _state_dims(module, hx, batched, "hx")
    _check_input(module, x)
    expected = _expected_state(module, x, module.hidden_size)
    if hx is not None:
        _check_state(hx, expected, x.dtype, "hidden")
    return _sequence_output(module, x, batched), _state_output(expected, x.dtype, batched)


def _pair_length_ok(n: int, batched: bool) -> bool:
    """The kernels take exactly two states; for an unbatched input, forward rebuilds the pair
    from ``hx[0]`` and ``hx[1]``, so a longer sequence passes too."""
    return n == 2 or (n > 2 and not batched)


def _describe(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return f"{type(value).__name__} of {len(value)}"
    return type(value).__name__


def _lstm_state(module: nn.LSTM, hx: Any, batched: bool) -> tuple[TensorMeta, TensorMeta]:
    """``(h_0, c_0)`` as 3-D tensors. ``LSTM.forward`` indexes ``hx[0]``, ``hx[1]``, so for an
    unbatched input a tensor whose first dim is at least 2 serves as the pair too."""
    if isinstance(hx, TensorMeta):
        if batched or hx.ndim == 0:
            raise ShapeError(f"LSTM: hx must be a tuple (h_0, c_0), got a tensor of size {shape_str(hx.shape)}")
        require_positive(hx.shape[0] - 1, lambda: f"LSTM: hx[1] is out of range for hx of size {shape_str(hx.shape)}")
        h = c = hx.with_shape(hx.shape[1:])
    elif isinstance(hx, (tuple, list)) and _pair_length_ok(len(hx), batched) and all(
        isinstance(s, TensorMeta) for s in hx[:2]
    ):
        h, c = hx[0], hx[1]
    else:
        raise ShapeError(f"LSTM: hx must be a tuple of two tensors (h_0, c_0), got {_describe(hx)}")
    want = 3 if batched else 2
    if h.ndim != want or c.ndim != want:
        kind = "batched 3-D" if batched else "unbatched 2-D"
        raise ShapeError(f"For {kind} input, hx and cx should also be {want}-D but got "
                         f"({h.ndim}-D, {c.ndim}-D) tensors")
    return _state_dims(module, h, batched, "hx"), _state_dims(module, c, batched, "cx")


@rule(nn.LSTM)
def lstm_module(module: nn.LSTM, input, hx=None):
    """``input (L, N, H_in)`` -> ``(output (L, N, D*H_out), (h_n (D*num_layers, N, H_out),
    c_n (D*num_layers, N, H_cell)))`` where ``H_out = proj_size or hidden_size`` and
    ``H_cell = hidden_size`` (https://pytorch.org/docs/stable/generated/torch.nn.LSTM.html)."""
    x, batched = _sequence_input(module, input)
    state = None if hx is None else _lstm_state(module, hx, batched)
    _check_input(module, x)
    h_size = _expected_state(module, x, _state_size(module))
    c_size = _expected_state(module, x, module.hidden_size)
    if state is not None:
        _check_state(state[0], h_size, x.dtype, "hidden[0]")
        _check_state(state[1], c_size, x.dtype, "hidden[1]")
    states = (_state_output(h_size, x.dtype, batched), _state_output(c_size, x.dtype, batched))
    return _sequence_output(module, x, batched), states


# -- cells ------------------------------------------------------------------------------------


def _cell_input_dims(module: nn.RNNCellBase, input: Any) -> bool:
    """Whether the input is batched (2-D) rather than unbatched (1-D)."""
    if not isinstance(input, TensorMeta):
        raise ShapeError(f"{_name(module)}: input must be a tensor, got {type(input).__name__}")
    if input.ndim not in (1, 2):
        raise ShapeError(f"{_name(module)}: Expected input to be 1D or 2D, got {input.ndim}D instead")
    return input.ndim == 2


def _cell_input(module: nn.RNNCellBase, input: TensorMeta) -> TensorMeta:
    """The input as a 2-D batch; ATen checks ``input.size(1) == input_size`` and the dtype."""
    x = input if input.ndim == 2 else input.with_shape((1, *input.shape))
    require_equal(x.shape[1], module.input_size, lambda: f"input has inconsistent input_size: got "
                  f"{fmt(x.shape[1])} expected {module.input_size}")
    _check_weight_dtype(module, x, "input")
    return x


def _check_weight_dtype(module: nn.RNNCellBase, t: TensorMeta, what: str) -> None:
    if t.dtype != module.weight_ih.dtype:
        raise ShapeError(f"{_name(module)}: {what} dtype ({dtype_name(t.dtype)}) and weight dtype "
                         f"({dtype_name(module.weight_ih.dtype)}) must be the same")


def _cell_state_dims(module: nn.RNNCellBase, state: Any, what: str) -> TensorMeta:
    if not isinstance(state, TensorMeta):
        raise ShapeError(f"{_name(module)}: {what} must be a tensor, got {type(state).__name__}")
    if state.ndim not in (1, 2):
        raise ShapeError(f"{_name(module)}: Expected {what} to be 1D or 2D, got {state.ndim}D instead")
    return state


def _check_cell_state(module: nn.RNNCellBase, x: TensorMeta, state: TensorMeta, label: int) -> None:
    """``check_rnn_cell_forward_hidden``: ``state`` is ``(N, hidden_size)`` for the input's ``N``."""
    if state.ndim < 2:
        raise ShapeError(f"{_name(module)}: hidden{label} of size {shape_str(state.shape)} must be 2-D "
                         f"for a batched input")
    require_equal(x.shape[0], state.shape[0], lambda: f"Input batch size {fmt(x.shape[0])} doesn't match "
                  f"hidden{label} batch size {fmt(state.shape[0])}")
    require_equal(state.shape[1], module.hidden_size, lambda: f"hidden{label} has inconsistent hidden_size: "
                  f"got {fmt(state.shape[1])}, expected {module.hidden_size}")


def _unbatched_state(module: nn.RNNCellBase, state: TensorMeta, what: str) -> TensorMeta:
    """An unbatched input's 1-D state gets a batch dim of 1. (A 2-D one would become 3-D: before
    torch 2.15 RNNCell survives that, see :func:`_rnn_cell_broadcast_quirk`; GRUCell fails, LSTMCell
    crashes.)"""
    if state.ndim != 1:
        raise ShapeError(f"{_name(module)}: for an unbatched (1-D) input, {what} must be 1-D, "
                         f"got size {shape_str(state.shape)}")
    return state.with_shape((1, *state.shape))


@rule(nn.RNNCell, nn.GRUCell)
def rnn_cell_module(module: nn.RNNCellBase, input, hx=None) -> TensorMeta:
    """``input (N, H_in)``, ``hx (N, H)`` -> ``h' (N, H)``; unbatched ``(H_in)``, ``(H)`` -> ``(H)``
    (https://pytorch.org/docs/stable/generated/torch.nn.GRUCell.html)."""
    batched = _cell_input_dims(module, input)
    state = None if hx is None else _cell_state_dims(module, hx, "hidden")
    x = _cell_input(module, input)
    if state is None:
        out = x.with_shape((x.shape[0], module.hidden_size))
    elif not batched and state.ndim == 2 and isinstance(module, nn.RNNCell) and compat.RNN_CELL_BROADCASTS_2D_HIDDEN:
        out = _rnn_cell_broadcast_quirk(module, x, state)
    else:
        state = state if batched else _unbatched_state(module, state, "hidden")
        _check_cell_state(module, x, state, 0)
        _check_weight_dtype(module, state, "hidden")
        out = x.with_shape((x.shape[0], module.hidden_size))
    return out if batched else _drop_dim(out, 0)


def _rnn_cell_broadcast_quirk(module: nn.RNNCell, x: TensorMeta, state: TensorMeta) -> TensorMeta:
    """RNNCell with a 1-D input and a 2-D ``hx (M, K)`` before torch 2.15
    (``compat.RNN_CELL_BROADCASTS_2D_HIDDEN``): ``hx`` becomes ``(1, M, K)``; ATen
    wants ``M == hidden_size``, ``hx @ W_hh.T`` wants ``K == hidden_size``, and the sum with the
    input's ``(1, hidden_size)`` broadcasts to ``(1, M, hidden_size)``: the result is ``(M, H)``."""
    require_equal(state.shape[0], module.hidden_size, lambda: f"hidden0 has inconsistent hidden_size: "
                  f"got {fmt(state.shape[0])}, expected {module.hidden_size}")
    require_equal(state.shape[1], module.hidden_size, lambda: f"mat1 and mat2 shapes cannot be multiplied "
                  f"({fmt(state.shape[0])}x{fmt(state.shape[1])} and {module.hidden_size}x{module.hidden_size})")
    _check_weight_dtype(module, state, "hidden")
    return x.with_shape((1, state.shape[0], module.hidden_size))


def _lstm_cell_states(module: nn.LSTMCell, hx: Any, batched: bool) -> tuple[TensorMeta, TensorMeta]:
    """``(h, c)``. ``LSTMCell.forward`` iterates over ``hx`` and, unbatched, indexes ``hx[0]``,
    ``hx[1]``: a tensor with at least 2 rows then serves as the pair too (batched, the kernel
    wants a tuple)."""
    if isinstance(hx, TensorMeta):
        if batched or hx.ndim == 0:
            raise ShapeError(f"LSTMCell: hx must be a tuple (h, c), got a tensor of size {shape_str(hx.shape)}")
        require_positive(hx.shape[0] - 1, lambda: f"LSTMCell: hx[1] is out of range for hx of size "
                         f"{shape_str(hx.shape)}")
        states = [hx.with_shape(hx.shape[1:])] * 2
    elif isinstance(hx, (tuple, list)):
        states = list(hx)
    else:
        raise ShapeError(f"LSTMCell: hx must be a tuple (h, c), got {type(hx).__name__}")
    states = [_cell_state_dims(module, s, f"hx[{i}]") for i, s in enumerate(states)]
    if not _pair_length_ok(len(states), batched):
        raise ShapeError(f"lstm_cell expects two hidden states, got {len(states)}")
    return states[0], states[1]


@rule(nn.LSTMCell)
def lstm_cell_module(module: nn.LSTMCell, input, hx=None) -> tuple[TensorMeta, TensorMeta]:
    """``input (N, H_in)``, ``(h (N, H), c (N, H))`` -> ``(h' (N, H), c' (N, H))``; unbatched without
    ``N``. ``c' = f*c + i*g`` promotes ``c``'s dtype with the input's (both results take it)
    (https://pytorch.org/docs/stable/generated/torch.nn.LSTMCell.html)."""
    batched = _cell_input_dims(module, input)
    states = None if hx is None else _lstm_cell_states(module, hx, batched)
    x = _cell_input(module, input)
    dtype = x.dtype
    if states is not None:
        h, c = (s if batched else _unbatched_state(module, s, f"hx[{i}]") for i, s in enumerate(states))
        _check_cell_state(module, x, h, 0)
        _check_cell_state(module, x, c, 1)
        _check_weight_dtype(module, h, "hx[0]")
        dtype = torch.promote_types(x.dtype, c.dtype)
    out = TensorMeta((x.shape[0], module.hidden_size), dtype)
    out = out if batched else _drop_dim(out, 0)
    return out, out

