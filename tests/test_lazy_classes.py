"""Every lazy class ``torch.nn`` defines has a complete descriptor in
:data:`lazyfx.rules.lazy.LAZY_CLASSES`, and each, across its options, passes the three ways
lazyfx meets it: ``infer`` (the shapes and arguments of a real dry run), checkpoint-only
``materialize`` (from an eager state_dict, no input: the dry run's model, values included), and
``lazyfx fix`` (the rewritten call builds the module ``materialize`` builds).

The classes are found by walking ``torch.nn``'s public names, so a lazy class a new PyTorch
release adds fails here until it has a descriptor."""

from __future__ import annotations

import doctest
import importlib.util
import inspect

import pytest
import torch
import torch.nn as nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import is_lazy

import lazyfx
import lazyfx.rules.all  # noqa: F401  (registers every rule)
from dryrun import assert_same_model, dry_run
from lazyfx.cli import main
from lazyfx.core.registry import RESOLVERS, RULES
from lazyfx.rules import lazy
from lazyfx.rules.lazy import LAZY_CLASSES

TORCH_LAZY_CLASSES = sorted(
    {value for name, value in vars(nn).items() if not name.startswith("_") and isinstance(value, type)
     and issubclass(value, LazyModuleMixin) and issubclass(value, nn.Module)},
    key=lambda cls: cls.__name__,
)

# The sizes given for the lazy constructors' required arguments; a lazy class with another
# required argument fails test_the_descriptor_is_complete until it is added here.
REQUIRED = {"out_features": 4, "out_channels": 4, "kernel_size": 2}
CHANNELS = 6  # the input's channel count (features for LazyLinear): divisible by groups=2


class Wrap(nn.Module):
    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x)


def _required(cls: type) -> dict:
    parameters = inspect.signature(cls).parameters.values()
    return {p.name: REQUIRED.get(p.name) for p in parameters
            if p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD}


def _variants(cls: type) -> list[dict]:
    """The constructor's keyword arguments: its required ones, alone and with each option that
    changes which tensors it holds or their shapes."""
    parameters = inspect.signature(cls).parameters
    required = _required(cls)
    variants = [{}]
    if "bias" in parameters:
        variants.append({"bias": False})
    if "groups" in parameters:
        variants.append({"groups": 2})
    if "affine" in parameters:
        variants += [{"affine": False}, {"track_running_stats": False},
                     {"affine": False, "track_running_stats": False}]
    return [{**required, **v} for v in variants]


def _input_shape(cls: type) -> tuple[int, ...]:
    """A batched input: (batch, channels, *spatial), each spatial size 5."""
    return (2, CHANNELS, *(5,) * LAZY_CLASSES[cls].spatial)


def _lazy_tensor_names(module: nn.Module) -> list[str]:
    tensors = list(module._parameters.items()) + list(module._buffers.items())
    return [name for name, t in tensors if t is not None and is_lazy(t)]


def _shapes(module: nn.Module) -> dict:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _cases():
    return [pytest.param(cls, id=cls.__name__) for cls in TORCH_LAZY_CLASSES]


def test_torch_defines_lazy_classes_and_the_table_has_no_others():
    assert TORCH_LAZY_CLASSES, "no LazyModuleMixin subclass found in torch.nn"
    assert set(LAZY_CLASSES) == set(TORCH_LAZY_CLASSES)
    assert {r.key for r in RESOLVERS} == set(TORCH_LAZY_CLASSES)


def test_the_descriptor_examples_run():
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for obj in (lazy.LazyClass, lazy.lazy_class):
        for test in doctest.DocTestFinder().find(obj, globs=vars(lazy)):
            runner.run(test)
    assert runner.summarize(verbose=False) == (0, runner.tries) and runner.tries >= 4


@pytest.mark.parametrize("cls", _cases())
def test_the_descriptor_is_complete(cls):
    assert cls in LAZY_CLASSES, f"{cls.__name__} has no descriptor in lazyfx.rules.lazy.LAZY_CLASSES"
    descriptor = LAZY_CLASSES[cls]
    assert descriptor.lazy is cls
    assert descriptor.eager is cls.cls_to_become
    assert descriptor.eager in RULES
    assert RESOLVERS.get(cls).fn is descriptor.resolver
    missing = [name for name, size in _required(cls).items() if size is None]
    assert not missing, f"{cls.__name__} needs {missing}: add sizes for them to REQUIRED"
    eager_parameters = list(inspect.signature(descriptor.eager).parameters)
    assert eager_parameters == [descriptor.argument, *inspect.signature(cls).parameters]  # fix puts it first
    assert descriptor.source and set(descriptor.source) <= set(descriptor.ranks)
    for options in _variants(cls):
        lazy = cls(**options)
        names = _lazy_tensor_names(lazy)
        assert set(names) <= set(descriptor.ranks), (options, names)
        expected = dry_run(lambda: Wrap(cls(**options)), _input_shape(cls)).layer
        assert {n: getattr(expected, n).ndim for n in names} == {n: descriptor.ranks[n] for n in names}, options
        if names:  # what a checkpoint gives back is what the dry run set
            shapes = {n: tuple(getattr(expected, n).shape) for n in names}
            argument = descriptor.arguments_from(lazy, shapes)
            assert argument == {descriptor.argument: getattr(expected, descriptor.argument)}, options


