"""Input specs: what the user says the model's inputs look like.

An input is any of

* a tuple/list of dims, each an ``int``, a ``str`` symbol name, a
  ``sympy.Symbol`` or a :class:`Dim` -- ``("B", 3, 224, 224)``;
* a string shorthand ``"B,3,H,W"``, optionally with a dtype suffix
  ``"B,T:int64"``;
* a ``torch.Tensor`` on any device (``meta`` included): its shape and dtype
  are taken as concrete;
* a :class:`TensorSpec`;
* nested tuples/lists/dicts of these, ``None`` and Python constants, for
  forwards that take containers or optional arguments.

A tuple is a shape when every entry is a dim (an int, a Dim, a Symbol or an
identifier string); otherwise it is a container of inputs. A tuple of dims
with a float, a bool or None among them (``("B", 3.0, 8)``, ``(None, 3)``)
is a mistyped shape: a SpecError. The same symbol name in two inputs is the
same symbol.
"""

from __future__ import annotations

import difflib
import enum
import keyword
import math
import re
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

import sympy
import torch

from lazyfx.core import diagnostics
from lazyfx.core.constraints import Constraints, SymbolInfo
from lazyfx.core.symbolic import DimExpr, symbol
from lazyfx.core.values import TensorMeta, analysed_dtype
from lazyfx.errors import SpecError

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class Dim:
    """A named input dimension (a symbol), with optional constraints.

    A `Dim` goes in a shape wherever a symbol name can: a plain ``"H"`` is
    ``Dim("H")``, any positive integer. The constraints decide comparisons in
    forward (``if x.shape[1] > 4:``) and are part of the input domain. The same
    name in several places is one symbol: constraints given in one place hold
    in all of them.

    Args:
        name: The symbol's name, a Python identifier (``"H"``, ``"seq_len"``).
        min: The smallest size allowed (default 1).
        max: The largest size allowed (default: no limit).
        multiple_of: Sizes must be a multiple of this.

    Raises:
        SpecError: ``name`` is not an identifier, a bound is not a positive
            int, or no size satisfies the constraints (LFX002). Analysing
            specs that give one name two different sets of constraints raises
            it too.

    Examples:
        >>> lazyfx.Dim("H", min=32, max=1024, multiple_of=32)
        Dim('H', min=32, max=1024, multiple_of=32)
        >>> H = lazyfx.Dim("H", min=64, multiple_of=32)
        >>> print(lazyfx.infer(Net(), ("B", 3, H, H)).domain)
        H >= 64 and H % 32 == 0

        Constraints decide control flow on sizes:

        >>> class Crop(nn.Module):
        ...     def forward(self, x):
        ...         return x[:, :4] if x.shape[1] > 4 else x
        >>> lazyfx.infer(Crop(), ("B", lazyfx.Dim("C", min=5))).output
        TensorMeta(shape=(B, 4), dtype=torch.float32)

        A bound that admits no size is an error:

        >>> lazyfx.Dim("H", min=40, max=50, multiple_of=32)
        Traceback (most recent call last):
            ...
        lazyfx.errors.SpecError: LFX002 Dim('H', min=40, max=50, multiple_of=32) admits no value: nothing between min=40 and max=50 is a multiple of 32
    """

    name: str
    min: Optional[int] = None
    max: Optional[int] = None
    multiple_of: Optional[int] = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _is_symbol_name(self.name):
            raise SpecError(
                f"Dim name {self.name!r} is not a valid symbol name (a Python identifier)",
                code=diagnostics.SPEC_INVALID,
            )
        for attr in ("min", "max", "multiple_of"):
            value = getattr(self, attr)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise SpecError(
                    f"Dim({self.name!r}): {attr} must be a positive int, got {value!r}",
                    code=diagnostics.SPEC_INVALID,
                )
        info = self.info()
        if info.max is not None and info.smallest() > info.max:
            raise SpecError(
                f"{self!r} admits no value: nothing between min={info.min} and max={info.max}"
                + (f" is a multiple of {info.multiple_of}" if info.multiple_of > 1 else ""),
                code=diagnostics.SPEC_INVALID,
            )

    @property
    def symbol(self) -> sympy.Symbol:
        """The sympy symbol that stands for this dimension in shapes and formulas.

        It is an integer, positive ``sympy.Symbol``, so it compares equal to the
        dims in a report (a plain ``sympy.Symbol("H")`` does not).

        Examples:
            >>> report = lazyfx.infer(Net(), ("B", 3, 32, 32))
            >>> report.output.shape[0] == lazyfx.Dim("B").symbol
            True
        """
        return symbol(self.name)

    def info(self) -> SymbolInfo:
        declared = (self.min, self.max, self.multiple_of) != (None, None, None)
        return SymbolInfo(self.name, self.min or 1, self.max, self.multiple_of or 1, declared)

    def __repr__(self) -> str:
        opts = "".join(
            f", {k}={getattr(self, k)}" for k in ("min", "max", "multiple_of") if getattr(self, k) is not None
        )
        return f"Dim({self.name!r}{opts})"


