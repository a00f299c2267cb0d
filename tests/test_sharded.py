"""materialize(..., mesh=, shard=) builds straight into FSDP2 (issue 16): each rank allocates its
shards, and the gathered state is the single-process dry run's bit for bit on meshes of 1, 2 and
4 gloo ranks. The distributed half runs once per session in four forked processes
(tests/sharded_job.py, bounded by a timeout); each test here compares a part of what rank 0
gathered with one process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import lazyfx
from sharded_job import MODELS, built_on_cpu, on_meta, step

HERE = os.path.dirname(os.path.abspath(__file__))
NAMES = sorted(MODELS)
# one worker runs this module under pytest -n (--dist loadgroup): the job behind `gathered` (a
# module fixture) then runs once, not once on each worker that got some of the tests
pytestmark = pytest.mark.xdist_group("sharded")


@pytest.fixture(scope="module")
def gathered(tmp_path_factory):
    scratch = tmp_path_factory.mktemp("sharded")
    out = scratch / "gathered.pt"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, os.path.join(HERE, "sharded_job.py"), str(out), str(scratch)],
                            capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    return torch.load(out, weights_only=False)


def dry_run(name: str):
    """The single-process model: materialize on cpu from seed 0, the model built on meta."""
    return lazyfx.materialize(on_meta(name), MODELS[name][1], device="cpu", seed=0)


def assert_same_state(expected: dict, got: dict) -> None:
    assert list(got) == list(expected)
    for key, value in expected.items():
        assert got[key].dtype == value.dtype and torch.equal(got[key], value), key


def differs(expected: dict, got: dict) -> bool:
    return any(not torch.equal(got[key], value) for key, value in expected.items())


@pytest.mark.parametrize("size", [1, 2, 4])
@pytest.mark.parametrize("name", NAMES)
def test_gathered_state_is_the_dry_run_whatever_the_world_size(gathered, name, size):
    assert_same_state(dry_run(name).state_dict(), gathered[name, size])


def test_a_two_dimensional_mesh_shards_as_hsdp(gathered):
    assert_same_state(dry_run("gpt").state_dict(), gathered["gpt", "2x2"])


@pytest.mark.parametrize("name", NAMES)
def test_the_docs_former_recipe_is_not(gathered, name):
    """meta + fully_shard + to_empty + reset_parameters draws on each rank's shard: the counterpart
    that shows the comparison can fail."""
    assert differs(dry_run(name).state_dict(), gathered[name, "recipe"])


@pytest.mark.parametrize("name", NAMES)
def test_one_training_step(gathered, name):
    """The same loss as the unsharded model, and the same updated state as the single-process
    model sharded afterwards (FSDP2 computes on gathered parameters, whose kernels may round in
    another order than the unsharded model's: the updated state is compared with it closely)."""
    model = dry_run(name)
    loss = step(model, name)  # the step each rank takes, on the unsharded model
    sharded_loss, sharded_state = gathered[name, "step"]
    control_loss, control_state = gathered[name, "control"]
    assert torch.equal(sharded_loss, control_loss)
    assert_same_state(control_state, sharded_state)
    torch.testing.assert_close(sharded_loss, loss.detach(), rtol=1e-6, atol=0)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(sharded_state[key], value, rtol=1e-5, atol=1e-7)
    assert differs(dry_run(name).state_dict(), sharded_state)  # the step did change the model


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_directory_saved_on_two_ranks_loads_on_four(gathered, name):
    assert_same_state(gathered[name, "step"][1], gathered[name, "dcp"])


@pytest.mark.parametrize("name", NAMES)
def test_full_checkpoint_each_rank_keeps_its_shards(gathered, name):
    plus_one = {key: value + 1 if value.is_floating_point() else value
                for key, value in dry_run(name).state_dict().items()}
    assert_same_state(plus_one, gathered[name, "state_dict"])


@pytest.mark.parametrize("case, cls, code, text", [
    ("seed", "SpecError", "LFX053", "rank 2's seed differs from rank 0's"),
    ("spec", "ShapeError", "LFX030", "raised on rank 3 of 4; every rank of the mesh raises it"),
    ("options", "SpecError", "LFX002", "fsdp_kwargs has 'mesh', which fully_shard does not take"),
    ("device", "SpecError", "LFX002", "is not of the mesh's device type 'cpu'"),
    ("tied", "SpecError", "LFX002", "'tokens.weight' and 'head.weight' are one tied tensor"),
    ("predicate", "SpecError", "LFX002", "raised ZeroDivisionError: division by zero"),
    ("rng", "SpecError", "LFX053", "rank 1's rng differs from rank 0's"),
    ("values", "SpecError", "LFX053", "rank 1's model differs from rank 0's"),
])
def test_an_error_on_one_rank_is_raised_on_every_rank(gathered, case, cls, code, text):
    outcomes = [gathered[case, rank] for rank in range(4)]
    assert outcomes[0] is not None and outcomes[0][:2] == (cls, code) and text in outcomes[0][2]
    assert all(o == outcomes[0] for o in outcomes)


def test_a_model_built_on_cpu_keeps_its_eager_values(gathered):
    expected = lazyfx.materialize(built_on_cpu(0), "B,T:int64", device="cpu", seed=0).state_dict()
    assert_same_state(expected, gathered["gpt on cpu", 2])
    assert differs(dry_run("gpt").state_dict(), gathered["gpt on cpu", 2])


def test_sharding_options_need_a_mesh():
    with pytest.raises(lazyfx.SpecError, match="give mesh= too"):
        lazyfx.materialize(on_meta("cnn"), MODELS["cnn"][1], shard=lambda path, module: True)
    with pytest.raises(lazyfx.SpecError, match="mesh must be a torch.distributed.device_mesh.DeviceMesh"):
        lazyfx.materialize(on_meta("cnn"), MODELS["cnn"][1], mesh="cpu")


def test_cpu_offloading_is_refused_on_a_gpu_only():
    from torch.distributed.fsdp import CPUOffloadPolicy

    from lazyfx.build.shard import check_options

    options = {"offload_policy": CPUOffloadPolicy()}
    with pytest.raises(lazyfx.SpecError, match="does not build with fsdp_kwargs=.*CPUOffloadPolicy"):
        check_options(None, options, False, "dry-run", torch.device("cuda"))
    assert check_options(None, options, False, "dry-run", torch.device("cpu")) == options


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (NCCL, one process per GPU)")
def test_cuda_nccl_gathered_state_is_the_dry_run_on_cuda(tmp_path):
    out = tmp_path / "gathered.pt"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, os.path.join(HERE, "sharded_job.py"), str(out), str(tmp_path), "cuda"],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    gathered = torch.load(out, weights_only=False)
    for name in NAMES:
        expected = lazyfx.materialize(on_meta(name), MODELS[name][1], device="cuda:0", seed=0).state_dict()
        assert_same_state({k: v.cpu() for k, v in expected.items()}, gathered[name])
