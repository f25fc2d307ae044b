"""Sharding on a device mesh: the sharded step equals the 1-device step, sampling, CD's teacher and
checkpoints across device counts. The 8-device work runs once, in a subprocess with 8 simulated
CPU devices (their count is fixed when JAX starts); this file is that subprocess's script too."""

import json
import os
import shutil
import sys

import jax
import numpy as np
import pytest
import run_utils

from consistency_jax.data import build_dataset, data_info
from consistency_jax.evaluation import samples as generate
from consistency_jax.jobs import train
from consistency_jax.jobs.teacher import load_teacher
from consistency_jax.networks import build_network
from consistency_jax.training import checkpoint, parallel
from consistency_jax.training.objectives import make_objective
from consistency_jax.training.state import abstract_state, make_optimizer
from consistency_jax.training.step import make_train_step

STEPS = 3  # train steps compared between the 1-device and the sharded step
CT = {"network.dropout": 0.1}  # CT with dropout: target network, RAdam, dropout keys
TEACHER = {"parallel.fsdp": 4, "train.num_steps": 4}  # the EDM teacher, on 2 x 4 devices


# --- the 8-device subprocess --------------------------------------------------------------------


def _run_steps(config, mesh) -> tuple[list[float], object, object]:
    """STEPS train steps from the seed's initial state: on `mesh`, or unsharded on one device."""
    info = data_info(config.data)
    model = build_network(config.network)
    objective = make_objective(config, model, None, 2)
    optimizer = make_optimizer(config.optim)
    key = jax.random.key(config.seed)
    shardings = None
    if mesh is not None:
        shardings = jax.tree.map(lambda a: a.sharding, abstract_state(config, model, info, mesh))
    state = train.initial_state(config, model, objective, optimizer, info, key, None, shardings)
    step = make_train_step(
        objective, optimizer, config.train.ema_rate,
        shardings=(shardings, parallel.replicated(mesh)) if mesh else None,
    )
    data = build_dataset(config.data, seed=config.seed)[0]
    losses = []
    for i in range(STEPS):
        batch = parallel.shard_batch(next(data), mesh) if mesh else next(data)
        state, metrics = step(state, batch, jax.random.fold_in(key, i))
        losses.append(float(metrics["loss"]))
    return losses, state, shardings


def _equivalence(out: str) -> dict:
    """The 1-device step against data parallel (8 x 1) and fsdp (2 x 4); sampling on the mesh."""
    base = run_utils.config("toy_ct", CT)
    losses, reference, _ = _run_steps(base, None)
    result = {"losses": losses}
    for name, fsdp in (("dp", 1), ("fsdp", 4)):
        config = run_utils.override(run_utils.config("toy_ct", CT), {"parallel.fsdp": fsdp})
        mesh = parallel.make_mesh(config.parallel)
        losses, state, shardings = _run_steps(config, mesh)
        leaves, layout = jax.tree.leaves(state), jax.tree.leaves(shardings)
        result[name] = {
            "mesh": dict(mesh.shape),
            "losses": losses,
            "max_diff": run_utils.max_difference(run_utils.flat(reference), run_utils.flat(state)),
            "sharded_leaves": sum("fsdp" in str(s.spec) for s in layout),
            "leaves": len(layout),
            "kept_layout": all(a.sharding == s for a, s in zip(leaves, layout, strict=True)),
        }
    result["sampling"] = _sampling(config, state.params, out)
    return result


def _sampling(config, params, out: str) -> dict:
    """train.write_samples on the fsdp mesh against the same sampler on one device."""
    model = build_network(config.network)
    generate.write_samples(config, out, model, params, data_info(config.data))
    sharded = np.load(os.path.join(out, "samples", "onestep.npz"))["samples"]
    sampler = generate.make_sampler(config, model, "onestep", (2,))
    key = jax.random.fold_in(jax.random.key(config.seed), 2)  # write_samples' key
    on_one = generate.generate(sampler, jax.device_put(params, jax.devices()[0]), key, len(sharded))[0]
    return {"shape": list(sharded.shape), "max_diff": float(np.max(np.abs(on_one - sharded)))}