DimLike = Union[int, str, sympy.Symbol, Dim]


@dataclass(frozen=True)
class TensorSpec:
    """A tensor input described by its shape and dtype, without data.

    Shape tuples and strings are turned into a `TensorSpec` anyway; write one
    to give the dtype as an argument, or to build specs in code.

    Args:
        shape: The dims: a tuple or list of ints (sizes), symbol names,
            ``sympy.Symbol``s and [`Dim`][lazyfx.Dim]s; a ``torch.Size``; or a
            string shorthand such as ``"B,3,H,W"`` (spaces and enclosing
            parentheses allowed, ``"(B,)"`` for one dim), optionally with a
            dtype suffix: ``"B,T:int64"``.
        dtype: A ``torch.dtype`` or its name (``"int64"``, ``"bfloat16"``,
            ``"bool"``, ...). The default is float32, or under
            ``materialize(dtype=...)`` that dtype (a dry run after
            ``model.to(dtype)`` feeds the model its own dtype); token ids
            for an ``nn.Embedding`` need an integer dtype.

    Raises:
        SpecError: The string is malformed or the dtype name unknown (LFX001);
            an entry is not a dim, or the string's dtype suffix and ``dtype``
            give different dtypes (LFX002).

    Examples:
        >>> lazyfx.TensorSpec(("B", "T"), dtype=torch.int64)
        TensorSpec(shape=('B', 'T'), dtype=torch.int64)
        >>> lazyfx.TensorSpec("B,T", dtype="int64") == lazyfx.TensorSpec("B,T:int64")
        True
        >>> embed = nn.Sequential(nn.Embedding(100, 16), nn.LazyLinear(4))
        >>> print(lazyfx.infer(embed, lazyfx.TensorSpec("B,T", dtype=torch.int64)).output)
        (B, T, 4)
    """

    shape: Any
    dtype: Any = None  # float32 (or materialize's dtype=), unless the shorthand's suffix says otherwise
    _dims: tuple = field(init=False, repr=False, compare=False)
    # whether the spec names its dtype; one that does not follows materialize(dtype=)
    _dtype_given: bool = field(init=False, repr=False, compare=False, default=False)

    def __post_init__(self) -> None:
        given = self.dtype is not None
        if isinstance(self.shape, str):
            parsed = parse_shorthand(self.shape)
            if ":" in self.shape and self.dtype is not None and parse_dtype(self.dtype) != parsed.dtype:
                raise SpecError(f"TensorSpec({self.shape!r}, dtype={self.dtype!r}): the string's dtype suffix and "
                                f"dtype= disagree; give the dtype once")
            object.__setattr__(self, "shape", parsed.shape)
            if self.dtype is None:
                object.__setattr__(self, "dtype", parsed.dtype)
                given = parsed._dtype_given
        if self.dtype is None:
            object.__setattr__(self, "dtype", torch.float32)
        object.__setattr__(self, "_dtype_given", given)
        if isinstance(self.shape, torch.Size):
            object.__setattr__(self, "shape", tuple(self.shape))
        if not isinstance(self.shape, (tuple, list)) or not all(_is_dim_like(d) for d in self.shape):
            raise SpecError(
                f"TensorSpec shape must be a tuple of dims (int, symbol name, sympy.Symbol or Dim) "
                f"or a string such as 'B,3,H,W'; got {self.shape!r}"
            )
        object.__setattr__(self, "shape", tuple(self.shape))
        object.__setattr__(self, "dtype", parse_dtype(self.dtype))


