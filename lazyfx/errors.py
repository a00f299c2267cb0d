"""One exception hierarchy: every error lazyfx raises is a :class:`LazyFXError`.

Each carries structured :class:`~lazyfx.core.diagnostics.Diagnostic` objects (code,
message, module path, the user's ``file:line``); ``str(error)`` is what a user
reads. Raising one never leaves the user's model half-changed.
"""

from __future__ import annotations

from typing import Optional, Sequence

from lazyfx.core import diagnostics as d


class LazyFXError(Exception):
    """Base class of every error lazyfx raises.

    Each error carries one or more diagnostics: a code (see the diagnostic
    codes), a message, the module path and the line of your code at fault.
    ``str(error)`` is what you read: one diagnostic per line, as
    ``path:line: LFX030 message (in module 'fc' at Linear)``, with notes on
    how to fix it below. Raising one never leaves your model half-changed.

    Catch `LazyFXError` for any lazyfx failure, or a subclass for one kind.
    [`SpecError`][lazyfx.SpecError] and [`ShapeError`][lazyfx.ShapeError] are
    ``ValueError``s too.

    Args:
        message: The message of the single diagnostic to create.
        code (ErrorCode | None): Its code; the class's default when None
            (LFX021 for `LazyFXError` itself).
        notes: Hints on how to fix it, shown below the message.
        diagnostics (Sequence[Diagnostic] | None): Ready-made diagnostics,
            instead of ``message``.
        final: Whether the error is the analysis's verdict (see ``final``
            below).
        **context (Any): Fields of the diagnostic to create: ``module_path``,
            ``op``, ``node``, ``location``, ``severity``.

    Attributes:
        diagnostics (list[Diagnostic]): What went wrong, as
            [`Diagnostic`][lazyfx.core.diagnostics.Diagnostic]s.
        final (bool): True when no other way of analysing the code can do
            better (abstract execution, or an enclosing module analysed
            whole): the analysis stops with this error instead of retrying.

    Examples:
        >>> try:
        ...     lazyfx.materialize(Net(), ("B", 3, "H", "W"))
        ... except lazyfx.LazyFXError as error:
        ...     caught = error
        >>> type(caught).__name__, caught.code
        ('ResolutionError', 'LFX040')
        >>> caught.diagnostics[0].module_path, caught.diagnostics[0].location.line
        ('head', 25)
        >>> print(caught)
        lazyfx/demo.py:25: LFX040 lazy module 'head' (LazyLinear) needs in_features = 64*((H - 9)//4 + 1)*((W - 9)//4 + 1), which depends on H, W (in module 'head')
            note: pin H, W to concrete sizes in the input spec, or make the size independent of them (e.g. an adaptive pooling layer before a flatten)
    """

    default_code: d.ErrorCode = d.RULE_FAILED
    final: bool = False

    def __init__(
        self,
        message: Optional[str] = None,
        *,
        code: Optional[d.ErrorCode] = None,
        notes: Sequence[str] = (),
        diagnostics: Optional[Sequence[d.Diagnostic]] = None,
        final: bool = False,
        **context,
    ) -> None:
        if diagnostics is None:
            if message is None:
                raise TypeError("a LazyFXError needs a message or diagnostics")
            diagnostics = [
                d.Diagnostic(code or self.default_code, message, notes=tuple(notes), **context)
            ]
        self.diagnostics: list[d.Diagnostic] = list(diagnostics)
        self.final = final
        super().__init__(self._render())

    def _render(self) -> str:
        return "\n".join(str(diag) for diag in self.diagnostics)

    @property
    def code(self) -> str:
        """The code of the first diagnostic, such as ``"LFX030"``.

        Examples:
            >>> try:
            ...     lazyfx.infer(Net(), "B,3,32")
            ... except lazyfx.LazyFXError as error:
            ...     print(error.code)
            LFX030
        """
        return self.diagnostics[0].code.code

    @property
    def message(self) -> str:
        """The message of the first diagnostic, without location, code or notes.

        Examples:
            >>> try:
            ...     lazyfx.infer(Net(), "B,3,-1")
            ... except lazyfx.LazyFXError as error:
            ...     print(error.message)
            malformed input spec 'B,3,-1': '-1' at position 2; expected an integer or a symbol name such as B or H (dims are non-negative)
        """
        return self.diagnostics[0].message

    def with_context(self, **context) -> "LazyFXError":
        """The same error with empty context fields (location, module path...) filled in."""
        new = type(self).__new__(type(self))
        LazyFXError.__init__(new, diagnostics=[diag.with_context(**context) for diag in self.diagnostics],
                             final=self.final)
        new.__cause__ = self.__cause__
        new.__dict__.update({k: v for k, v in self.__dict__.items() if k != "diagnostics"})
        return new


