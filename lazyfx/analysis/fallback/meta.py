"""The fallback for operations without a shape rule: PyTorch's own meta kernels,
run on fake tensors with symbolic sizes.

This module holds lazyfx's use of PyTorch's fake-tensor machinery (``FakeTensorMode``,
``ShapeEnv``, ``torch.utils._sympy``), so that its churn stays here. (Other PyTorch
internals are used where they are needed: torch.fx's tracer internals in
:mod:`lazyfx.analysis.trace` and :mod:`lazyfx.rules.control`, ``TorchDispatchMode`` in
:mod:`lazyfx.analysis.counts`, :mod:`~lazyfx.analysis.randomness` and
:mod:`~lazyfx.analysis.valueflow`, ``torch.utils._pytree`` and torch.fx's experimental config
in :mod:`lazyfx.build.exporters`, ``torch._has_compatible_shallow_copy_type`` in
:mod:`lazyfx.build.rewrite`, ``torch._C._VariableFunctions`` in :mod:`lazyfx.rules.index`.) For a node
without a rule, each input symbol (``H``) gets a ShapeEnv symbol with a
representative hint; input sizes (formulas in the user's symbols) become
SymInts; the operation runs under ``FakeTensorMode``; output sizes, and the
guards and runtime asserts the kernel added, are translated back into
lazyfx formulas in the user's names.

* Kernels run "size-oblivious" (a symbolic size is taken to be >= 2), so that
  stride and memory-format decisions do not guard on sizes; what the kernel
  still checks becomes a condition of the input domain, like a rule's
  ``require``. A condition the kernel runs without, at a few sizes where it
  fails and with the output its formulas give there, is a branch it took
  (``cdist``'s ``N > 25``), not a requirement.
* A guard that pins a size to its hint value (decompositions that compute
  sizes in floating point do this) becomes an assumption and a warning
  (LFX023): shapes after that node hold only for that size.
* Sizes that depend on tensor values (unbacked symbols: ``nonzero``) raise
  :class:`~lazyfx.errors.DataDependentError`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import operator
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Iterator, Optional

import sympy
import torch
from torch.nn.parameter import is_lazy

from lazyfx.core import checks
from lazyfx.core.diagnostics import first_line
from lazyfx.core.journal import MODULE_STATE
from lazyfx.core.symbolic import (
    FloorDiv,
    as_dim,
    floordiv,
    fmt,
    is_concrete,
    mod,
    substitute,
    sym_max,
    sym_min,
)
from lazyfx.core.values import (
    TensorMeta,
    analysed_dtype,
    map_values,
    mapped_dict,
    same_tuple_type,
    tensors_in,
)
from lazyfx.errors import DataDependentError, ShapeError, UnsupportedOpError

RULE_NAME = "fallback: meta kernel"

# Representative sizes are distinct, typical and never 0 or 1 (which ShapeEnv specializes);
# abstract execution retries at the smaller scales when a model rejects the larger sizes.
HINT_SCALES = (64, 16, 5)


class MetaKernelFallback:
    """Evaluates operations with PyTorch's meta kernels for one analysis."""

    # Whether fake tensors and the outputs of repeated calls are kept for the analysis (see
    # :meth:`run`); False makes every call anew, as a check that keeping them changes nothing
    # and to measure what a call costs.
    reuse = True

    def __init__(self, constraints, hints: Optional[dict[str, int]] = None) -> None:
        from torch._subclasses.fake_tensor import FakeTensorMode
        from torch.fx.experimental.symbolic_shapes import ShapeEnv

        self.constraints = constraints
        self.shape_env = ShapeEnv(duck_shape=False)
        self.mode = FakeTensorMode(shape_env=self.shape_env, allow_non_fake_inputs=True)
        self._symints: dict[sympy.Symbol, torch.SymInt] = {}  # user symbol -> SymInt
        self._user: dict[sympy.Symbol, sympy.Symbol] = {}  # ShapeEnv symbol -> user symbol
        self._fakes: dict[tuple, tuple] = {}  # (shape, dtype) -> (fake tensor, its _signature)
        self._reused: dict[tuple, Any] = {}  # run's reuse key -> the call's fake output (_frozen)
        self._size_one: dict[tuple, Optional[str]] = {}  # (reuse key, concrete sizes) -> the kernel's rejection
        self._translations: dict[tuple, tuple] = {}  # reuse key -> (ShapeEnv version, lazyfx values)
        # (message, node, names of the symbols pinned): sizes a kernel fixed to their representative values
        self.specialized: list[tuple[str, Optional[str], frozenset[str]]] = []
        self.hints = dict(hints or {})  # symbol name -> representative size, instead of the usual one

    def release(self) -> None:
        """Let go of the ShapeEnv and FakeTensorMode once the analysis is over. PyTorch keeps
        them alive past it in process-wide caches: ShapeEnv's methods are ``lru_cache``d on
        the class (keyed by the instance), and FakeTensorMode's dispatch cache keys hold
        SymInts; both are cleared (entries other code made are recomputed when next needed).
        ``specialized`` stays, for the report."""
        from torch._subclasses.fake_tensor import FakeTensorMode
        from torch.fx.experimental.symbolic_shapes import ShapeEnv

        for value in vars(ShapeEnv).values():
            clear = getattr(value, "cache_clear", None)
            if callable(clear):
                clear()
        FakeTensorMode.cache_clear()
        self._symints.clear()
        self._user.clear()
        self._fakes.clear()
        self._reused.clear()
        self._size_one.clear()
        self._translations.clear()
        self.shape_env = self.mode = None

    # -- running an operation --------------------------------------------------------

    def run(self, call: Callable[..., Any], args: tuple, kwargs: dict, op: str, same_as: Any = None,
            reusable: Callable[[], bool] = lambda: True,
            within: Callable[[], ContextManager] = contextlib.nullcontext) -> Any:
        """``call(*args, **kwargs)`` on fake tensors; the result as lazyfx values.

        ``same_as``: a key for what ``call`` computes (its registry key), given only where it is
        a function of its arguments alone (PyTorch's own operations). A call with the same key
        and arguments as an earlier one (the blocks of a model repeat) then reuses its output
        instead of running the kernel again: running it again would add no guard (the first
        run's are known to the ShapeEnv by now) and give the same formulas. The size-one check
        is made again, from the concrete sizes' outcomes of the first run. ``reusable()``,
        asked after the call, says whether it may be reused (not where it drew random numbers,
        which the draw watcher sees only when the kernel runs). The kernel runs ``within()``."""
        key = _reuse_key(same_as, (args, kwargs)) if same_as is not None and self.reuse else None
        if key is not None and key in self._reused:
            self._check_size_one(call, args, kwargs, op, key, within)
            return self._translated(key, op)
        with within():
            out = self._run(call, args, kwargs, op, key)
        if key is not None and reusable():
            frozen = _frozen(out)
            if frozen is not _UNKNOWN:
                self._reused[key] = frozen
                return self._translated(key, op)
        return self._from_fake(out, op)

    def _translated(self, key: tuple, op: str) -> Any:
        """The reused output of ``key`` as lazyfx values, translated again only where the
        ShapeEnv learned something since (a replacement changes the formulas)."""
        version = getattr(self.shape_env, "_version_counter", None)  # PyTorch's own cache key
        known = self._translations.get(key)
        if known is not None and version is not None and known[0] == version:
            return known[1]
        value = self._from_fake(self._reused[key], op)
        self._translations[key] = (version, value)
        return value

    def _run(self, call: Callable[..., Any], args: tuple, kwargs: dict, op: str, key: Any) -> Any:
        from torch._subclasses.fake_tensor import DataDependentOutputException, DynamicOutputShapeException

        guards_before = len(self.shape_env.guards)
        asserts_before = self._runtime_asserts()
        try:
            with self._faked((args, kwargs)) as (fake_args, fake_kwargs), self.mode, _size_oblivious(), \
                    _quiet_fake_tensor_logs():
                out = call(*fake_args, **fake_kwargs)
        except (DataDependentOutputException, DynamicOutputShapeException) as exc:
            raise DataDependentError(f"{op}: the output shape depends on tensor values ({type(exc).__name__})",
                                     final=True) from None
        except (RuntimeError, ValueError, IndexError, TypeError, AssertionError, NotImplementedError) as exc:
            if _is_data_dependent(exc):
                raise DataDependentError(f"{op}: the output shape depends on tensor values", final=True) from None
            if _has_no_meta_kernel(exc):
                raise UnsupportedOpError(
                    f"no shape rule for {op}, and PyTorch has no meta kernel for it either: {_describe(exc)}"
                ) from None
            raise self._rejection(op, args, kwargs, exc) from None
        self._record(op, guards_before, asserts_before,
                     only_a_branch=lambda condition: self._only_a_branch(call, args, kwargs, op, condition, out))
        self._check_size_one(call, args, kwargs, op, key)
        return out

    def _only_a_branch(self, call: Callable[..., Any], args: tuple, kwargs: dict, op: str, condition: Any,
                       out: Any) -> bool:
        """Whether a condition the kernel checked is a branch it took rather than a requirement
        (``cdist`` computes distances one way above 25 rows and another below): at a few
        sizes where the condition fails, the others at their representative sizes, the kernel
        runs on concrete sizes and gives the output the formulas give there. Sampled, as the
        size-one check is: a requirement the samples miss is not found."""
        expected = self._from_fake(out, op)
        symbols = sorted({s for v in _leaves((args, kwargs)) for s in _free(v)}, key=_printed)
        points = self._points_failing(condition, symbols)
        if not points:
            return False
        for values in points:
            concrete_args, concrete_kwargs = _substitute((args, kwargs), values)
            if any(d < 0 for t in tensors_in((concrete_args, concrete_kwargs)) for d in t.shape):
                return False
            try:
                with self._faked((concrete_args, concrete_kwargs)) as (fake_args, fake_kwargs), self.mode, \
                        _quiet_fake_tensor_logs():
                    got = call(*fake_args, **fake_kwargs)
            except (RuntimeError, ValueError, IndexError, TypeError, AssertionError, NotImplementedError):
                return False
            if self._from_fake(got, op) != _substitute(expected, values):
                return False
        return True

    def _points_failing(self, condition: Any, symbols: list) -> list[dict]:
        """Up to three admitted sizes (one symbol moved from its representative size) where
        ``condition`` is false."""
        base = {s: self.hint(s) for s in symbols}
        if not condition.free_symbols <= set(base):
            return []
        points = []
        for symbol in sorted(condition.free_symbols, key=_printed):
            low, high = self.constraints.range_of(symbol)
            step = self.constraints.info(symbol.name).multiple_of
            hint = base[symbol]
            for value in sorted({1, 2, 3, hint // 2, hint - 1, hint + 1, 2 * hint}):
                if value < max(low, 1) or (high is not None and value > high) or value % step:
                    continue
                point = {**base, symbol: value}
                if condition.subs(point) == sympy.false:
                    points.append(point)
        return points[:3]

    def _check_size_one(self, call: Callable[..., Any], args: tuple, kwargs: dict, op: str, key: Any = None,
                        within: Callable[[], ContextManager] = contextlib.nullcontext) -> None:
        """Size-oblivious kernels take every symbolic size to be >= 2, so a check that fails
        only when a size is 1 (``topk(x, 2)`` along a dim of size T) leaves no guard. Each
        input symbol that may be 1 is tried at 1, the others at their representative sizes,
        on concrete sizes: where the kernel rejects that, ``symbol != 1`` is a condition.
        (With a reuse ``key``, each outcome is kept for the next call like it.)"""
        symbols = sorted({s for v in _leaves((args, kwargs)) for s in _free(v)}, key=_printed)
        for user in symbols:
            if self.constraints.range_of(user)[0] > 1:
                continue
            values = {t: 1 if t == user else self.hint(t) for t in symbols}
            at = (key, tuple(values.items())) if key is not None else None
            rejection = self._size_one.get(at, _UNKNOWN) if at is not None else _UNKNOWN
            if rejection is _UNKNOWN:
                with within():
                    rejection = self._rejects_at(call, args, kwargs, values)
                if at is not None:
                    self._size_one[at] = rejection
            if rejection is not None:
                checks.require(sympy.Ne(user, 1), f"{op} rejects {user} = 1 (PyTorch's meta kernel: {rejection})")

    def _rejects_at(self, call: Callable[..., Any], args: tuple, kwargs: dict, values: dict) -> Optional[str]:
        """How the kernel rejects the arguments at the concrete sizes ``values``, or None."""
        concrete_args, concrete_kwargs = _substitute((args, kwargs), values)
        if any(d < 0 for t in tensors_in((concrete_args, concrete_kwargs)) for d in t.shape):
            return None  # outside what the earlier operations accept
        try:
            with self._faked((concrete_args, concrete_kwargs)) as (fake_args, fake_kwargs), self.mode, \
                    _quiet_fake_tensor_logs():
                call(*fake_args, **fake_kwargs)
        except (RuntimeError, ValueError, IndexError, TypeError, AssertionError) as exc:
            if not (_is_data_dependent(exc) or _has_no_meta_kernel(exc)):
                return _describe(exc)
        return None

    def _rejection(self, op: str, args, kwargs, exc: Exception) -> Exception:
        """A kernel that fails on concrete sizes rejects them, as PyTorch would. With symbolic
        sizes it only failed at the representative values: that proves nothing about the
        others (a symbolic size may have to equal a concrete one), so it is not a shape error."""
        symbols = sorted({s for v in _leaves((args, kwargs)) for s in _free(v)}, key=_printed)
        if not symbols:
            return ShapeError(f"{op} rejects its inputs: {_describe(exc)}")
        hints = ", ".join(f"{s}={self.hint(s)}" for s in symbols)
        return UnsupportedOpError(
            f"no shape rule for {op}, and PyTorch's meta kernel rejects its inputs at the representative sizes "
            f"{hints}, so lazyfx cannot tell for which sizes it is valid: {_describe(exc)}",
            notes=[f"pin {', '.join(str(s) for s in symbols)} to concrete sizes, or add a shape rule for {op}"],
        )

    def run_module(self, module: torch.nn.Module, args: tuple, kwargs: dict, op: str,
                   shapes: Optional[dict[str, tuple]] = None, own_hooks: bool = False, reuse: bool = False,
                   reusable: Callable[[], bool] = lambda: True,
                   within: Callable[[], ContextManager] = contextlib.nullcontext) -> Any:
        """A module's forward on fake tensors, with fake copies of its parameters and buffers
        (so that nothing, not even a running statistic, changes in the user's model).
        ``shapes`` gives some of them symbolic shapes (formulas in the input symbols). The
        state goes in as an argument, so that it takes the same sizes as the inputs wherever
        they are substituted (the size-one check). The module's own hooks run only with
        ``own_hooks``: for a graph node, the trace has them around it (:mod:`lazyfx.analysis.hooks`).
        With ``reuse``, a layer of PyTorch's own without sublayers is a function of its
        settings and its tensors' shapes, and a call like an earlier one reuses its output
        (see :meth:`run`)."""
        shapes = shapes or {}
        # a lazy tensor forward does not reach (the head of a branch not taken) has no shape: it
        # stays as it is, uninitialized, as a dry run would leave it
        state = {name: TensorMeta(tuple(shapes.get(name, tuple(t.shape))), analysed_dtype(t.dtype))
                 for name, t in _tensors(module) if name in shapes or not is_lazy(t)}

        def call(fake_state, *fake_args, **fake_kwargs):
            if own_hooks:
                return torch.func.functional_call(module, fake_state, fake_args, fake_kwargs)
            from torch.nn.utils.stateless import _reparametrize_module

            with _reparametrize_module(module, fake_state):  # forward alone: the trace has its hooks
                return module.forward(*fake_args, **fake_kwargs)

        same_as = _layer_key(module) if reuse and not own_hooks else None
        return self.run(call, (state, *args), kwargs, op, same_as=same_as, reusable=reusable, within=within)

    # -- lazyfx values -> fake tensors ---------------------------------------------------

    @contextlib.contextmanager
    def _faked(self, value: Any) -> Iterator[Any]:
        """``value`` with fake tensors for its TensorMetas. A fake tensor is made once per shape
        and dtype and kept for the analysis (making one costs as much as running a kernel), but
        handed out at most once per call, so that no two arguments alias that did not before;
        one that the call changed (an in-place resize, a gradient, an attribute) is dropped."""
        used: list = []
        try:
            yield self._to_fake(value, used)
        finally:
            for key, fake, signature in used:
                if _signature(fake) != signature:
                    del self._fakes[key]

    def _to_fake(self, value: Any, used: list) -> Any:
        if isinstance(value, TensorMeta):
            return self._fake_tensor(value, used)
        if isinstance(value, tuple):
            return tuple(self._to_fake(v, used) for v in value)
        if isinstance(value, list):
            return [self._to_fake(v, used) for v in value]
        if isinstance(value, dict):
            return {k: self._to_fake(v, used) for k, v in value.items()}
        if isinstance(value, slice):
            return slice(*(self._to_fake(v, used) for v in (value.start, value.stop, value.step)))
        if isinstance(value, sympy.Basic):
            return self._to_symint(value)
        if isinstance(value, torch.device):
            return torch.device("cpu")  # fake tensors live on cpu, whatever device a dry run would use
        return value

    def _fake_tensor(self, value: TensorMeta, used: list) -> torch.Tensor:
        key = (value.shape, value.dtype)
        kept = self._fakes.get(key) if self.reuse else None
        if kept is not None and all(fake is not kept[0] for _, fake, _ in used):
            used.append((key, *kept))
            return kept[0]
        sizes = [self._to_symint(d) for d in value.shape]
        with self.mode:
            fake = torch.empty(sizes, dtype=value.dtype)
        if kept is None and self.reuse:
            self._fakes[key] = (fake, _signature(fake))
            used.append((key, *self._fakes[key]))
        return fake

    def _to_symint(self, expr: Any) -> Any:
        if is_concrete(expr):
            return expr
        expr = sympy.sympify(expr)
        if expr.is_Integer:
            return int(expr)
        if expr.is_Symbol:
            return self._symint(expr)
        parts = [self._to_symint(a) for a in expr.args]
        if expr.is_Add:
            return _fold(operator.add, parts)
        if expr.is_Mul:
            return _fold(operator.mul, parts)
        if expr.is_Pow and expr.args[1].is_Integer and expr.args[1] > 0:
            return parts[0] ** int(expr.args[1])
        if isinstance(expr, FloorDiv):
            return parts[0] // parts[1]
        if isinstance(expr, sympy.Mod):
            return parts[0] % parts[1]
        if isinstance(expr, sympy.Max):
            return _fold(torch.sym_max, parts)
        if isinstance(expr, sympy.Min):
            return _fold(torch.sym_min, parts)
        raise UnsupportedOpError(f"the meta-kernel fallback cannot express the size {fmt(expr)}")

    def _symint(self, user: sympy.Symbol) -> torch.SymInt:
        if user not in self._symints:
            from torch._dynamo.source import ConstantSource
            from torch.fx.experimental.symbolic_shapes import DimDynamic

            source = ConstantSource(f"lazyfx_{user.name}")
            hint = self.hint(user)
            sym = self.shape_env.create_symbol(hint, source, dynamic_dim=DimDynamic.DYNAMIC)
            self._user[sym] = user
            self._symints[user] = self.shape_env.create_symintnode(sym, hint=hint, source=source)
        return self._symints[user]

    def hint(self, user: sympy.Symbol, scale: int = HINT_SCALES[0]) -> int:
        """A representative size: inside the symbol's known range, distinct per symbol (at the
        first scale, the one given for it in ``hints`` where there is one)."""
        if scale == HINT_SCALES[0] and user.name in self.hints:
            return self.hints[user.name]
        index = sorted(self.constraints.infos).index(user.name) if user.name in self.constraints.infos else 0
        info = self.constraints.info(user.name)
        low, high = self.constraints.range_of(user)
        step = info.multiple_of
        want = max(low, scale + (scale // 8) * index + (index % 2), 2)
        want = -(-want // step) * step
        if high is not None and want > high:
            want = max(low, (high // step) * step)
        return int(want)

    def perturbations(self, user: sympy.Symbol, hint: int) -> list[int]:
        """Other admitted values of a symbol, to tell which sizes move with it. Moving by one
        step misses a dependence through a floor division, so the list also doubles and
        halves the value (a division by d changes at least once between h and 2h when d <= h)."""
        info = self.constraints.info(user.name)
        low, high = self.constraints.range_of(user)
        step = info.multiple_of
        candidates = [hint + step, 2 * hint + step, 3 * hint + 7 * step, hint - step, hint // 2]
        out = []
        for value in candidates:
            value = -(-value // step) * step
            if value != hint and value >= max(low, 2) and (high is None or value <= high) and value not in out:
                out.append(value)
        return out

    # -- fake tensors -> lazyfx values ------------------------------------------------------

    def _from_fake(self, value: Any, op: str) -> Any:
        if isinstance(value, (torch.Tensor, _FakeShape)):
            return TensorMeta(tuple(self._dim(s, op) for s in value.shape), value.dtype)
        if isinstance(value, torch.Size):
            return tuple(self._dim(s, op) for s in value)
        if isinstance(value, (torch.SymInt, int)) and not isinstance(value, bool):
            return self._dim(value, op)
        if isinstance(value, torch.SymBool):
            conditions = self._conditions(value.node.expr, op)
            return conditions[0] if len(conditions) == 1 else sympy.And(*conditions)
        if isinstance(value, tuple):
            return same_tuple_type(value, [self._from_fake(v, op) for v in value])
        if isinstance(value, list):
            return [self._from_fake(v, op) for v in value]
        if isinstance(value, dict):
            return mapped_dict(value, lambda v: self._from_fake(v, op))
        return value

    def _dim(self, size: Any, op: str) -> Any:
        if isinstance(size, int):
            return size
        return as_dim(self._expr(size.node.expr, op))

    def _expr(self, expr: sympy.Basic, op: str, replace: bool = True) -> Any:
        """A ShapeEnv formula in the user's symbols and lazyfx's functions (``replace``:
        with the values ShapeEnv has fixed symbols to substituted)."""
        if replace:
            expr = self.shape_env.replace(expr)
        if expr.is_Integer:
            return int(expr)
        if expr.is_Symbol:
            if expr in self._user:
                return self._user[expr]
            raise DataDependentError(f"{op}: the output shape depends on tensor values (size {expr})", final=True)
        if isinstance(expr, sympy.core.relational.Relational):
            lhs, rhs = self._expr(expr.lhs, op, replace), self._expr(expr.rhs, op, replace)
            if isinstance(expr, sympy.Eq) and not isinstance(lhs, sympy.Basic) and isinstance(rhs, sympy.Basic):
                lhs, rhs = rhs, lhs  # "H - 2 == 62", not "62 == H - 2"
            return type(expr)(lhs, rhs)
        args = [self._expr(a, op, replace) for a in expr.args]
        name = type(expr).__name__
        if expr.is_Add:
            return sum(args[1:], args[0])
        if expr.is_Mul:
            return _fold(operator.mul, args)
        if expr.is_Pow or name == "PowByNatural":
            return args[0] ** args[1]
        if name in ("FloorDiv", "CleanDiv"):
            return floordiv(*args)
        if name == "CeilDiv":
            return floordiv(args[0] + args[1] - 1, args[1])
        if name in ("Mod", "PythonMod"):
            return mod(*args)
        if name == "ModularIndexing":
            return mod(floordiv(args[0], args[1]), args[2])
        if name == "Max":
            return _fold(sym_max, args)
        if name == "Min":
            return _fold(sym_min, args)
        if name == "Identity":
            return args[0]
        raise UnsupportedOpError(f"{op}: PyTorch's meta kernel produced a size lazyfx cannot read: {expr}")

    def _conditions(self, expr: sympy.Basic, op: str, replace: bool = True) -> list:
        """A ShapeEnv boolean as a list of lazyfx conditions (its conjuncts; True/False as bools).
        Guards are read with ``replace=False``: a guard that fixes a symbol must not be
        rewritten by the very replacement it caused."""
        if replace:
            expr = self.shape_env.replace(expr)
        if expr in (sympy.true, sympy.false):
            return [bool(expr)]
        if isinstance(expr, sympy.And):
            return [c for arg in expr.args for c in self._conditions(arg, op, replace)]
        if isinstance(expr, sympy.Or):
            parts = [c for arg in expr.args for c in self._conditions(arg, op, replace)]
            if any(p is True for p in parts):
                return [True]
            parts = [p for p in parts if p is not False]
            return [sympy.Or(*parts)] if parts else [False]
        if isinstance(expr, sympy.core.relational.Relational):
            converted = self._expr(expr, op, replace)
            return [converted if isinstance(converted, sympy.Basic) else bool(converted)]
        raise UnsupportedOpError(f"{op}: PyTorch's meta kernel checked a condition lazyfx cannot read: {expr}")

    # -- guards and runtime asserts ----------------------------------------------------------

    def _runtime_asserts(self) -> set:
        return {ra.expr for ras in self.shape_env.deferred_runtime_asserts.values() for ra in ras}

    def _record(self, op: str, guards_before: int, asserts_before: set,
                only_a_branch: Callable[[Any], bool] = lambda condition: False) -> None:
        new = [g.expr for g in self.shape_env.guards[guards_before:]]
        new += list(self._runtime_asserts() - asserts_before)
        for expr in new:
            for condition in self._conditions(expr, op, replace=False):
                if condition is True:
                    continue
                pinned = _pinned(condition)
                if pinned is None:
                    if checks.decide(condition) is None and only_a_branch(condition):
                        continue  # the kernel works either way: not a requirement
                    checks.require(condition, f"{op} requires {fmt(condition)} (checked by PyTorch's meta kernel)")
                elif checks.decide(condition) is None:
                    message = f"PyTorch's meta kernel for {op} fixed {fmt(pinned.lhs)} to {fmt(pinned.rhs)}"
                    names = frozenset(str(sym) for sym in pinned.lhs.free_symbols)
                    self.specialized.append((message, checks.current_node(), names))
                    checks.assume(condition, message)


@contextlib.contextmanager
def _size_oblivious():
    """Kernels decide sizes "size-oblivious" within the block. (Set and reset by hand:
    ``_config.patch()`` makes a ContextVar per use, which the thread's context keeps forever.)"""
    from torch.fx.experimental import _config

    prior = _config.backed_size_oblivious
    _config.backed_size_oblivious = True
    try:
        yield
    finally:
        _config.backed_size_oblivious = prior


@contextlib.contextmanager
def _quiet_fake_tensor_logs():
    """FakeTensorMode logs every failing meta kernel at error level; a failure here is an
    answer lazyfx reports itself."""
    logger = logging.getLogger("torch._subclasses.fake_tensor")
    disabled = logger.disabled  # (setLevel would clear every logger's cache, each time)
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = disabled


# str() of a symbol, kept: sympy's printer is slow, and every call sorts its symbols by name
_printed = functools.lru_cache(maxsize=4096)(str)
_UNKNOWN = object()
# The values an argument of a reused call may hold, compared by type and value (1, 1.0 and
# True are equal as Python values but not as arguments).
_PLAIN = (bool, int, str, type(None), type(Ellipsis), torch.dtype, torch.device, torch.layout, torch.memory_format)


def _reuse_key(same_as: Any, value: Any) -> Optional[tuple]:
    """A hashable key for a call of ``same_as`` on ``value`` (its arguments), with the global
    settings an operation may read; None where an argument is not a plain value."""
    try:
        key = (same_as, _argument_key(value), torch.get_default_dtype(), torch.is_grad_enabled(),
               torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"),
               torch._C._len_torch_function_stack(), torch._C._len_torch_dispatch_stack())
        hash(key)
    except (_NotPlain, TypeError):  # TypeError: an unhashable key or dict key
        return None
    return key


class _NotPlain(Exception):
    pass


def _argument_key(value: Any) -> Any:
    if isinstance(value, TensorMeta):
        return (TensorMeta, value.shape, value.dtype)
    if isinstance(value, (tuple, list)):
        return (type(value), tuple(_argument_key(v) for v in value))
    if isinstance(value, dict):
        return (dict, tuple((k, _argument_key(v)) for k, v in value.items()))
    if isinstance(value, slice):
        return (slice, _argument_key(value.start), _argument_key(value.stop), _argument_key(value.step))
    if isinstance(value, float):
        return (float, repr(value))
    if isinstance(value, (*_PLAIN, sympy.Basic)):
        return (type(value), value)
    raise _NotPlain


def _layer_key(module: torch.nn.Module) -> Optional[tuple]:
    """What the forward of a layer of PyTorch's own reads besides its tensors: its class, its
    mode and its settings (``stride``, ``eps``); None for another module, one with sublayers,
    or one with a setting that is not a plain value."""
    cls = type(module)
    if not cls.__module__.startswith("torch.nn.") or module._modules:
        return None
    settings = {k: v for k, v in vars(module).items() if k not in MODULE_STATE}
    try:
        return cls, module.training, _argument_key(settings)
    except _NotPlain:
        return None


@dataclass(frozen=True)
class _FakeShape:
    """A fake tensor's shape and dtype, as they were when the call returned it."""

    shape: torch.Size
    dtype: torch.dtype


def _frozen(out: Any) -> Any:
    """A call's output as it is now (a fake tensor it returns may be changed by a later call),
    or _UNKNOWN where it holds anything but tensors, sizes and plain values."""
    if isinstance(out, torch.Tensor):
        return _FakeShape(out.shape, out.dtype)
    if isinstance(out, (tuple, list)) and type(out) in (tuple, list, torch.Size):
        items = [_frozen(v) for v in out]
        return _UNKNOWN if any(v is _UNKNOWN for v in items) else type(out)(items)
    if isinstance(out, (torch.SymInt, torch.SymBool, *_PLAIN, float)):
        return out
    return _UNKNOWN


def _signature(fake: torch.Tensor) -> tuple:
    """What a call may change in a fake tensor it was given (as formulas: comparing SymInts would
    add guards)."""
    def expr(size: Any) -> Any:
        return size.node.expr if isinstance(size, torch.SymInt) else size

    return (tuple(expr(d) for d in fake.shape), tuple(expr(d) for d in fake.stride()), expr(fake.storage_offset()),
            fake.dtype, fake.requires_grad, fake._version, fake.grad_fn is None, fake.grad is None, len(fake.__dict__))


def _tensors(module: torch.nn.Module):
    yield from module.named_parameters()
    yield from module.named_buffers()


def _pinned(condition: Any) -> Optional[sympy.Eq]:
    """A guard ``size == constant`` that pins a size to its hint value (a specialization),
    as ``symbol == value`` when it solves for a single symbol (``T + 4 == 77`` -> ``T == 73``)."""
    if not isinstance(condition, sympy.Eq):
        return None
    for side, other in ((condition.lhs, condition.rhs), (condition.rhs, condition.lhs)):
        if side.free_symbols and other.is_Integer:
            if len(side.free_symbols) == 1:
                (sym,) = side.free_symbols
                try:
                    solutions = sympy.solve(sympy.Eq(side, other), sym)
                except NotImplementedError:  # sympy cannot solve floor/Mod (24*(H//2) == 912): left as it is
                    solutions = []
                if len(solutions) == 1 and solutions[0].is_Integer:
                    return sympy.Eq(sym, solutions[0])
            return sympy.Eq(side, other)
    return None


def _fold(fn, parts):
    result = parts[0]
    for part in parts[1:]:
        result = fn(result, part)
    return result


def _has_no_meta_kernel(exc: BaseException) -> bool:
    from torch._subclasses.fake_tensor import UnsupportedOperatorException

    text = str(exc)
    return (
        isinstance(exc, (NotImplementedError, UnsupportedOperatorException))
        or "fake impl" in text
        or "meta kernel" in text.lower()
        or "Could not run" in text
    )


def _is_data_dependent(exc: BaseException) -> bool:
    name = type(exc).__name__
    return "DataDependent" in name or "data-dependent" in str(exc) or "unbacked" in str(exc)


def _leaves(value: Any):
    if isinstance(value, (tuple, list)):
        for v in value:
            yield from _leaves(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, TensorMeta):
        yield from value.shape
    else:
        yield value


def _substitute(value: Any, values: dict) -> Any:
    """``value`` with the symbols replaced by concrete sizes."""
    def leaf(v: Any) -> Any:
        if isinstance(v, TensorMeta):
            return v.with_shape(tuple(substitute(d, values) for d in v.shape))
        if isinstance(v, sympy.Basic) and not (v.is_Boolean or v.is_Relational):
            return substitute(v, values)
        if isinstance(v, slice):
            return slice(*(leaf(x) for x in (v.start, v.stop, v.step)))
        return v

    return map_values(leaf, value)


def _free(value: Any) -> set:
    return value.free_symbols if isinstance(value, sympy.Basic) else set()


def _describe(exc: BaseException) -> str:
    return first_line(exc) or type(exc).__name__