@dataclass(frozen=True, repr=False)
class Const:
    """A constant input: given to forward as it is, never read as a spec.

    A string is a shape spec (``"policy"`` is a 1-D tensor of size ``policy``),
    and a tuple of ints is a shape; wrap a value in ``Const`` to pass it to
    forward unchanged. forward follows the branch the value selects
    (``if role == "policy":``), as in a dry run with that argument. A
    parameter annotated ``str``, ``int``, ``float``, ``bool``, an ``Enum``, a
    ``Literal`` or a tuple or list of these takes what it is given as a
    constant without ``Const``, but a string that is also a valid spec is
    then ambiguous (a SpecError, LFX002) unless the ``Literal`` or the
    ``str`` ``Enum`` lists it. An object that is no spec at all (an ``Enum``
    member, a configuration object) is passed as it is anyway.

    Args:
        value: The value forward gets.

    Examples:
        >>> class Shared(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.policy = nn.LazyLinear(3)
        ...         self.value = nn.LazyLinear(1)
        ...
        ...     def forward(self, x, role):
        ...         return self.policy(x) if role == "policy" else self.value(x)
        >>> lazyfx.infer(Shared(), "B,5", role=lazyfx.Const("policy")).output
        TensorMeta(shape=(B, 3), dtype=torch.float32)
        >>> lazyfx.Const("policy")
        Const('policy')
    """

    value: Any

    def __repr__(self) -> str:
        return f"Const({self.value!r})"


class Call:
    """The inputs of one call of forward: for a model that different calls take through
    different lazy modules (a shared policy/value network called with ``policy=True``
    and with ``policy=False``), several calls together resolve every lazy module.

    Given to [`materialize`][lazyfx.materialize] in place of the input specs,
    ``Call``s are analysed in order, as a dry run that makes those calls one after
    the other: each lazy module is resolved by the first call that reaches it
    and initialized in that order, so the values are bit-identical to that dry
    run. A later call that reaches it must need the same sizes (LFX041), and a
    lazy module no call reaches is LFX042. ``infer`` takes one ``Call``: its
    report describes that call.

    A ``Call`` also passes a forward parameter named like one of lazyfx's own
    keywords (``device``, ``seed``).

    Args:
        *inputs: Input specs, one per positional parameter of forward, in any
            form [`infer`][lazyfx.infer] takes.
        **kw_inputs: Input specs by forward's parameter names.

    Examples:
        >>> class Shared(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.policy = nn.LazyLinear(3)
        ...         self.value = nn.LazyLinear(1)
        ...
        ...     def forward(self, x, policy: bool):
        ...         return self.policy(x) if policy else self.value(x)
        >>> eager = lazyfx.materialize(Shared(), lazyfx.Call("B,5", policy=True), lazyfx.Call("B,5", policy=False))
        >>> eager.policy, eager.value
        (Linear(in_features=5, out_features=3, bias=True), Linear(in_features=5, out_features=1, bias=True))
        >>> lazyfx.Call("B,5", policy=True)
        Call('B,5', policy=True)
    """

    def __init__(self, *inputs: Any, **kw_inputs: Any) -> None:
        self.inputs = inputs
        self.kw_inputs = kw_inputs

    def __repr__(self) -> str:
        parts = [repr(spec) for spec in self.inputs] + [f"{name}={spec!r}" for name, spec in self.kw_inputs.items()]
        return f"Call({', '.join(parts)})"


