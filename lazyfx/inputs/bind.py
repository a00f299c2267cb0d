"""The user's inputs bound to forward's parameters, each turned into its abstract value.

A parameter's spec is read as a spec (:func:`lazyfx.inputs.spec.to_value`), except
where the user or forward's annotation says it is a constant:

* ``lazyfx.Const(value)`` is ``value``, as it is;
* a parameter annotated with constant types only (``str``, ``int``,
  ``float``, ``bool``, ``complex``, ``None``, an ``Enum``, a ``Literal``, and
  tuples, lists and dicts of these: ``role: str``, ``mode: Optional[Mode]``,
  ``size: tuple[int, int]``) takes what it is given as it is. A string that
  is also a valid spec is ambiguous there (a SpecError naming both ways to
  pass it), unless the ``Literal`` or the ``str`` ``Enum`` lists it;
* an annotation that takes strings and tensors (``Union[str, Tensor]``)
  takes a string as it is, the same ambiguity excepted;
* an unannotated parameter whose default is a string (``pool="mean"``)
  takes a string as it is;
* a string given to a constant-annotated parameter that does not take
  strings (``n: int``) is still a spec, as before.
"""

from __future__ import annotations

import enum
import inspect
import types
import typing
from typing import Any, Literal, Union

import torch.nn as nn

from lazyfx.core import diagnostics
from lazyfx.errors import LazyFXError, SpecError
from lazyfx.inputs.spec import Const, SymbolTable, parse_shorthand, to_value

_SCALARS = (str, int, float, bool, complex, type(None))
_CONTAINERS = (tuple, list, dict)  # typing.Tuple[...] and friends have these as their origin


def bind_values(model: nn.Module, inputs: tuple, kw_inputs: dict, table: SymbolTable) -> inspect.BoundArguments:
    """forward's parameters bound to the abstract values of the user's specs."""
    bound = bind_inputs(model, inputs, kw_inputs)
    hints = _annotations(model)
    values = {}
    for name, spec in bound.arguments.items():
        parameter = bound.signature.parameters[name]
        annotation = hints.get(name)
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            values[name] = tuple(parameter_value(name, s, annotation, table) for s in spec)
        elif parameter.kind is inspect.Parameter.VAR_KEYWORD:
            values[name] = {k: parameter_value(k, s, annotation, table) for k, s in spec.items()}
        else:
            values[name] = parameter_value(name, spec, annotation, table, parameter.default)
    return inspect.BoundArguments(bound.signature, values)


def parameter_value(name: str, spec: Any, annotation: Any, table: SymbolTable,
                    default: Any = inspect.Parameter.empty) -> Any:
    """The abstract value of ``spec`` given for the parameter ``name`` annotated ``annotation``
    (None when it has none), whose default is ``default``."""
    if isinstance(spec, Const):
        return to_value(spec, table)
    plain_string = isinstance(spec, str) and not isinstance(spec, enum.Enum)
    if annotation is None:
        # forward(x, pool="mean"): a string default says the parameter takes strings
        if plain_string and isinstance(default, str):
            return spec
        return to_value(spec, table)
    if not is_constant_type(annotation):
        # Union[str, Tensor]: a string that is also a spec could mean either
        if plain_string and takes_strings(annotation):
            _refuse_ambiguous(name, spec, annotation)
            return spec
        return to_value(spec, table)
    if plain_string:
        if not takes_strings(annotation):
            return to_value(spec, table)
        _refuse_ambiguous(name, spec, annotation)
    return spec


def _refuse_ambiguous(name: str, spec: str, annotation: Any) -> None:
    """A SpecError where ``spec``, given for a parameter whose annotation takes strings, is also
    a valid input spec (and no ``Literal`` or ``str`` ``Enum`` lists it)."""
    if spec in _listed_strings(annotation) or not _reads_as_spec(spec):
        return
    dims = [str(d) for d in parse_shorthand(spec).shape]
    shape = f"({dims[0]},)" if len(dims) == 1 else f"({', '.join(dims)})"
    raise SpecError(
        f"forward's parameter {name!r} is annotated {_type_name(annotation)}, and {spec!r} is also an input "
        f"spec (a tensor of shape {shape}); pass lazyfx.Const({spec!r}) for the "
        f"string, or lazyfx.TensorSpec({spec!r}) for a tensor",
        code=diagnostics.SPEC_INVALID,
        notes=[f"on the command line, --input {name}:={spec} passes the string"],
    )


def is_constant_type(annotation: Any) -> bool:
    """Whether an annotation admits constants only (no tensor, no ``Any``)."""
    if annotation in _SCALARS or (isinstance(annotation, type) and issubclass(annotation, enum.Enum)):
        return True
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return True
    if origin in (Union, types.UnionType) or origin in _CONTAINERS:
        return bool(args) and all(a is Ellipsis or is_constant_type(a) for a in args)
    return False


def takes_strings(annotation: Any) -> bool:
    if annotation is str or (isinstance(annotation, type) and issubclass(annotation, str)):
        return True
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return any(isinstance(a, str) for a in args)
    return origin in (Union, types.UnionType) and any(takes_strings(a) for a in args)


def _listed_strings(annotation: Any) -> set[str]:
    """The strings a ``Literal`` or a ``str`` ``Enum`` in the annotation names exactly."""
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum) and issubclass(annotation, str):
        return {str(member.value) for member in annotation}
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return {a for a in args if isinstance(a, str)}
    if origin in (Union, types.UnionType):
        return set().union(*(_listed_strings(a) for a in args))
    return set()


def _reads_as_spec(text: str) -> bool:
    try:
        parse_shorthand(text)
    except LazyFXError:
        return False
    return True


def _annotations(model: nn.Module) -> dict[str, Any]:
    """forward's parameter annotations, resolved (``from __future__ import annotations`` makes
    them strings); one that cannot be resolved counts as none."""
    forward = model.forward
    try:
        return typing.get_type_hints(forward)
    except Exception:  # a name the annotation uses is not importable here: read what is plain
        parameters = inspect.signature(forward).parameters.values()
        return {p.name: p.annotation for p in parameters
                if p.annotation is not inspect.Parameter.empty and not isinstance(p.annotation, str)}


def _type_name(annotation: Any) -> str:
    return annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")


def bind_inputs(model: nn.Module, args: tuple, kwargs: dict) -> inspect.BoundArguments:
    """Match the user's inputs to ``model.forward``'s parameters."""
    signature = inspect.signature(model.forward)
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        params = ", ".join(str(p) for p in signature.parameters.values())
        raise SpecError(f"the inputs do not fit {type(model).__name__}.forward({params}): {exc}") from None
    return bound


def with_defaults(bound: inspect.BoundArguments) -> dict[str, Any]:
    """Every forward parameter's abstract value, defaults filled in."""
    full = inspect.BoundArguments(bound.signature, bound.arguments.copy())
    full.apply_defaults()
    return dict(full.arguments)
