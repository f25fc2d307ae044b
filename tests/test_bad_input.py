"""Bad input stops with a message naming the cause and the fix, before compute, destroying nothing."""

import hashlib
import os
import re
import shutil
import subprocess
import sys

import pytest
import run_utils

from configs import digits_edm, toy_cd, toy_edm, toy_ict, toy_scd, toy_sct
from consistency_jax.errors import ConfigError
from consistency_jax.jobs import train
from consistency_jax.jobs.teacher import TeacherNotFoundError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def launch(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "launch.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def tree_digest(path: str) -> dict[str, str]:
    out = {}
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            with open(full, "rb") as f:
                out[os.path.relpath(full, path)] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.mark.parametrize("override,expected", [
    # a misspelt key: the nearest keys of its section
    ("--config.optim.lrr=1e-3", "config.optim.lrr is not a config key. Did you mean config.optim.lr,"),
    # a misspelt section: that section's keys
    ("--config.optimm.lr=1e-3", "config.optimm.lr is not a config key. Did you mean config.optim.lr,"),
    ("--config.optim.lr=fast", "config.optim.lr takes a number (it is 0.002 in this config); 'fast'"),
    ("--config.train.num_steps=1.5", "config.train.num_steps takes an integer"),
])
def test_override_errors_are_one_paragraph_naming_the_key(tmp_path, override, expected):
    result = launch("--config=configs/toy_edm.py", f"--workdir={tmp_path / 'run'}", override)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {override}: ")
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_config_file_that_is_not_there(tmp_path):
    result = launch("--config=configs/no_such_config.py", f"--workdir={tmp_path / 'run'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "the config file cannot be loaded" in result.stderr and "no_such_config.py" in result.stderr
    assert not (tmp_path / "run").exists()


def test_unknown_objective_is_a_short_message_and_writes_nothing(tmp_path):
    result = launch("--config=configs/toy_edm.py", f"--workdir={tmp_path / 'run'}",
                    "--config.objective.name=cdd")
    assert result.returncode == 2
    assert "config.objective.name='cdd' is not known" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("section,key,value,message", [
    ("network", "name", "resnet", "config.network.name='resnet' is not known"),
    ("objective", "distance", "l3", "config.objective.distance='l3' is not known"),
    ("objective", "solver", "rk4", "config.objective.solver='rk4' is not known"),
    ("optim", "name", "sgd", "config.optim.name='sgd' is not known"),
    ("data", "batch_size", 0, "config.data.batch_size must be >= 1, got 0"),
    ("optim", "decay_steps", -100, "config.optim.decay_steps must be >= 0"),
    ("model", "sigma_min", 100.0, "sigma_min=100.0 must be < sigma_max"),
    ("sample", "multistep_sigmas", (100.0,), "multistep_sigmas"),
    # toy_edm: 4000 steps, logs every 500
    ("train", "steps_per_dispatch", 8, "config.train.log_every=500 is not a multiple of "
     "train.steps_per_dispatch=8"),
])
def test_config_values_that_cannot_work(tmp_path, section, key, value, message):
    config = toy_edm.get_config()
    config[section][key] = value
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        train.train(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_cd_teacher_substeps_below_one(tmp_path):
    config = toy_cd.get_config()
    config.objective.teacher_substeps = 0
    with pytest.raises(ConfigError, match="config.objective.teacher_substeps must be >= 1"):
        train.train(config, str(tmp_path / "cd"))
    assert not (tmp_path / "cd").exists()


@pytest.mark.parametrize("config", ["digits_cd", "digits_ect"])
def test_a_student_config_names_no_teacher_and_refuses_without_one_from_any_directory(tmp_path, config):
    """No teacher path relative to the working directory: the command must name one."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "launch.py"), f"--config={ROOT}/configs/{config}.py", "--workdir=run"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "--config.objective.teacher_workdir=" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_run_saved_with_the_former_default_of_init_from_teacher_resumes_unchanged():
    """Runs saved when init_from_teacher defaulted to True started from a teacher only if they
    named one; resuming them with today's default changes nothing."""
    from consistency_jax.config import checks

    saved = toy_ict.get_config()
    saved.objective.init_from_teacher = True
    assert checks.changed_keys(toy_ict.get_config(), saved) == []
    saved.objective.teacher_workdir = "runs/toy/edm"
    assert checks.changed_keys(toy_ict.get_config(), saved) == [
        "config.objective.init_from_teacher (True there, False now)"
    ]


def test_cd_without_a_teacher_refuses_to_distil_a_random_network(tmp_path):
    config = toy_cd.get_config()
    config.objective.teacher_workdir = str(tmp_path / "no_such_teacher")
    with pytest.raises(TeacherNotFoundError, match="No teacher run in .*no_such_teacher"):
        train.train(config, str(tmp_path / "cd"))
    assert not (tmp_path / "cd").exists()
    result = launch("--config=configs/toy_cd.py", f"--workdir={tmp_path / 'cd'}",
                    f"--config.objective.teacher_workdir={tmp_path / 'no_such_teacher'}")
    assert result.returncode == 2 and "Train the teacher first" in result.stderr


def test_ect_with_a_gap_that_never_shrinks_or_no_teacher_to_start_from(tmp_path):
    config = toy_ict.get_config()
    config.objective.name, config.objective.ect_q = "ect", 1.0
    with pytest.raises(ConfigError, match="config.objective.ect_q must be > 1"):
        train.train(config, str(tmp_path / "ect"))
    config.objective.ect_q, config.objective.init_from_teacher = 2.0, True
    with pytest.raises(ConfigError, match="--config.objective.teacher_workdir=DIR"):  # none named
        train.train(config, str(tmp_path / "ect"))
    config.objective.teacher_workdir = str(tmp_path / "no_such_teacher")  # named, but missing
    with pytest.raises(TeacherNotFoundError, match="No teacher run in .*no_such_teacher"):
        train.train(config, str(tmp_path / "ect"))
    assert not (tmp_path / "ect").exists()


@pytest.mark.parametrize("name,section,key,value,message", [
    ("toy_scd", "objective", "teacher_workdir", "", "sCD needs a trained teacher for dx_t/dt"),
    ("toy_sct", "objective", "tangent_c", 0.0, "config.objective.tangent_c must be > 0"),
    ("toy_scd", "objective", "tangent_c", -0.1, "config.objective.tangent_c must be > 0"),
    ("toy_sct", "sample", "trigflow_steps", (0.0,), "decrease strictly within (0, t_max=1.5645]"),
    ("toy_sct", "sample", "trigflow_steps", (1.6,), "decrease strictly within (0, t_max=1.5645]"),
    ("toy_scd", "sample", "trigflow_steps", (1.1, 1.3), "decrease strictly"),
    ("toy_sct", "model", "scm_network", "vp", "config.model.scm_network='vp' is not known"),
])
def test_scm_values_that_cannot_work(tmp_path, name, section, key, value, message):
    config = {"toy_sct": toy_sct, "toy_scd": toy_scd}[name].get_config()
    config.objective.teacher_workdir = str(tmp_path / "edm")
    config[section][key] = value
    with pytest.raises(ConfigError, match=re.escape(message)):
        train.train(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_scd_from_a_run_that_is_not_an_edm_teacher(tmp_path):
    """Only an EDM teacher converts to TrigFlow: a consistency run in teacher_workdir is refused."""
    other = tmp_path / "ict"
    other.mkdir()
    (other / "config.json").write_text(toy_ict.get_config().to_json())
    config = toy_scd.get_config()
    config.objective.teacher_workdir = str(other)
    with pytest.raises(TeacherNotFoundError, match="holds a 'ict' run, not an EDM teacher"):
        train.train(config, str(tmp_path / "scd"))
    assert not (tmp_path / "scd").exists()


def test_cd_with_a_teacher_dir_but_no_checkpoint(tmp_path):
    teacher = tmp_path / "edm"
    teacher.mkdir()
    (teacher / "config.json").write_text(toy_edm.get_config().to_json())
    config = toy_cd.get_config()
    config.objective.teacher_workdir = str(teacher)
    with pytest.raises(TeacherNotFoundError, match="has no checkpoint"):
        train.train(config, str(tmp_path / "cd"))


def test_a_workdir_of_another_run_is_not_resumed_or_touched(tmp_path):
    run = tmp_path / "run"
    config = toy_edm.get_config()
    config.train.num_steps, config.train.log_every, config.train.ckpt_every = 4, 2, 2
    config.sample.num_samples, config.sample.batch_size = 16, 16
    train.train(config, str(run))
    before = tree_digest(str(run))
    other = toy_edm.get_config()
    other.network.mlp.hidden = 64
    with pytest.raises(ConfigError, match=r"config.network.mlp.hidden \(256 there, 64 now\)"):
        train.train(other, str(run))
    assert tree_digest(str(run)) == before


def test_steps_per_dispatch_for_a_unet_on_the_cpu(tmp_path):
    config = digits_edm.get_config()
    config.train.steps_per_dispatch = 2
    with pytest.raises(ConfigError, match="steps_per_dispatch=2 with the ddpmpp U-Net on the CPU"):
        train.train(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_resuming_between_dispatches_is_refused_and_touches_nothing(tmp_path):
    run = tmp_path / "run"
    config = toy_edm.get_config()
    config.train.num_steps, config.train.log_every, config.train.ckpt_every = 6, 2, 2
    config.sample.num_samples, config.sample.batch_size = 16, 16
    train.train(config, str(run))
    before = tree_digest(str(run))
    config.train.num_steps, config.train.log_every, config.train.ckpt_every = 8, 4, 4
    config.train.steps_per_dispatch = 4
    with pytest.raises(ConfigError, match="latest checkpoint is at step 6, not a multiple of "
                       r"config.train.steps_per_dispatch=4.*divisor of 6"):
        train.train(config, str(run))
    assert tree_digest(str(run)) == before


@pytest.mark.parametrize("config,data", [
    ("cifar10_edm", "cifar10"), ("cifar10_cd", "cifar10"), ("cifar10_ct", "cifar10"), ("cifar10_ict", "cifar10"),
    ("cifar10_ect", "cifar10"), ("imagenet64_edm", "imagenet_resized/64x64"),
])
def test_tfds_configs_without_the_data_set_stop_with_the_data_set_message(tmp_path, config, data):
    distils = config in ("cifar10_cd", "cifar10_ect")
    teacher = [f"--config.objective.teacher_workdir={tmp_path / 'edm'}"] if distils else []
    result = launch(f"--config=configs/{config}.py", f"--workdir={tmp_path / 'run'}",
                    f"--config.data.tfds_data_dir={tmp_path / 'tfds'}", *teacher)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"TFDS data set {data!r} is not prepared" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("overrides,message", [
    ({"network.name": "mlp"}, "config.network.name='mlp' takes vectors"),
    ({"data.image_size": 10, "network.unet.channel_mult": (1, 2, 2)}, "side divides by 4"),
    ({"network.unet.attn_resolutions": (16,)}, "resolutions are [8, 4]"),  # CIFAR-10's on digits
    ({"data.name": "gmm2d"}, "is a U-Net for images"),
    ({"data.conditional": True, "data.name": "gmm2d", "network.name": "mlp"}, "has no labels"),
])
def test_a_network_that_does_not_fit_the_data_stops_before_compute(tmp_path, overrides, message):
    """The digits teacher's config with one mismatch: a clear error, and nothing written."""
    from configs import digits_edm

    config = digits_edm.get_config()
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        target = config
        for part in section.split("."):
            target = target[part]
        target[name] = value
    with pytest.raises(ConfigError, match=re.escape(message)):
        train.train(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_a_data_mismatch_is_a_short_message_from_launch(tmp_path):
    result = launch("--config=configs/digits_edm.py", f"--workdir={tmp_path / 'run'}",
                    "--config.data.conditional=True", "--config.data.name=moons2d",
                    "--config.network.name=mlp")
    assert result.returncode == 2
    assert "has no labels" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


# A finished toy run (4 steps, checkpoints at 2 and 4) that the bad commands below are aimed at.
RUN = {"train.num_steps": 4, "train.ckpt_every": 2, "train.log_every": 2}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> str:
    workdir = str(tmp_path_factory.mktemp("finished") / "run")
    run_utils.run(run_utils.launch_args("toy_edm", workdir, RUN), workdir + ".log")
    return workdir


def _not_json(workdir: str) -> None:
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write("{not json")


def _empty_json(workdir: str) -> None:
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write("{}")


def _unrelated_folder(workdir: str) -> None:
    os.makedirs(workdir)
    with open(os.path.join(workdir, "thesis.tex"), "w") as f:
        f.write("notes")


# (workdir: 'run' = a copy of the finished run, 'new' = a folder that does not exist yet, or a
# function preparing it; overrides; extra arguments and environment; text of the message)
BAD_INPUTS = {
    "b1 above 1": ("run", {"optim.b1": 1.5}, {}, "config.optim.b1 must be in [0, 1), got 1.5"),
    "dropout above 1": ("run", {"network.dropout": 1.5}, {}, "config.network.dropout must be in [0, 1)"),
    "negative eps": ("run", {"optim.eps": -1.0}, {}, "config.optim.eps must be > 0, got -1.0"),
    "negative huber_c": ("run", {"objective.huber_c": -0.5}, {}, "huber_c must be >= 0 (the pseudo-Huber c"),
    "negative rho": ("run", {"model.rho": -7.0}, {}, "config.model.rho must be > 0, got -7.0"),
    "zero hidden": ("new", {"network.mlp.hidden": 0}, {}, "config.network.mlp.hidden must be >= 1, got 0"),
    "negative seed": ("new", {"seed": -1}, {}, "config.seed must be >= 0, got -1"),
    "teacher grid of 1": ("new", {"sample.teacher_steps": 1}, {}, "config.sample.teacher_steps must be >= 2"),
    "keep none": ("run", {"train.ckpt_keep": 0}, {}, "config.train.ckpt_keep must be >= 1, got 0"),
    "keep every negative": ("run", {"train.ckpt_keep_every": -100}, {}, "config.train.ckpt_keep_every must be >= 0"),
    "changed seed": ("run", {"seed": 1}, {}, "config.seed (0 there, 1 now)"),
    "changed batch": ("run", {"data.batch_size": 32}, {}, "config.data.batch_size (64 there, 32 now)"),
    "num_steps below the checkpoint": ("run", {"train.num_steps": 2}, {}, "num_steps=2 is below the step"),
    "unrelated folder": (_unrelated_folder, {}, {}, "is a non-empty folder that holds no run"),
    "config.json not JSON": (_not_json, {}, {}, "config.json is not a run's config: it is not valid JSON"),
    "config.json {}": (_empty_json, {}, {}, "config.json is not a run's config: it lacks seed"),
    "empty workdir": ("", {}, {}, "--workdir is empty"),
    "no such backend": ("new", {}, {"JAX_PLATFORMS": "cuda"}, "JAX cannot start its backend"),
    "guidance unconditional": ("run", {"sample.guidance": "(1.0,2.0)"}, {}, "guidance needs a conditional run"),
    "labels unconditional": ("new", {"sample.labels": "(0,3)"}, {}, "sample.labels=(0, 3) on an unconditional run"),
    "latent without autoencoder": ("new", {"autoencoder.kind": "digits"}, {}, "a latent run without an autoencoder"),
    "autoencoder not there": (
        "new", {"autoencoder.kind": "digits", "autoencoder.workdir": "/no/such/ae"}, {},
        "No autoencoder run in '/no/such/ae' (no config.json)",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_inputs_through_launch(tmp_path, finished_run, case):
    """Each bad input: exit status 2, one message naming it, no traceback, the workdir untouched."""
    where, values, environment, message = BAD_INPUTS[case]
    workdir = str(tmp_path / "run") if where != "" else ""
    if where == "run":
        shutil.copytree(finished_run, workdir)
    elif callable(where):
        if os.path.isdir(finished_run) and where is not _unrelated_folder:
            shutil.copytree(finished_run, workdir)
        where(workdir)
    before = tree_digest(workdir) if workdir else None
    args = run_utils.launch_args("toy_edm", workdir, RUN | values)
    output = run_utils.run(args, str(tmp_path / "log"), expect=2, **environment)
    assert message in output and "Traceback" not in output, output[-3000:]
    if workdir and where != "new":
        assert tree_digest(workdir) == before
    elif workdir:
        assert not os.path.exists(workdir)