def calls_in(inputs: tuple, kw_inputs: dict) -> Optional[list[Call]]:
    """The ``Call``s given in place of input specs, or None when the inputs are specs."""
    if not any(isinstance(spec, Call) for spec in (*inputs, *kw_inputs.values())):
        return None
    if kw_inputs or not all(isinstance(spec, Call) for spec in inputs):
        raise SpecError("give either input specs or lazyfx.Call(...)s, one per call of forward, not both: "
                        "put every spec of a call inside its Call")
    return list(inputs)


def _is_symbol_name(name: str) -> bool:
    return bool(_IDENT.match(name)) and not keyword.iskeyword(name)


def _is_dim_like(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, Dim, sympy.Symbol)):
        return True
    return isinstance(value, str) and _is_symbol_name(value)


_DTYPES = {
    name: getattr(torch, name)
    for name in (
        "float32 float float64 double float16 half bfloat16 int8 uint8 int16 short int32 int "
        "int64 long bool complex64 complex128 float8_e4m3fn float8_e5m2"
    ).split()
    if isinstance(getattr(torch, name, None), torch.dtype)
}


def parse_dtype(value: Any) -> torch.dtype:
    """A dtype given as a ``torch.dtype`` or by its name (``"int64"``, ``"torch.float16"``), as the
    input specs and the CLI's ``--dtype`` take it; an unknown name is a :class:`~lazyfx.SpecError`
    that lists the known ones.

    >>> parse_dtype("torch.float16"), parse_dtype(" int64 ")
    (torch.float16, torch.int64)
    >>> parse_dtype("float33")
    Traceback (most recent call last):
    ...
    lazyfx.errors.SpecError: LFX001 unknown dtype 'float33' (known: ...)
    """
    if isinstance(value, torch.dtype):
        return value
    if isinstance(value, str):
        name = value.strip().removeprefix("torch.")
        if name in _DTYPES:
            return _DTYPES[name]
        known = ", ".join(sorted(_DTYPES))
        raise SpecError(f"unknown dtype {value!r} (known: {known})", code=diagnostics.SPEC_SYNTAX)
    raise SpecError(f"dtype must be a torch.dtype or its name, got {value!r}")


def parse_shorthand(text: str) -> TensorSpec:
    """Parse ``"B,3,H,W"`` or ``"B,T:int64"`` (parentheses and spaces allowed)."""
    if not isinstance(text, str):
        raise SpecError(f"expected a spec string, got {text!r}")
    body, sep, dtype_text = text.partition(":")
    if sep and not dtype_text.strip():
        raise SpecError(f"malformed input spec {text!r}: nothing after ':' (expected a dtype such as int64)",
                        code=diagnostics.SPEC_SYNTAX)
    body = body.strip()
    if body[:1] in "([" and body[-1:] in ")]":
        body = body[1:-1].strip()
    dims: list[DimLike] = []
    if body:
        entries = body.split(",")
        if entries[-1].strip() == "" and len(entries) > 1:
            entries = entries[:-1]  # a trailing comma, as in "(B,)"
        for position, entry in enumerate(entries):
            token = entry.strip()
            if re.fullmatch(r"\d+", token):
                dims.append(parse_size(token, f"input spec {text if len(text) <= 40 else text[:40] + '...'!r}"))
            elif _is_symbol_name(token):
                dims.append(token)
            else:
                what = "an empty entry" if not token else f"{token!r}"
                hint = " (dims are non-negative)" if token.startswith("-") else ""
                raise SpecError(
                    f"malformed input spec {text!r}: {what} at position {position}; "
                    f"expected an integer or a symbol name such as B or H{hint}",
                    code=diagnostics.SPEC_SYNTAX,
                )
    return TensorSpec(tuple(dims), dtype=parse_dtype(dtype_text) if sep else None)


