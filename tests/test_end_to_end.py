"""End to end on the 2-D mixture: teacher, CD from it, CT and iCT from data, through the same
train loop and configs as `pipeline.py --preset=toy` at half their step counts, judged by sliced
W2 to the data against the noise floor of a second data sample."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from configs.presets import PRESETS
from consistency_jax.errors import ConfigError
from consistency_jax.jobs import end_to_end as pipeline
from consistency_jax.training import checkpoint

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


def shrunk(get_config):
    """A toy stage at 20 steps and 500 samples."""

    def get():
        config = get_config()
        config.train.num_steps = config.train.ckpt_every = 20
        config.sample.num_samples = config.sample.batch_size = 500
        return config

    return get


@pytest.mark.slow
def test_seeds_train_the_teacher_once_each_student_per_seed_and_summarise(tmp_path):
    """A one-seed pipeline extended to seeds 0 and 1 keeps seed 0's runs (WORKDIR/<stage>, not
    retrained) and its figures; seed 1's student trains with config.seed 1 in WORKDIR/seed1/<stage>
    from the one teacher; the table is the mean and range over the seeds."""
    preset = {s: shrunk(PRESETS["toy"][s]) for s in ("edm", "cd")}
    workdir = str(tmp_path)
    one = pipeline.run_pipeline(preset, workdir, ("edm", "cd"))
    summary = pipeline.run_pipeline(preset, workdir, ("edm", "cd"), seeds=(0, 1))
    assert not os.path.exists(tmp_path / "seed1" / "edm")
    assert len(os.listdir(tmp_path / "edm" / "checkpoints")) == 1  # the teacher trained once
    with open(tmp_path / "seed1" / "cd" / "config.json") as f:
        seed1 = json.load(f)
    assert seed1["seed"] == 1 and seed1["objective"]["teacher_workdir"] == os.path.join(workdir, "edm")
    with open(tmp_path / "results.json") as f:
        rows = json.load(f)
    assert [{k: v for k, v in r.items() if k != "seed"} for r in rows if r["seed"] == 0] == one
    by_seed = {(r["stage"], r["sampler"], r["seed"]): r for r in rows}
    assert set(by_seed) == {
        ("data", "second data sample", 0), ("edm", "teacher_heun35", 0),
        *(("cd", s, k) for s in ("onestep", "2step") for k in (0, 1)),
    }
    for row in summary:
        values = [r["sw_data"] for r in rows if (r["stage"], r["sampler"]) == (row["stage"], row["sampler"])]
        assert row["seeds"] == ([0, 1] if row["stage"] == "cd" else [0])
        assert row["sw_data"] == pytest.approx(np.mean(values)) and row["sw_data_range"] == [min(values), max(values)]
    cd = next(r for r in summary if r["sampler"] == "onestep")
    assert cd["sw_data_range"][0] < cd["sw_data_range"][1]  # the seed reached training and sampling
    # seed 1 samples from other x_T than the teacher's: a paired distance only for seed 0
    assert "rmse_teacher_paired" not in by_seed[("cd", "onestep", 1)]
    assert cd["rmse_teacher_paired"] == by_seed[("cd", "onestep", 0)]["rmse_teacher_paired"]
    with open(tmp_path / "results.md") as f:
        assert f.read().startswith("Mean and range over training seeds [0, 1]:")


def test_a_seed_moves_and_reseeds_the_students_alone(tmp_path):
    workdir = str(tmp_path)
    stages = ("autoencoder", "latent_edm", "latent_cd", "edm", "cd", "ict")
    configs = pipeline.stage_configs(PRESETS["digits"], workdir, stages)
    seeded = pipeline.with_seed(configs, 2)
    assert pipeline.shared_stages(configs) == ["autoencoder", "latent_edm", "edm"]
    for stage in stages:
        shared = stage in ("autoencoder", "latent_edm", "edm")
        assert seeded[stage].seed == (configs[stage].seed if shared else 2) and configs[stage].seed == 0
        where = os.path.join(workdir, stage) if shared else os.path.join(workdir, "seed2", stage)
        assert pipeline.stage_dir(configs, workdir, stage, 2) == where
        assert pipeline.stage_dir(configs, workdir, stage, 0) == os.path.join(workdir, stage)
    # the students of every seed use the one teacher and the one autoencoder
    assert seeded["cd"].objective.teacher_workdir == os.path.join(workdir, "edm")
    assert seeded["latent_cd"].autoencoder.workdir == os.path.join(workdir, "autoencoder")


def test_seed_summary_is_the_mean_and_range_of_each_figure():
    rows = [
        {"stage": "edm", "sampler": "heun", "nfe": 35, "fd": 0.5, "seed": 0},
        {"stage": "cd", "sampler": "onestep", "nfe": 1, "fd": 0.6, "vs": 1.2, "seed": 0},
        {"stage": "cd", "sampler": "onestep", "nfe": 1, "fd": 0.9, "vs": 1.8, "seed": 1},
        {"stage": "cd", "sampler": "onestep", "nfe": 1, "fd": 0.75, "vs": 1.5, "seed": 2},
    ]
    edm, cd = pipeline.seed_summary(rows)
    assert edm == {"stage": "edm", "sampler": "heun", "nfe": 35, "seeds": [0], "fd": 0.5, "fd_range": [0.5, 0.5]}
    assert cd["seeds"] == [0, 1, 2] and cd["fd"] == pytest.approx(0.75) and cd["fd_range"] == [0.6, 0.9]
    assert cd["vs"] == pytest.approx(1.5) and cd["vs_range"] == [1.2, 1.8]
    line = pipeline.results_table([cd]).splitlines()[2]
    assert line == "| cd | onestep | 1 | 0,1,2 | 0.7500 | [0.6000, 0.9000] | 1.5000 | [1.2000, 1.8000] |"


def test_seeds_must_be_distinct_and_non_negative(tmp_path):
    for seeds in ((), (0, 0), (-1,)):
        with pytest.raises(ConfigError, match="Seeds must be distinct non-negative integers"):
            pipeline.run_pipeline(PRESETS["toy"], str(tmp_path), ("edm", "cd"), seeds=seeds)
    assert not os.listdir(tmp_path)


def test_a_worker_stopped_on_a_signal_starts_no_queued_stage(tmp_path, monkeypatch):
    """SIGTERM reaches both processes: the second saves its stage and stops; the stages queued
    behind it (e.g. the teacher's evaluation) must not start, or the pipeline would not exit."""
    configs = pipeline.stage_configs(PRESETS["toy"], str(tmp_path), ("edm", "ict"))
    started = []

    def train(config, workdir):
        started.append(workdir)
        raise checkpoint.Preempted(step=7)

    monkeypatch.setattr(pipeline.train, "train", train)
    monkeypatch.setattr(pipeline, "evaluate_stage", lambda config, workdir: started.append(workdir))
    monkeypatch.setattr(pipeline, "_worker_preempted", None)
    with pytest.raises(checkpoint.Preempted, match="step 7"):
        pipeline._run_stage(configs["ict"], str(tmp_path / "ict"), "ict", True, True)
    with pytest.raises(checkpoint.Preempted, match="step 7"):
        pipeline._run_stage(configs["edm"], str(tmp_path / "edm"), "edm", False, True)
    assert started == [str(tmp_path / "ict")]


PARENT = '''
import concurrent.futures, multiprocessing, os, signal, sys, time
from consistency_jax.jobs import end_to_end


def fake_train(config, workdir):
    """A training stage: on SIGTERM it saves (after a second) and stops."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    open(workdir + ".started", "w").close()
    while not stop:
        time.sleep(0.05)
    time.sleep(1.0)
    open(workdir + ".saved", "w").close()


def stage(workdir):
    end_to_end.train.train = fake_train
    return end_to_end._run_stage(None, workdir, "fake", True, False)


if __name__ == "__main__":
    spawn = multiprocessing.get_context("spawn")
    pool = concurrent.futures.ProcessPoolExecutor(
        1, mp_context=spawn, initializer=end_to_end._init_worker, initargs=("",)
    )
    print(pool.submit(os.getpid).result(), flush=True)
    pool.submit(stage, sys.argv[1])
    time.sleep(600)
'''


def _alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, not reaped where no init reaps, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads process states from /proc (Linux)")
def test_a_worker_whose_pipeline_was_killed_saves_its_stage_and_exits(tmp_path):
    """The pipeline process killed outright (SIGKILL: no handler runs) while its second process
    trains: the worker must stop its stage as on SIGTERM (the stage saves) and then exit, not
    keep training, or wait for work forever holding the stage's lock."""
    script, workdir = tmp_path / "parent.py", str(tmp_path / "stage")
    script.write_text(PARENT)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = os.environ | {"JAX_PLATFORMS": "cpu", "PYTHONPATH": root}
    parent = subprocess.Popen([sys.executable, str(script), workdir], stdout=subprocess.PIPE, env=env, text=True)
    try:
        worker = int(parent.stdout.readline())
        deadline = time.monotonic() + 120
        while not os.path.exists(workdir + ".started") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert os.path.exists(workdir + ".started"), "the stage never started"
        assert _alive(worker)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 30
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(worker):
        os.kill(worker, 9)
        pytest.fail("the worker outlived its pipeline")
    assert os.path.exists(workdir + ".saved"), "the worker exited without letting its stage save"


def test_the_pipeline_stops_its_second_process_when_it_stops(tmp_path, monkeypatch):
    """A signal or failure in the first process must reach the second (SIGTERM: it saves and
    stops) instead of the pipeline waiting for the second's whole stage to finish."""
    configs = pipeline.stage_configs(PRESETS["toy"], str(tmp_path), ("edm", "cd"))
    terminated = []

    class Worker:
        def terminate(self):
            terminated.append(True)

    def train(config, workdir):
        raise checkpoint.Preempted(step=3)

    monkeypatch.setattr(pipeline.train, "train", train)
    monkeypatch.setattr(pipeline.multiprocessing, "active_children", lambda: [Worker()])
    with pytest.raises(checkpoint.Preempted, match="step 3"):
        pipeline.run_stages(configs, str(tmp_path), concurrent=False, cache_dir="")
    assert terminated == [True]
