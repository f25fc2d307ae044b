"""End to end on the 2-D mixture: teacher, CD from it, CT and iCT from data, through the same
train loop and configs as `pipeline.py --preset=toy` at half their step counts, judged by sliced
W2 to the data against the noise floor of a second data sample."""

import os

import numpy as np
import pytest

from configs.presets import PRESETS
from consistency_jax.errors import ConfigError
from consistency_jax.jobs import end_to_end as pipeline

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def toy_rows(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("toy"))
    configs = pipeline.stage_configs(PRESETS["toy"], workdir, ("edm", "cd", "ct", "ict"))
    for config in configs.values():
        config.train.num_steps //= 2
        config.train.ckpt_every = config.train.num_steps
        # At half length a 0.999 EMA would still hold ~22% of the initial parameters (for CD:
        # the teacher's denoiser, a poor consistency function): let it warm up.
        config.train.ema_warmup = True
    # as pipeline.py on a CPU: CT and iCT in a second process while the teacher and CD train
    pipeline.run_stages(configs, workdir, concurrent=True, cache_dir="")
    return {(r["stage"], r["sampler"]): r for r in pipeline.vector_results(configs, workdir)}, workdir


@pytest.mark.slow
def test_teacher_ode_samples_match_the_data(toy_rows):
    rows, _ = toy_rows
    floor = rows[("data", "second data sample")]["sw_data"]
    assert rows[("edm", "teacher_heun35")]["sw_data"] < 1.5 * floor


@pytest.mark.slow
def test_cd_one_step_is_close_to_teacher_and_data_and_two_steps_are_no_worse(toy_rows):
    rows, _ = toy_rows
    floor = rows[("data", "second data sample")]["sw_data"]
    one, two = rows[("cd", "onestep")], rows[("cd", "2step")]
    assert one["sw_data"] < 3 * floor and one["sw_teacher"] < 3 * floor, one
    assert two["sw_data"] <= one["sw_data"] + 0.5 * floor, (one, two)


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["ct", "ict"])
def test_consistency_training_learns_the_mixture(toy_rows, stage):
    rows, _ = toy_rows
    floor = rows[("data", "second data sample")]["sw_data"]
    assert rows[(stage, "onestep")]["sw_data"] < 4 * floor, rows[(stage, "onestep")]


@pytest.mark.slow
def test_runs_write_their_record(toy_rows):
    _, workdir = toy_rows
    for stage in ("edm", "cd", "ct", "ict"):
        run = os.path.join(workdir, stage)
        assert os.path.exists(os.path.join(run, "config.json"))
        with open(os.path.join(run, "metrics.jsonl")) as f:
            assert f.readline().startswith("{")
        for name in os.listdir(os.path.join(run, "samples")):
            if name.endswith(".npz"):
                samples = np.load(os.path.join(run, "samples", name))["samples"]
                assert samples.dtype == np.float32 and samples.shape[1] == 2
                assert np.all(np.isfinite(samples))


def test_a_failure_in_the_concurrent_process_stops_the_pipeline(tmp_path):
    configs = pipeline.stage_configs(PRESETS["toy"], str(tmp_path), ("edm", "ict"))
    configs["edm"].train.num_steps = configs["edm"].train.ckpt_every = 10
    configs["edm"].sample.num_samples = configs["edm"].sample.batch_size = 100
    configs["ict"].optim.lr = -1.0  # the second process's stage cannot start
    with pytest.raises(ConfigError, match="optim.lr must be > 0"):
        pipeline.run_stages(configs, str(tmp_path), concurrent=True, cache_dir="")
    assert os.path.exists(tmp_path / "edm" / "checkpoints")  # the teacher's stage still ran
    assert not os.path.exists(tmp_path / "ict")


def tiny_digits_configs(workdir: str) -> dict:
    """The digits pipeline's stages shrunk to seconds (a one-level U-Net, 20 steps, 500 samples)."""
    configs = pipeline.stage_configs(PRESETS["digits"], workdir, ("edm", "cd", "ict", "ect"))
    for config in configs.values():
        config.network.unet.channel_mult = (1,)
        config.network.unet.attn_resolutions = ()
        config.train.num_steps = config.train.ckpt_every = 20
        config.sample.num_samples = config.sample.batch_size = 64
        config.sample.teacher_steps = 4
        config.eval.num_samples = config.eval.batch_size = config.eval.shard_size = 500
    return configs


@pytest.mark.slow
def test_digits_pipeline_scores_the_same_when_the_second_process_evaluates(tmp_path):
    """Concurrent: iCT trains and is scored in the second process, which then trains ECT from the
    teacher, scores it and scores the teacher while the first trains CD; the figures equal those
    of the one-process pipeline."""
    tables = {}
    for concurrent in (True, False):
        workdir = str(tmp_path / str(concurrent))
        configs = tiny_digits_configs(workdir)
        evaluations = pipeline.run_stages(configs, workdir, concurrent, "", evaluate_stages=True)
        assert set(evaluations) == {"edm", "cd", "ict", "ect"}
        assert configs["ect"].objective.teacher_workdir == os.path.join(workdir, "edm")
        tables[concurrent] = pipeline.image_results(configs, evaluations)
    assert tables[True] == tables[False]
    edm = next(r for r in tables[True] if r["stage"] == "edm")
    assert edm["nfe"] == 7 and edm["fd_digits_vs_teacher"] == 1.0 and np.isfinite(edm["fd_digits"])
    assert set(edm) == {"stage", "sampler", "nfe", "fd_digits", "kd_digits", "is_digits", "fd_digits_vs_teacher"}
    assert {(r["stage"], r["sampler"]) for r in tables[True]} == {
        ("edm", "teacher_heun7"), ("cd", "onestep"), ("cd", "2step"), ("ict", "onestep"), ("ict", "2step"),
        ("ect", "onestep"), ("ect", "2step"),
    }