class SymbolTable:
    """The symbols of one analysis, collected from every input spec."""

    def __init__(self) -> None:
        self.dims: dict[str, Dim] = {}

    def dim(self, entry: DimLike) -> DimExpr:
        if isinstance(entry, bool):
            raise SpecError(f"a dim cannot be a bool: {entry!r}")
        if isinstance(entry, int):
            if entry < 0:
                raise SpecError(f"dims are non-negative integers, got {entry}")
            if entry > MAX_SIZE:
                raise SpecError(f"a dim of {entry} is too large (sizes are at most 2**63 - 1)")
            return entry
        if isinstance(entry, sympy.Symbol):
            entry = entry.name
        if isinstance(entry, str):
            entry = Dim(entry)
        known = self.dims.get(entry.name)
        if known is None or known == Dim(entry.name):
            self.dims[entry.name] = entry
        elif entry != Dim(entry.name) and entry != known:
            raise SpecError(f"symbol {entry.name!r} is given two different constraints: {known!r} and {entry!r}")
        return entry.symbol

    def constraints(self) -> Constraints:
        return Constraints({name: d.info() for name, d in self.dims.items()})


def to_value(spec: Any, table: SymbolTable) -> Any:
    """Turn one user input spec into the abstract value propagation starts from."""
    if isinstance(spec, Const):
        return spec.value
    if isinstance(spec, enum.Enum):  # before str: a str Enum's member is a constant, not a spec
        return spec
    if isinstance(spec, TensorSpec):  # a spec without a dtype is in the model's (materialize's dtype=)
        return TensorMeta(tuple(table.dim(d) for d in spec.shape),
                          spec.dtype if spec._dtype_given else analysed_dtype(spec.dtype))
    if isinstance(spec, torch.Tensor):
        return TensorMeta(tuple(int(s) for s in spec.shape), spec.dtype)
    if isinstance(spec, str):
        return to_value(parse_shorthand(spec), table)
    if isinstance(spec, torch.Size):
        return to_value(TensorSpec(spec), table)
    if isinstance(spec, (tuple, list)):
        if _is_shape(spec):
            return to_value(TensorSpec(tuple(spec)), table)
        if not _is_named_tuple(spec):
            _refuse_mistyped_shape(spec)
        converted = [to_value(s, table) for s in spec]
        if _is_named_tuple(spec):
            return type(spec)(*converted)
        return tuple(converted) if isinstance(spec, tuple) else converted
    if isinstance(spec, dict):
        return {k: to_value(v, table) for k, v in spec.items()}
    if isinstance(spec, (bytes, bytearray, set, frozenset)) or callable(spec):  # a mistyped spec, most likely
        raise SpecError(
            f"cannot use {type(spec).__name__} {spec!r} as an input spec; expected a shape tuple such as "
            f"('B', 3, 224, 224), a string such as 'B,3,H,W', a torch.Tensor or a lazyfx.TensorSpec; "
            f"wrap a constant forward takes as it is in lazyfx.Const(...)"
        )
    return spec  # None, a number, a dtype, an Enum member, any other object: a constant, as it is


def _is_named_tuple(spec: Any) -> bool:
    return isinstance(spec, tuple) and hasattr(type(spec), "_fields")


def _is_shape(spec: Union[tuple, list]) -> bool:
    """A tuple or list of dims is a shape; a named tuple is always a container (forward reads
    its fields by name)."""
    return not _is_named_tuple(spec) and all(_is_dim_like(d) for d in spec)