def _indivisible_batch(out: str) -> str:
    """A global batch that does not split over 8 devices fails before anything is written."""
    workdir = os.path.join(out, "indivisible")
    try:
        train.train(run_utils.config("toy_ct", {"data.batch_size": 60}), workdir)
    except parallel.MeshError as e:
        assert not os.path.exists(workdir)
        return str(e)
    raise AssertionError("no MeshError")


def _teacher(out: str) -> dict:
    """The EDM teacher on 2 x 4 devices (fsdp); its last checkpoint restored onto 4 devices."""
    config = run_utils.config("toy_edm", TEACHER)
    workdir = os.path.join(out, "teacher")
    state = train.train(config, workdir)
    final = run_utils.flat(state)
    np.savez(os.path.join(out, "teacher_state.npz"), **final)
    np.savez(os.path.join(out, "teacher_ema.npz"), **run_utils.flat(state.ema_params))
    four = jax.make_mesh(
        (1, 4), (parallel.DATA, parallel.FSDP), axis_types=(jax.sharding.AxisType.Auto,) * 2,
        devices=jax.devices()[:4],
    )
    target = abstract_state(config, build_network(config.network), data_info(config.data), four)
    manager = checkpoint.make_manager(workdir)
    restored = checkpoint.restore(manager, target)
    manager.close()
    return {
        "restored_devices": len(jax.tree.leaves(restored)[0].sharding.device_set),
        "restored_diff": run_utils.max_difference(final, run_utils.flat(restored)),
    }


def _distill(out: str) -> int:
    """CD, data parallel over 8 devices, from the teacher saved on the fsdp mesh."""
    values = {"objective.teacher_workdir": os.path.join(out, "teacher"), "train.num_steps": 2}
    return int(train.train(run_utils.config("toy_cd", values), os.path.join(out, "cd")).step)


def worker(out: str) -> None:
    assert jax.device_count() == 8, jax.devices()
    result = {
        "equivalence": _equivalence(out),
        "indivisible": _indivisible_batch(out),
        "teacher": _teacher(out),
        "cd_steps": _distill(out),
    }
    with open(os.path.join(out, "result.json"), "w") as f:
        json.dump(result, f)


# --- the tests ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def eight(tmp_path_factory) -> tuple[dict, str]:
    """The 8-device subprocess's results, and its output directory."""
    out = str(tmp_path_factory.mktemp("eight"))
    run_utils.run([__file__, out], os.path.join(out, "log.txt"), devices=8)
    with open(os.path.join(out, "result.json")) as f:
        return json.load(f), out


@pytest.mark.parametrize("name", ["dp", "fsdp"])
def test_sharded_step_equals_one_device_step(eight, name):
    result = eight[0]["equivalence"]
    sharded = result[name]
    assert sharded["mesh"] == ({"data": 8, "fsdp": 1} if name == "dp" else {"data": 2, "fsdp": 4})
    np.testing.assert_allclose(sharded["losses"], result["losses"], rtol=1e-5)
    # Online, target and EMA parameters and the optimizer moments, after STEPS steps.
    assert sharded["max_diff"] < 1e-5
    assert sharded["kept_layout"]
    if name == "fsdp":
        assert 0 < sharded["sharded_leaves"] < sharded["leaves"]
    else:
        assert sharded["sharded_leaves"] == 0


def test_sampling_on_mesh_equals_one_device(eight):
    sampling = eight[0]["equivalence"]["sampling"]
    assert sampling["shape"] == [64, 2] and sampling["max_diff"] < 1e-5


def test_indivisible_batch_fails_before_compute(eight):
    message = eight[0]["indivisible"]
    assert "data.batch_size=60" in message and "multiple of 8" in message


