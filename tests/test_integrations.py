"""What users hand a materialized lazy model to: a compatibility matrix on a lazy CNN and a
lazy transformer (TorchScript, torch.export, ONNX + onnxruntime, deepcopy, checkpoints,
DDP and FSDP2 with gloo, torch.compile(dynamic=True), optimizers, the meta device)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn as nn

import lazyfx
from dryrun import assert_same_model
from integration_models import MODELS
from test_errors import snapshot

NAMES = sorted(MODELS)


def build(name: str) -> nn.Module:
    """The lazy model; its eager parts (the attention) take their values from the global seed."""
    torch.manual_seed(0)
    return MODELS[name][0]()


def eager(name: str, seed: int = 0) -> nn.Module:
    return lazyfx.materialize(build(name), MODELS[name][1], seed=seed).eval()


def example(name: str, batch: int = 2, length: int = 5) -> torch.Tensor:
    shape = MODELS[name][2]
    torch.manual_seed(1)
    if name == "transformer":
        return torch.randn(batch, length, shape[2])
    return torch.randn(batch, *shape[1:])


@pytest.mark.parametrize("name", NAMES)
def test_torchscript_script_and_trace(name, tmp_path):
    model, x = eager(name), example(name)
    scripted = lazyfx.export(build(name), MODELS[name][1], format="torchscript", seed=0, path=tmp_path / "s.pt")
    loaded = torch.jit.load(str(tmp_path / "s.pt"))
    assert torch.allclose(loaded(x), model(x), atol=1e-6)
    traced = lazyfx.export(build(name), MODELS[name][1], format="torchscript-trace", seed=0)
    assert torch.allclose(traced(example(name, 3)), model(example(name, 3)), atol=1e-6)
    assert torch.allclose(scripted(x), model(x), atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_torch_export_with_the_users_symbols_as_dynamic_dims(name, tmp_path):
    program = lazyfx.export(build(name), MODELS[name][1], format="exported-program", seed=0, path=tmp_path / "p.pt2")
    assert (tmp_path / "p.pt2").exists()
    model = eager(name)
    for batch in (2, 7):  # other sizes inside the Dim range are accepted
        x = example(name, batch)
        assert torch.allclose(program.module()(x), model(x), atol=1e-5)


def test_torch_export_dims_honour_dim_bounds():
    batch = lazyfx.Dim("B", min=2, max=64)
    program = lazyfx.export(MODELS["cnn"][0](), (batch, 3, 16, 16), format="exported-program")
    ranges = [(r.lower, r.upper) for r in program.range_constraints.values()]
    assert (2, 64) in ranges


@pytest.mark.parametrize("name", NAMES)
def test_onnx_with_dynamic_axes_matches_eager_in_onnxruntime(name, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    path = lazyfx.export(build(name), MODELS[name][1], format="onnx", seed=0, path=tmp_path / "m.onnx")
    session = ort.InferenceSession(path)
    (inp,) = session.get_inputs()
    assert inp.shape[0] == "B" and (name != "transformer" or inp.shape[1] == "T")
    model = eager(name)
    for batch in (2, 4):
        x = example(name, batch)
        (got,) = session.run(None, {inp.name: x.numpy()})
        assert torch.allclose(torch.from_numpy(got), model(x), atol=1e-5)


def test_onnx_is_one_file_unless_the_weights_need_external_data(tmp_path, monkeypatch):
    ort = pytest.importorskip("onnxruntime")
    path = lazyfx.export(build("cnn"), MODELS["cnn"][1], format="onnx", path=tmp_path / "small.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.onnx"]
    monkeypatch.setattr("lazyfx.build.exporters.ONNX_SINGLE_FILE_LIMIT", 0)  # as a model over the limit
    lazyfx.export(build("cnn"), MODELS["cnn"][1], format="onnx", seed=0, path=tmp_path / "big.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx", "big.onnx.data", "small.onnx"]
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    for name in ("big.onnx", "big.onnx.data"):  # the weights are found by name, next to the model
        (tmp_path / name).rename(moved / name)
    session = ort.InferenceSession(str(moved / "big.onnx"))
    x = example("cnn", 2)
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert torch.allclose(torch.from_numpy(got), eager("cnn")(x), atol=1e-5)
    assert path == str(tmp_path / "small.onnx")


def test_onnx_without_its_packages_says_which_extra_to_install(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    model = build("cnn")
    before = snapshot(model)
    with pytest.raises(lazyfx.MaterializeError, match="needs the packages onnxscript") as info:
        lazyfx.export(model, MODELS["cnn"][1], format="onnx", path=tmp_path / "net.onnx")
    assert 'pip install "lazyfx[onnx]"' in str(info.value)
    assert snapshot(model) == before and not list(tmp_path.iterdir())


class Unscriptable(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.LazyLinear(2)
        self.activation = lambda x: x.relu()  # TorchScript cannot compile a lambda attribute

    def forward(self, x):
        return self.activation(self.fc(x))


def test_failed_export_leaves_no_file_and_the_model_alone(tmp_path):
    model = Unscriptable()
    before = snapshot(model)
    target = tmp_path / "m.pt"
    with pytest.raises(lazyfx.MaterializeError, match="exporting Unscriptable as torchscript failed") as info:
        lazyfx.export(model, ("B", 3), format="torchscript", path=target)
    assert "nothing was written to the path" in str(info.value)
    assert list(tmp_path.iterdir()) == []
    assert snapshot(model) == before


def test_unknown_format_is_a_usage_error():
    with pytest.raises(lazyfx.SpecError, match="unknown export format 'tflite'; choose one of torchscript, "
                       "torchscript-trace, exported-program, onnx"):
        lazyfx.export(MODELS["cnn"][0](), ("B", 3, 16, 16), format="tflite")
    with pytest.raises(lazyfx.SpecError, match="unknown export format 'exported program'"):
        lazyfx.export(MODELS["cnn"][0](), ("B", 3, 16, 16), format="exported program")


def test_format_names_with_underscores():
    hyphens = lazyfx.export(MODELS["cnn"][0](), ("B", 3, 16, 16), format="exported-program", seed=0)
    underscores = lazyfx.export(MODELS["cnn"][0](), ("B", 3, 16, 16), format="exported_program", seed=0)
    assert type(underscores) is type(hyphens) is torch.export.ExportedProgram
    scripted = lazyfx.export(MODELS["cnn"][0](), ("B", 3, 16, 16), format="torchscript_trace", seed=0)
    assert isinstance(scripted, torch.jit.ScriptModule)


@pytest.mark.parametrize("name", NAMES)
def test_deepcopy_params_optimizer_and_state_dict_round_trip(name, tmp_path):
    model = eager(name)
    twin = copy.deepcopy(model)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in twin.parameters()) > 0
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    model(example(name)).sum().backward()
    optimizer.step()
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    state = torch.load(tmp_path / "sd.pt", weights_only=True)
    fresh = lazyfx.materialize(MODELS[name][0](), state_dict=state)  # shapes from the checkpoint
    assert_same_model(model, fresh)


def test_checkpoint_mismatch_names_the_key_and_both_shapes():
    state = eager("cnn").state_dict()
    with pytest.raises(lazyfx.ShapeError) as info:
        lazyfx.materialize(MODELS["cnn"][0](), ("B", 4, 16, 16), state_dict=state)
    assert "checkpoint key 'features.0.weight' has shape (8, 3, 3, 3), but the inputs resolve it to (8, 4, 3, 3)" \
        in str(info.value)


@pytest.mark.parametrize("name", NAMES)
def test_torch_compile_dynamic(name):
    model = eager(name)
    compiled = torch.compile(model, dynamic=True, backend="aot_eager")
    for batch in (2, 5):
        x = example(name, batch)
        assert torch.allclose(compiled(x), model(x), atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_meta_device_allocates_no_storage(name):
    cls, spec, _ = MODELS[name]
    model = lazyfx.materialize(cls(), spec, device="meta")
    tensors = list(model.parameters()) + list(model.buffers())
    assert tensors and all(t.device.type == "meta" for t in tensors)


def test_registration_order_init_equals_a_hand_written_twin():
    class Lazy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.LazyLinear(8)
            self.b = nn.Linear(8, 8)
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.norm = nn.LazyBatchNorm1d()
            self.c = nn.LazyLinear(3)

        def forward(self, x):
            y = self.b(self.a(x))
            y = self.attn(y, y, y)[0]
            return self.c(y) + self.norm(x[:, :3])

    class Twin(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 8)
            self.b = nn.Linear(8, 8)
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.norm = nn.BatchNorm1d(3)
            self.c = nn.Linear(8, 3)

    torch.manual_seed(99)  # the lazy model's own construction consumes RNG: it must not matter
    materialized = lazyfx.materialize(Lazy(), ("B", 3), seed=3, init_order="registration")
    torch.manual_seed(3)
    twin = Twin()
    assert list(materialized.state_dict()) == list(twin.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(materialized.state_dict().values(), twin.state_dict().values()))
    # the default order is the dry run's, which the twin does not share
    default = lazyfx.materialize(Lazy(), ("B", 3), seed=3)
    assert not torch.equal(default.b.weight, twin.b.weight) or not torch.equal(default.a.weight, twin.a.weight)


def test_seed_reproduces_across_processes():
    code = textwrap.dedent("""
        import torch, lazyfx, sys
        sys.path.insert(0, sys.argv[1])
        from integration_models import LazyCNN
        model = lazyfx.materialize(LazyCNN(), ("B", 3, 16, 16), seed=1234)
        print(sum(float(p.double().sum()) for p in model.parameters()).hex())
    """)
    here = os.path.dirname(__file__)
    runs = [subprocess.run([sys.executable, "-c", code, here], capture_output=True, text=True, check=True).stdout
            for _ in range(2)]
    assert runs[0] == runs[1] and runs[0].strip()
    model = lazyfx.materialize(MODELS["cnn"][0](), ("B", 3, 16, 16), seed=1234)
    assert sum(float(p.double().sum()) for p in model.parameters()).hex() == runs[0].strip()


DISTRIBUTED = textwrap.dedent("""
    import os, sys, torch, torch.distributed as dist, torch.multiprocessing as mp
    import lazyfx
    sys.path.insert(0, sys.argv[1])
    from integration_models import MODELS

    def run(rank, world, rendezvous, mode, name):
        dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=world)
        torch.manual_seed(0)
        cls, spec, shape = MODELS[name]
        if mode == "ddp":
            model = torch.nn.parallel.DistributedDataParallel(lazyfx.materialize(cls(), spec, seed=0))
        else:
            from torch.distributed.fsdp import fully_shard
            model = lazyfx.materialize(cls(), spec, device="meta")
            fully_shard(model)
            model.to_empty(device="cpu")
            for m in model.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
        out = model(torch.randn(*shape))
        out.sum().backward()
        dist.destroy_process_group()
        # Skip interpreter finalization: gloo's worker threads can abort it
        # ("terminate called without an active exception", pytorch/pytorch
        # #190489), a torch teardown race unrelated to the model under test.
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(0)

    if __name__ == "__main__":
        mp.spawn(run, args=(2, sys.argv[2], sys.argv[3], sys.argv[4]), nprocs=2, join=True)
""")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("mode", ["ddp", "fsdp2"])
def test_distributed_wrappers_accept_a_materialized_model(mode, name, tmp_path):
    # The ranks meet through a file of this test's own, not a loopback port: a port found free
    # and released before rank 0 listens on it can be taken meanwhile by a test running in
    # parallel (pytest -n), whose ranks would then join this group.
    rendezvous = (tmp_path / "rendezvous").as_uri()
    script = tmp_path / "dist.py"
    script.write_text(DISTRIBUTED)
    result = subprocess.run([sys.executable, str(script), os.path.dirname(__file__), rendezvous, mode, name],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