def _refuse_mistyped_shape(spec: Union[tuple, list]) -> None:
    """A SpecError for a tuple that is a shape but for a float, bool or None among its dims
    (``("B", 3.0, 8)``, ``(True, 3)``, ``(None, 3)`` as Keras writes a dynamic dim); a tuple with
    anything else in it (a spec string, a nested tuple, a dtype) stays a container."""
    def scalar(d: Any) -> bool:
        return d is None or isinstance(d, (bool, float))

    if not all(_is_dim_like(d) or scalar(d) for d in spec) or not any(_is_dim_like(d) for d in spec):
        return
    index, bad = next((i, d) for i, d in enumerate(spec) if scalar(d))
    if bad is None:
        what, hint = "None", "; a size that varies is a symbol name such as 'B', not None"
    else:
        what = f"the {type(bad).__name__} {bad!r}"
        hint = f" (write {int(bad)})" if isinstance(bad, float) and bad.is_integer() and bad >= 0 else ""
        hint = "; a dim is an int or a symbol name such as 'B'" + hint
    raise SpecError(f"entry {index} of the shape {spec!r} is {what}{hint}", code=diagnostics.SPEC_INVALID)


_CONSTRAINT = re.compile(
    r"\s*(?P<name>[A-Za-z_]\w*)\s*(?:%\s*(?P<mod>\d+)\s*==\s*0|(?P<op>>=|<=|==|>|<)\s*(?P<rhs>[A-Za-z_]\w*|\d+))\s*\Z"
)


MAX_SIZE = 2**63 - 1  # the largest size a tensor dim can have (int64)


def parse_size(digits: str, what: str) -> int:
    """An integer written in a spec or a constraint; one longer than any tensor size is a SpecError
    (a 5000-digit one would otherwise raise Python's int-string ValueError)."""
    if len(digits.lstrip("0")) > len(str(MAX_SIZE)) or int(digits) > MAX_SIZE:
        shown = digits if len(digits) <= 30 else f"{digits[:12]}...({len(digits)} digits)"
        raise SpecError(f"{what}: {shown} is too large (sizes are at most 2**63 - 1)", code=diagnostics.SPEC_INVALID)
    return int(digits)


def parse_constraints(texts: Sequence[str]) -> tuple[dict[str, Dim], dict[str, str]]:
    """``["H%32==0", "H>=64", "W==H"]`` -> Dims by name, and aliases (``W`` is ``H``).

    Accepted: ``S >= n``, ``S > n``, ``S <= n``, ``S < n``, ``S == n``, ``S % n == 0`` and
    ``S == T`` between two symbols. Aliases tie every name of a chain (``H==C``, ``W==H``: all
    three are ``C``), each alias maps to the chain's last name, and bounds given on any name of it
    hold for all of them; constraints that admit no size are a SpecError."""
    parsed = []
    parent: dict[str, str] = {}

    def root(name: str) -> str:
        while parent.get(name, name) != name:
            name = parent[name]
        return name

    for text in texts:
        match = _CONSTRAINT.match(text) if isinstance(text, str) else None
        if not match:
            raise SpecError(
                f"malformed constraint {text!r}; expected e.g. 'H>=64', 'H<=1024', 'H%32==0', 'H==224' or 'W==H'",
                code=diagnostics.SPEC_SYNTAX,
            )
        name, op, rhs, mod = match["name"], match["op"], match["rhs"], match["mod"]
        parent.setdefault(name, name)
        if rhs is not None and not rhs.isdigit():
            if op != "==":
                raise SpecError(f"constraint {text!r}: only == relates two symbols", code=diagnostics.SPEC_SYNTAX)
            parent.setdefault(rhs, rhs)
            if root(name) != root(rhs):
                parent[root(name)] = root(rhs)
            continue
        value = parse_size(mod if mod is not None else rhs, f"constraint {text!r}")
        if mod is not None and value == 0:
            raise SpecError(f"constraint {text!r}: the modulus must be a positive integer", code=diagnostics.SPEC_INVALID)
        parsed.append((name, text, op, value, mod is not None))
    bounds: dict[str, dict[str, int]] = {}
    texts_of: dict[str, list[str]] = {}
    for name, text, op, value, is_mod in parsed:
        entry = bounds.setdefault(root(name), {"min": 1, "multiple_of": 1})
        texts_of.setdefault(root(name), []).append(text)
        if is_mod:
            entry["multiple_of"] = math.lcm(entry["multiple_of"], value)
            continue
        low = {">=": value, ">": value + 1, "==": value}.get(op)
        high = {"<=": value, "<": value - 1, "==": value}.get(op)
        if low is not None:
            entry["min"] = max(entry["min"], low)
        if high is not None:
            entry["max"] = min(entry.get("max", high), high)
    dims = {}
    for name, entry in bounds.items():
        info = SymbolInfo(name, entry["min"], entry.get("max"), entry["multiple_of"])
        if info.max is not None and (info.max < 1 or info.smallest() > info.max):
            names = sorted({n for n in parent if root(n) == name} - {name})
            tied = f" (tied to {', '.join(names)})" if names else ""
            raise SpecError(f"no size of {name}{tied} satisfies {', '.join(texts_of[name])}",
                            code=diagnostics.SPEC_INVALID)
        given = {k: v for k, v in entry.items() if not (k in ("min", "multiple_of") and v == 1)}
        dims[name] = Dim(name, **(given or {"min": 1}))  # 'H>=1' still declares H's sizes
    aliases = {name: root(name) for name in parent if root(name) != name}
    return dims, aliases


