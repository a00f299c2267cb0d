"""One exception hierarchy: every error lazyfx raises is a :class:`LazyFXError`.

Each carries structured :class:`~lazyfx.diagnostics.Diagnostic` objects (code,
message, module path, the user's ``file:line``); ``str(error)`` is what a user
reads. Raising one never leaves the user's model half-changed.
"""

from __future__ import annotations

from typing import Optional, Sequence

from lazyfx import diagnostics as d


class LazyFXError(Exception):
    """Base class of all lazyfx errors.

    ``error.diagnostics`` lists what went wrong; ``error.code`` is the code of
    the first diagnostic (``"LFX030"``...).
    """

    default_code: d.ErrorCode = d.RULE_FAILED

    def __init__(
        self,
        message: Optional[str] = None,
        *,
        code: Optional[d.ErrorCode] = None,
        notes: Sequence[str] = (),
        diagnostics: Optional[Sequence[d.Diagnostic]] = None,
        **context,
    ) -> None:
        if diagnostics is None:
            if message is None:
                raise TypeError("a LazyFXError needs a message or diagnostics")
            diagnostics = [
                d.Diagnostic(code or self.default_code, message, notes=tuple(notes), **context)
            ]
        self.diagnostics: list[d.Diagnostic] = list(diagnostics)
        super().__init__(self._render())

    def _render(self) -> str:
        return "\n".join(str(diag) for diag in self.diagnostics)

    @property
    def code(self) -> str:
        return self.diagnostics[0].code.code

    @property
    def message(self) -> str:
        return self.diagnostics[0].message

    def with_context(self, **context) -> "LazyFXError":
        """The same error with empty context fields (location, module path...) filled in."""
        new = type(self).__new__(type(self))
        LazyFXError.__init__(new, diagnostics=[diag.with_context(**context) for diag in self.diagnostics])
        new.__cause__ = self.__cause__
        new.__dict__.update({k: v for k, v in self.__dict__.items() if k != "diagnostics"})
        return new


class SpecError(LazyFXError, ValueError):
    """An input spec is malformed or does not fit the model's forward."""

    default_code = d.SPEC_INVALID


class TraceError(LazyFXError):
    """torch.fx could not trace the model."""

    default_code = d.TRACE_FAILED


class UndecidedConditionError(TraceError):
    """Control flow in forward depends on a symbolic size the input spec leaves open."""

    default_code = d.UNDECIDED_CONDITION


class UnsupportedOpError(LazyFXError):
    """An operation in the model has no shape rule."""

    default_code = d.UNSUPPORTED_OP


class DataDependentError(UnsupportedOpError):
    """An operation's output shape depends on tensor values, not only on shapes."""

    default_code = d.DATA_DEPENDENT


class ShapeError(LazyFXError, ValueError):
    """An operation rejects the shapes it receives (PyTorch would raise too)."""

    default_code = d.SHAPE_MISMATCH


class ResolutionError(LazyFXError):
    """A lazy module cannot be resolved to concrete parameters: its size depends
    on an input symbol, its call sites disagree, or it is never called."""

    default_code = d.SYMBOLIC_PARAMETER


class MaterializeError(LazyFXError):
    """Building the eager model failed; the given model was left unchanged."""

    default_code = d.MATERIALIZE_FAILED