def test_cd_teacher_from_fsdp_mesh(eight):
    """CD ran on 8 data-parallel devices; the same teacher loads on this process's one device."""
    result, out = eight
    assert result["cd_steps"] == 2
    config = run_utils.config("toy_cd", {"objective.teacher_workdir": os.path.join(out, "teacher")})
    here = run_utils.flat(load_teacher(config, data_info(config.data)).params)
    assert run_utils.max_difference(here, dict(np.load(os.path.join(out, "teacher_ema.npz")))) == 0


def test_checkpoint_of_8_devices_resumes_on_4_and_1(eight, tmp_path):
    result, out = eight
    assert result["teacher"] == {"restored_devices": 4, "restored_diff": 0.0}
    workdir = str(tmp_path / "teacher")
    shutil.copytree(os.path.join(out, "teacher"), workdir)
    config = run_utils.config("toy_edm", TEACHER | {"parallel.fsdp": 1})
    saved = dict(np.load(os.path.join(out, "teacher_state.npz")))
    assert run_utils.max_difference(saved, run_utils.restore_state(config, workdir)) == 0
    run_utils.run(run_utils.launch_args("toy_edm", workdir, {"train.num_steps": 8}), str(tmp_path / "log"))
    assert sorted(run_utils.logged_steps(workdir)) == list(range(1, 9))


def test_sharded_step_on_one_device_mesh_equals_unsharded_step():
    """The sharded step (NamedSharding on a mesh of this process's first device: a real GPU in the
    device check) against the plain jitted step, STEPS steps of toy CT with dropout."""
    config = run_utils.config("toy_ct", CT)
    mesh = jax.make_mesh(
        (1, 1), (parallel.DATA, parallel.FSDP), axis_types=(jax.sharding.AxisType.Auto,) * 2,
        devices=jax.devices()[:1],
    )
    losses, reference, _ = _run_steps(config, None)
    sharded_losses, state, shardings = _run_steps(config, mesh)
    np.testing.assert_allclose(sharded_losses, losses, rtol=1e-5)
    assert run_utils.max_difference(run_utils.flat(reference), run_utils.flat(state)) < 1e-5
    assert all(a.sharding == s for a, s in zip(jax.tree.leaves(state), jax.tree.leaves(shardings), strict=True))


def test_leaf_spec_shards_the_largest_divisible_dimension():
    P = jax.sharding.PartitionSpec
    assert parallel.leaf_spec((64, 256), fsdp=4, min_size=16) == P(None, "fsdp")
    assert parallel.leaf_spec((256, 256), fsdp=4, min_size=16) == P("fsdp", None)
    assert parallel.leaf_spec((3, 3, 6, 8), fsdp=4, min_size=16) == P(None, None, None, "fsdp")
    assert parallel.leaf_spec((6, 10), fsdp=4, min_size=16) == P()  # nothing divisible
    assert parallel.leaf_spec((256,), fsdp=4, min_size=1024) == P()  # too small to shard
    assert parallel.leaf_spec((), fsdp=4, min_size=0) == P()
    assert parallel.leaf_spec((256,), fsdp=1, min_size=0) == P()


def test_fsdp_must_divide_the_devices():
    with pytest.raises(parallel.MeshError, match="config.parallel.fsdp=3"):
        parallel.make_mesh(run_utils.config("toy_ct", {"parallel.fsdp": 3}).parallel)
    assert parallel.make_mesh(run_utils.config("toy_ct").parallel).shape == {"data": 1, "fsdp": 1}


def test_distributed_args(monkeypatch):
    for var in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    assert parallel.distributed_args(None, None, None) is None
    assert parallel.distributed_args("h:1", 1, 0) is None
    assert parallel.distributed_args("h:1", 2, 1) == {
        "coordinator_address": "h:1", "num_processes": 2, "process_id": 1
    }
    with pytest.raises(parallel.MeshError, match="--coordinator"):
        parallel.distributed_args(None, 2, 0)
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert parallel.distributed_args(None, None, None) == {}  # jax detects the rest


if __name__ == "__main__":
    worker(sys.argv[1])