class SpecError(LazyFXError, ValueError):
    """An input spec is malformed or does not fit the model's forward.

    Also a ``ValueError``. Codes: LFX001 (spec-syntax: a spec string, a dtype
    name or a constraint cannot be parsed), LFX002 (spec-invalid: a bad dim
    or `Dim`, conflicting constraints, a missing or unexpected input, an
    invalid ``device``, ``dtype`` or option) and LFX053 (ranks-disagree: the
    ranks of ``materialize(mesh=...)`` were called differently).

    Examples:
        >>> lazyfx.infer(Net())
        Traceback (most recent call last):
            ...
        lazyfx.errors.SpecError: LFX002 the inputs do not fit Net.forward(x): missing a required argument: 'x'
        >>> lazyfx.infer(Net(), "B,3,H,W:int12")
        Traceback (most recent call last):
            ...
        lazyfx.errors.SpecError: LFX001 unknown dtype 'int12' (known: ...)
    """

    default_code = d.SPEC_INVALID


class TraceError(LazyFXError):
    """torch.fx could not follow the model's forward (LFX010).

    Code that torch.fx cannot trace is usually analysed by abstract execution
    instead (the report lists it under ``not traced into a graph``). This error
    remains for Python operations on traced values that fail whatever the
    sizes (``len()`` of a 0-d tensor), for a model nested deeper than the
    analysis's recursion limit, and for tracing failures abstract execution
    does not take over. (A tensor's value used as a number,
    ``int(x.max())``, is a [`DataDependentError`][lazyfx.DataDependentError].)

    Examples:
        >>> class Count(nn.Module):
        ...     def forward(self, x):
        ...         return x.new_zeros(len(x.sum()))
        >>> lazyfx.infer(Count(), ("B",))
        Traceback (most recent call last):
            ...
        lazyfx.errors.TraceError: ...LFX010 len() of a 0-d tensor...
    """

    default_code = d.TRACE_FAILED


class UndecidedConditionError(TraceError):
    """Control flow in forward depends on a symbolic size the input spec leaves open (LFX011).

    Pin the size, or constrain it with a [`Dim`][lazyfx.Dim] so that the
    condition always holds or never does. A `TraceError`.

    Examples:
        >>> class Crop(nn.Module):
        ...     def forward(self, x):
        ...         return x[:, :4] if x.shape[1] > 4 else x
        >>> lazyfx.infer(Crop(), ("B", "C"))
        Traceback (most recent call last):
            ...
        lazyfx.errors.UndecidedConditionError: ...LFX011 forward needs a branch from `C > 4`, which depends on C, and the input spec does not decide it (...)
            note: pin C to concrete sizes, or constrain it with lazyfx.Dim(..., min=, max=, multiple_of=) so that the condition always holds or never does
        >>> lazyfx.infer(Crop(), ("B", lazyfx.Dim("C", min=5))).output
        TensorMeta(shape=(B, 4), dtype=torch.float32)
    """

    default_code = d.UNDECIDED_CONDITION


class UnsupportedOpError(LazyFXError):
    """An operation in the model has no shape rule lazyfx can use.

    LFX020 (unsupported-op): no rule, and PyTorch's meta kernel cannot
    evaluate it either (a custom op without ``register_fake``), or fails only
    at the representative sizes it was evaluated at; the note says which
    symbols to pin. LFX021 (rule-failed): a rule could not handle its
    arguments.

    Examples:
        >>> @torch.library.custom_op("lazyfx_doc::double", mutates_args=())
        ... def double(x: torch.Tensor) -> torch.Tensor:
        ...     return x * 2
        >>> class Doubler(nn.Module):
        ...     def forward(self, x):
        ...         return double(x)
        >>> lazyfx.infer(Doubler(), ("B", 4))
        Traceback (most recent call last):
            ...
        lazyfx.errors.UnsupportedOpError: ...LFX020 no shape rule for torch.ops.lazyfx_doc.double.default, and PyTorch has no meta kernel for it either: ...
    """

    default_code = d.UNSUPPORTED_OP


