"""Why tracing a module failed: code torch.fx cannot follow, or a verdict about shapes.

The tracer, and the hooks it runs, ask :func:`untraceable` whether an exception raised
while tracing means the module should be analysed by abstract execution instead (control
flow on values, Python proxies cannot follow) or is the answer (a shape error, the user's
own assert on sizes).
"""

from __future__ import annotations

from lazyfx.core.diagnostics import first_line, location_from_traceback, source_line
from lazyfx.errors import DataDependentError, LazyFXError


def untraceable(exc: BaseException) -> bool:
    """Whether tracing failed because the code cannot be traced (rather than a shape error)."""
    if isinstance(exc, RecursionError):  # too deep for the analysis: abstract execution would be too
        return False
    if isinstance(exc, LazyFXError):
        return isinstance(exc, DataDependentError) and not exc.final
    # Anything else Python or torch.fx raised on proxies (a module held in a plain list or a closure
    # is a NameError to fx): abstract execution runs the real code, and re-raises a real error.
    # The user's own assert, decided from shapes, is a verdict instead.
    return isinstance(exc, Exception) and not isinstance(exc, AssertionError)


def untraceable_reason(exc: BaseException) -> str:
    if isinstance(exc, LazyFXError):
        location = exc.diagnostics[0].location  # where a mask's count stopped the trace (loop.py:650)
        return exc.message if location is None or str(location) in exc.message else f"{exc.message} ({location})"
    if isinstance(exc, AssertionError):
        location = location_from_traceback(exc)
        return ("an assert that does not test sizes fails on traced values"
                + (f" ({location}: {source_line(location)})" if location else ""))
    text = first_line(exc)
    location = location_from_traceback(exc)
    return f"{type(exc).__name__}: {text}" + (f" ({location})" if location else "")