@pytest.mark.parametrize("cls", _cases())
def test_infer_and_materialize_match_a_dry_run(cls):
    descriptor, shape = LAZY_CLASSES[cls], _input_shape(cls)
    for options in _variants(cls):
        expected = dry_run(lambda: Wrap(cls(**options)), shape)
        with torch.no_grad():
            output = expected(torch.zeros(shape))
        report = lazyfx.infer(Wrap(cls(**options)), shape)
        assert report.output.shape == tuple(output.shape), options
        resolution = report.lazy["layer"].resolution
        names = _lazy_tensor_names(cls(**options))
        assert resolution.parameter_shapes == {n: tuple(getattr(expected.layer, n).shape) for n in names}, options
        # the true channel count, also where PyTorch leaves num_features at 0 (a norm without tensors)
        assert resolution.arguments == {descriptor.argument: CHANNELS}, options
        if names:
            assert getattr(expected.layer, descriptor.argument) == CHANNELS
        torch.manual_seed(0)
        assert_same_model(expected, lazyfx.materialize(Wrap(cls(**options)).eval(), ("B", *shape[1:])))


def _contradicted(state: dict, descriptor, names: list[str]):
    """The checkpoint with one lazy tensor's size changed, other than the size the argument is
    read from (which, with the module's options, fixes all the others); None where there is none."""
    source = next(n for n in descriptor.source if n in names)
    for name in names:
        dims = [d for d in range(state[name].ndim) if (name, d) != (source, descriptor.source_dim)]
        if dims:
            shape = list(state[name].shape)
            shape[dims[0]] += 1
            return {**state, name: torch.zeros(shape)}
    return None


@pytest.mark.parametrize("cls", _cases())
def test_checkpoint_only_materialization_gives_the_dry_runs_model(cls):
    descriptor = LAZY_CLASSES[cls]
    for options in _variants(cls):
        expected = dry_run(lambda: Wrap(cls(**options)), _input_shape(cls))
        state = expected.state_dict()
        actual = lazyfx.materialize(Wrap(cls(**options)), state_dict=state)
        assert_same_model(expected, actual)  # types, arguments, state shapes and values
        names = _lazy_tensor_names(cls(**options))
        if not names:  # nothing in the checkpoint tells num_features: left as PyTorch leaves it
            assert getattr(actual.layer, descriptor.argument) == getattr(expected.layer, descriptor.argument) == 0
            continue
        bad = _contradicted({n: state[f"layer.{n}"] for n in names}, descriptor, names)
        if bad is not None:  # the counterpart: a checkpoint the module's options cannot take is refused
            with pytest.raises(lazyfx.ShapeError, match="with its options expects"):
                lazyfx.materialize(Wrap(cls(**options)), state_dict={f"layer.{k}": v for k, v in bad.items()})


def _call(cls: type, options: dict, positional: bool) -> str:
    required = _required(cls)
    args = [repr(options[n]) if positional else f"{n}={options[n]!r}" for n in required]
    args += [f"{k}={v!r}" for k, v in options.items() if k not in required]
    return f"nn.{cls.__name__}({', '.join(args)})"


def _load(path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("cls", _cases())
def test_fix_rewrites_the_call_into_the_eager_module_materialize_builds(cls, tmp_path, monkeypatch, capsys):
    descriptor, shape = LAZY_CLASSES[cls], _input_shape(cls)
    monkeypatch.chdir(tmp_path)
    for i, options in enumerate(_variants(cls)):
        path = tmp_path / f"model_{i}.py"
        call = _call(cls, options, positional=i % 2 == 0)
        path.write_text(f"import torch.nn as nn\n\nmodel = nn.Sequential({call})\n")
        assert main(["fix", f"{path.name}:model", "-i", ",".join(map(str, shape)), "--write"]) == 0, call
        capsys.readouterr()
        assert f"nn.{descriptor.eager.__name__}(" in path.read_text()
        eager = _load(path, f"_lazy_classes_fix_{cls.__name__}_{i}").model
        materialized = lazyfx.materialize(nn.Sequential(cls(**options)), shape)
        assert type(eager[0]) is descriptor.eager, call
        assert _shapes(eager) == _shapes(materialized), call
        assert getattr(eager[0], descriptor.argument) == getattr(materialized[0], descriptor.argument) == CHANNELS