class DataDependentError(UnsupportedOpError):
    """An operation's output shape depends on tensor values, not only on shapes (LFX022).

    ``nonzero``, boolean-mask indexing, ``unique``, ``.item()`` and
    ``.tolist()`` give sizes no shape analysis can know. An
    `UnsupportedOpError`. LFX024 (init-reads-values): a lazy module's own
    initialization reads its input's values (fits a scale to the first batch),
    so a dry run's parameters depend on the data.

    Args:
        message: As for `LazyFXError`.
        counted: Whether the size is how many elements a mask selects
            (``x[mask]``, ``nonzero``), which abstract execution can count
            where nothing depends on it.
        **kwargs (Any): As for `LazyFXError`.

    Attributes:
        counted (bool): The ``counted`` given.

    Examples:
        >>> class Positive(nn.Module):
        ...     def forward(self, x):
        ...         return x[x > 0]
        >>> lazyfx.infer(Positive(), ("B", 4))
        Traceback (most recent call last):
            ...
        lazyfx.errors.DataDependentError: ...LFX022 indexing with a boolean mask (x[mask]): the result has as many elements as the mask has True values, which depends on the mask's values, not its shape (in module '<root>' at operator.getitem)
    """

    default_code = d.DATA_DEPENDENT
    counted: bool = False

    def __init__(self, message: Optional[str] = None, *, counted: bool = False, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.counted = counted


class ShapeError(LazyFXError, ValueError):
    """An operation rejects the shapes it receives, as PyTorch would.

    Raised when a check fails for every input the specs allow, alone or
    together with the model's other conditions (the message then says which).
    Also a ``ValueError``. LFX030 (shape-mismatch) for an operation, an
    ``assert`` in forward, or a checkpoint that does not fit; LFX070
    (unexpected-output) when the output is not the one
    ``infer(expect_output=...)`` asks for. A check that fails for some inputs
    only is a condition in the report's domain instead.

    Examples:
        >>> model = nn.Sequential(nn.LazyConv2d(8, 3), nn.Flatten(), nn.Linear(128, 10))
        >>> lazyfx.infer(model, ("B", 3, 32, 32))
        Traceback (most recent call last):
            ...
        lazyfx.errors.ShapeError: ...LFX030 Linear has in_features=128 but the input's last dim is 7200 (input of size [B, 7200]) (in module '2' at Linear)

        With symbolic sizes the same check is a condition on them:

        >>> print(lazyfx.infer(model, ("B", 3, "H", "W")).domain)
        H >= 3 and W >= 3 and (H, W) in {(3, 18), (4, 10), (6, 6), (10, 4), (18, 3)}

        Unless no sizes satisfy it:

        >>> model = nn.Sequential(nn.LazyConv2d(8, 3), nn.Flatten(), nn.Linear(100, 10))
        >>> lazyfx.infer(model, ("B", 3, "H", "W"))
        Traceback (most recent call last):
            ...
        lazyfx.errors.ShapeError: ...LFX030 Linear has in_features=100 but the input's last dim is 8*(H - 2)*(W - 2) (input of size [B, 8*(H - 2)*(W - 2)]): no input sizes satisfy 8*(H - 2)*(W - 2) == 100 together with H >= 3 and W >= 3 (in module '2')
    """

    default_code = d.SHAPE_MISMATCH


class ResolutionError(LazyFXError):
    """A lazy module cannot be resolved to concrete parameters.

    LFX040 (symbolic-parameter): its size depends on an input symbol (or a
    checkpoint lacks its entry); LFX041 (conflicting-calls): two call sites
    resolve it differently; LFX042 (lazy-not-called): forward never calls it;
    LFX043 (lazy-not-registered): forward calls a lazy module held outside the
    model's submodules (a plain list, a closure), which materialize cannot reach;
    LFX023 (meta-kernel-specialized): its shapes hold for one input size only;
    LFX025 (random-before-init): forward draws random numbers before its first
    call that cannot be replayed, so a dry run's values depend on them;
    LFX044 (foreign-lazy-protocol): it is lazy by another library's protocol
    (pytorch-pfn-extras' layers create their parameters in forward).

    Examples:
        >>> class Shared(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.proj = nn.LazyLinear(4)
        ...
        ...     def forward(self, x, y):
        ...         return self.proj(x) + self.proj(y)
        >>> lazyfx.infer(Shared(), ("B", 8), ("B", 6))
        Traceback (most recent call last):
            ...
        lazyfx.errors.ResolutionError: ...LFX041 lazy module 'proj' is called with inputs that resolve in_features differently: 8 at ... but 6 at ... (in module 'proj')
            note: the first call, at ..., decides in_features; PyTorch would fail at the second
    """

    default_code = d.SYMBOLIC_PARAMETER


class MaterializeError(LazyFXError):
    """Building or exporting the eager model failed; the given model was left unchanged (LFX050).

    Examples:
        >>> import threading
        >>> class Locked(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.fc = nn.LazyLinear(2)
        ...         self.lock = threading.Lock()
        ...
        ...     def forward(self, x):
        ...         return self.fc(x)
        >>> lazyfx.materialize(Locked(), ("B", 4))
        Traceback (most recent call last):
            ...
        lazyfx.errors.MaterializeError: LFX050 could not copy Locked (materialize copies the model unless inplace=True): TypeError: cannot pickle '_thread.lock' object
        >>> lazyfx.materialize(Locked(), ("B", 4), inplace=True).fc
        Linear(in_features=4, out_features=2, bias=True)
    """

    default_code = d.MATERIALIZE_FAILED