def symbol_names(spec: Any) -> set[str]:
    """The names of the symbols an input spec (or a container of them) uses."""
    if isinstance(spec, (Const, enum.Enum)):
        return set()
    if isinstance(spec, str):
        spec = parse_shorthand(spec)
    if isinstance(spec, TensorSpec):
        spec = spec.shape
    if isinstance(spec, dict):
        return set().union(*(symbol_names(v) for v in spec.values()))
    if isinstance(spec, (tuple, list)):
        if _is_shape(spec):
            return {d if isinstance(d, str) else d.name for d in spec if isinstance(d, (str, Dim, sympy.Symbol))}
        return set().union(*(symbol_names(v) for v in spec))
    return set()


def check_constraint_symbols(texts: Sequence[str], known: set[str]) -> None:
    """A SpecError for the first constraint on a symbol none of the inputs has, with a "did you mean"."""
    for text in texts:
        match = _CONSTRAINT.match(text)
        if not match:
            continue
        for name in (match["name"], match["rhs"]):
            if name is None or name.isdigit() or name in known:
                continue
            close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.5) or [
                k for k in sorted(known) if k.lower() == name.lower()]
            hint = f" (did you mean {close[0]}?)" if close else (
                f" (the inputs' symbols are {', '.join(sorted(known))})" if known else " (the inputs have no symbols)")
            raise SpecError(f"constraint {text!r}: no input has a symbol {name}{hint}", code=diagnostics.SPEC_INVALID)


def constrain(spec: Any, dims: dict[str, Dim], aliases: dict[str, str]) -> Any:
    """A spec with its symbol names replaced by constrained Dims (and aliases resolved). A
    string no constraint changes stays the string (forward's annotations read it, see
    :mod:`lazyfx.inputs.bind`)."""
    if isinstance(spec, (Const, enum.Enum)):
        return spec

    def dim(entry):
        if isinstance(entry, str):
            name = aliases.get(entry, entry)
            return dims.get(name, name)
        return entry

    if isinstance(spec, str):
        parsed = parse_shorthand(spec)
        constrained = constrain(parsed, dims, aliases)
        return spec if constrained == parsed else constrained
    if isinstance(spec, TensorSpec):
        return TensorSpec(tuple(dim(d) for d in spec.shape), spec.dtype)
    if isinstance(spec, dict):
        return {k: constrain(v, dims, aliases) for k, v in spec.items()}
    if _is_named_tuple(spec):
        return type(spec)(*(constrain(v, dims, aliases) for v in spec))
    if isinstance(spec, (tuple, list)) and not _is_shape(spec):
        return type(spec)(constrain(v, dims, aliases) for v in spec)
    if isinstance(spec, (tuple, list)):
        return tuple(dim(d) for d in spec)
    return spec
