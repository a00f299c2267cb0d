"""Every shape rule against PyTorch (its real kernels, on tiny CPU tensors): same output shapes and dtypes,
or both reject. Each case also runs with some sizes symbolic, and the symbolic answer
(output formula and input domain) must agree with PyTorch at the drawn sizes."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import lazyfx

from cases import CASES
from cases_nn import fn_module_n
from differential import Example, check, fn_module


@pytest.mark.parametrize("name", sorted(CASES))
@given(data=st.data())
def test_rule_agrees_with_pytorch(name, data):
    check(CASES[name](data.draw))


def test_circular_pad_wrapping_next_to_an_emptied_dim():
    """Hypothesis found it: a circular pad larger than what the crop leaves is accepted where
    another padded dim is cropped to 0 (the copies are empty), with that dim symbolic too."""
    module = fn_module(lambda x: F.pad(x, (-1, -3, -1, 2), "circular"), 1, "circular next to an empty dim")
    for symbolic in ([False, False, True], [False, True, True], [False, False, False]):
        check(Example(module, [((1, 2, 4), torch.float32)], [symbolic]))


@pytest.mark.parametrize("op", ["clamp_", "masked_fill_", "bernoulli_"])
@pytest.mark.parametrize("x, operand", [
    ((1, 1, 1), (1, 1, 1)),  # PyTorch accepts: a bound of size 1 along the symbolic dim
    ((1, 1, 1), (1, 1, 2)),  # rejects: the operand would grow the output
    ((1, 1, 3), (1, 1, 1)),  # accepts
    ((1, 1, 3), (1, 1, 3)),  # accepts
    ((1, 1, 3), (1, 1, 2)),  # rejects
    ((1, 3), (2, 1, 3)),  # rejects: more dims than the output
])
@pytest.mark.parametrize("output_symbolic", [False, True])
def test_in_place_operands_broadcast_to_the_output_exactly(op, x, operand, output_symbolic):
    """Hypothesis found it: ``x.clamp_(lo, hi)`` with both bounds symbolic along a dim where ``x``
    has size 1 was refused for every size (the bounds' broadcast assumed them != 1, then the
    output needed them to be 1). Each operand must broadcast to the output itself: exact, with
    the output's last dim concrete or symbolic too (``d == 1 or d == t``, nothing assumed)."""
    calls = {
        "clamp_": (lambda x, lo, hi: x.clone().clamp_(lo, hi), 3),
        "masked_fill_": (lambda x, m: x.clone().masked_fill_(m > 0, 1.0), 2),
        "bernoulli_": (lambda x, p: x.clone().bernoulli_(p.sigmoid()), 2),
    }
    fn, arity = calls[op]
    operands = [operand] * (arity - 1)
    masks = [[output_symbolic and i == len(x) - 1 for i in range(len(x))]]
    masks += [[i == len(s) - 1 for i in range(len(s))] for s in operands]
    check(Example(fn_module(fn, arity, op), [(s, torch.float32) for s in [x, *operands]], masks))


def test_bilinear_bias_whose_first_size_fixes_the_output_size():
    """Hypothesis found it: a bias ``(1, C)`` fixes out_features (symbolic in the weight) to 1,
    and broadcasting the output with that bias then took out_features to be != 1 (the usual
    choice between two symbolic sizes): no input was valid, where PyTorch accepts."""
    module = fn_module_n(lambda x1, x2, w, b: torch.bilinear(x1, x2, w, b), 4, "bilinear")
    shapes = [(1,), (1,), (1, 1, 1), (1, 1)]
    for masks in ([[False], [False], [True, False, False], [False, True]],
                  [[False], [False], [True, False, False], [False, False]]):
        check(Example(module, [(s, torch.float32) for s in shapes], masks))
    check(Example(module, [(s, torch.float32) for s in [(1,), (1,), (1, 1, 1), (1, 3)]],
                  [[False], [False], [True, False, False], [False, True]]))


@pytest.mark.parametrize("cls", [torch.nn.GRUCell, torch.nn.LSTMCell])
def test_a_cell_refuses_a_two_dim_state_for_an_unbatched_input(cls):
    """PyTorch 2.13 crashes the process (a segfault) on an unbatched input with a (1, 1) state
    for these cells, and raises for larger 2-D states, so the differential cases never draw a
    2-D state there; lazyfx refuses every one. Its counterpart, a 1-D state, is accepted."""
    class Cell(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = cls(2, hidden)

        def forward(self, x, h):
            return self.cell(x, (h, h) if cls is torch.nn.LSTMCell else h)

    for hidden in (1, 3):
        for state in ((1, hidden), (2, hidden)):
            with pytest.raises(lazyfx.ShapeError, match="must be 1-D"):
                lazyfx.infer(Cell(), (2,), state)
    report = lazyfx.infer(Cell(), (2,), (hidden,))
    expected = Cell()(torch.zeros(2), torch.zeros(hidden))
    got = report.output if isinstance(report.output, tuple) else (report.output,)
    want = expected if isinstance(expected, tuple) else (expected,)
    assert [tuple(t.shape) for t in got] == [tuple(t.shape) for t in want] == [(hidden,)] * len(want)


class _Einsum(torch.nn.Module):
    def __init__(self, equation: str) -> None:
        super().__init__()
        self.equation = equation

    def forward(self, a, b):
        return torch.einsum(self.equation, a, b)


@pytest.mark.parametrize("equation, first, second", [
    ("ab,bb", (1, "P"), ("Q", 1)),  # found by hypothesis (thorough profile): b is 1 on the diagonal
    ("b,bb", ("P",), ("Q", 1)),
    ("b,bb", ("P",), (1, "Q")),
    ("b,bb", ("P",), ("Q", "Q")),  # (the counterpart: no size fixed to 1, the broadcast assumes)
])
def test_a_diagonal_that_fixes_a_size_to_one_lets_it_broadcast(equation, first, second):
    """A label repeated within an operand needs equal sizes there; where that fixes a symbolic size
    to 1, the label broadcasts against the other operand's, as in PyTorch. lazyfx said no input
    was valid: it assumed the size was not 1 (broadcasting) before the diagonal required it."""
    report = lazyfx.infer(_Einsum(equation), first, second)
    for p in (1, 2, 3):
        for q in (1, 2, 3):
            sizes = {"P": p, "Q": q}
            shapes = [tuple(sizes.get(d, d) for d in spec) for spec in (first, second)]
            try:
                expected = tuple(torch.einsum(equation, *[torch.zeros(s) for s in shapes]).shape)
            except RuntimeError:
                expected = None
            if report.domain.assumptions and expected is not None and not report.domain.contains(**sizes):
                continue  # outside what the analysis assumed (P, Q != 1): it says so, it does not answer
            assert report.domain.contains(**sizes) == (expected is not None), (sizes, report.domain)
            if expected is not None:
                out = tuple(int(d.subs({s: sizes[s.name] for s in d.free_symbols})) if hasattr(d, "subs") else d
                            for d in report.output_shape)
                assert out == expected, sizes


_KEYWORD_MISUSE = {  # calls PyTorch's argument parser refuses, next to their valid twins
    "view(2, size=)": lambda x: x.view(2, size=(3, 4)),
    "view(size=int)": lambda x: x.view(size=24),
    "reshape(size=)": lambda x: x.reshape(size=(2, 12)),
    "permute(dims=int)": lambda x: x.permute(dims=0),
    "flip(dims=int)": lambda x: x.flip(dims=0),
    "expand(sizes=)": lambda x: x.expand(sizes=(2, 3, 4)),
    "pow(other=)": lambda x: x.pow(other=2),
    "pow()": lambda x: x.pow(),
}
_KEYWORD_USE = {
    "view(size=)": lambda x: x.view(size=(2, -1)),
    "reshape(shape=)": lambda x: x.reshape(shape=[4, 6]),
    "permute(dims=)": lambda x: x.permute(dims=(2, 0, 1)),
    "flip(dims=)": lambda x: x.flip(dims=[0, 2]),
    "expand(size=)": lambda x: x.expand(size=(2, 3, 4)),
    "pow(exponent=)": lambda x: x.pow(exponent=2),
    "torch.pow(exponent=)": lambda x: torch.pow(x, exponent=x),
}


@pytest.mark.parametrize("name", _KEYWORD_MISUSE)
def test_a_keyword_pytorch_refuses_is_refused(name):
    """A size argument given by keyword where PyTorch's parser refuses it (with a positional
    one, under another name, as an int) is a shape error, not a rule that could not cope."""
    call = _KEYWORD_MISUSE[name]
    with pytest.raises((TypeError, RuntimeError)):
        call(torch.zeros(2, 3, 4))
    with pytest.raises(lazyfx.ShapeError):
        lazyfx.infer(fn_module(call, 1, name), ("B", 3, 4))


@pytest.mark.parametrize("name", _KEYWORD_USE)
def test_a_size_argument_by_keyword_is_as_pytorch_takes_it(name):
    call = _KEYWORD_USE[name]
    report = lazyfx.infer(fn_module(call, 1, name), (2, 3, 4))
    assert report.output.shape == tuple(call(torch.zeros(2, 3, 4)).shape)
