"""rCM's DMD term on sCD: its gradient against the closed form on Gaussian data, and the fake score
trained beside the student through the real train loop (off before the tangent warm-up, resumed
exactly, bad input refused)."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import run_utils

from consistency_jax.core import losses
from consistency_jax.core.arrays import per_sample
from consistency_jax.jobs import train
from consistency_jax.training.state import FakeScoreTrainState, TrainState

pytestmark = pytest.mark.filterwarnings("ignore")


def gaussian_denoiser(mu: float, s: float):
    """The exact denoiser E[x_0 | x] of data N(mu, s^2 I) noised at sigma."""
    return lambda x, sigma: mu + s**2 / (s**2 + per_sample(sigma, x) ** 2) * (x - mu)


def test_the_dmd_gradient_is_the_closed_form_one_and_vanishes_when_the_distributions_match():
    # student samples from N(mu_g, s^2), data N(mu_d, s^2): D_fake - D_real = (mu_g - mu_d) sigma^2 /
    # (s^2 + sigma^2) at every x, so d loss / d x_hat = 2 (D_fake - D_real) / (w B D)
    batch, dim, mu_d, mu_g, s = 16, 3, 0.3, -0.5, 0.7
    k_x, k_sigma, k_n = jax.random.split(jax.random.key(0), 3)
    x_hat = mu_g + s * jax.random.normal(k_x, (batch, dim))
    sigma = jnp.exp(jax.random.normal(k_sigma, (batch,)))
    n = jax.random.normal(k_n, (batch, dim))
    real, fake = gaussian_denoiser(mu_d, s), gaussian_denoiser(mu_g, s)
    grad = jax.grad(losses.dmd_loss)(x_hat, real, fake, sigma, n)
    w = jnp.mean(jnp.abs(x_hat - real(x_hat + sigma[:, None] * n, sigma)), axis=1)
    expected = 2 * (mu_g - mu_d) * sigma**2 / (s**2 + sigma**2) / (w * batch * dim)
    np.testing.assert_allclose(grad, jnp.broadcast_to(expected[:, None], grad.shape), rtol=1e-5)
    assert bool(jnp.all(-grad > 0))  # descent moves the samples toward the data's mean
    matched = jax.value_and_grad(losses.dmd_loss)(x_hat, real, real, sigma, n)
    assert float(matched[0]) == 0.0 and float(jnp.max(jnp.abs(matched[1]))) == 0.0


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("dmd") / "edm")
    train.train(run_utils.config("toy_edm"), workdir)
    return workdir


def scd_config(teacher: str, dmd_weight: float):
    return run_utils.config("toy_scd", {
        "objective.teacher_workdir": teacher,
        "objective.tangent_warmup_steps": 4,
        "objective.dmd_weight": dmd_weight,
    })


def test_the_fake_score_trains_beside_the_student_and_the_term_starts_after_the_warm_up(teacher, tmp_path):
    runs = {w: str(tmp_path / f"dmd{w}") for w in (0.0, 1.0)}
    states = {w: train.train(scd_config(teacher, w), runs[w]) for w in runs}
    assert type(states[0.0]) is TrainState  # plain sCD keeps the state (and checkpoints) it had
    state = states[1.0]
    assert isinstance(state, FakeScoreTrainState)
    teacher_params = run_utils.restore_state(run_utils.config("toy_edm"), teacher)
    fake = run_utils.flat(state.fake_score["params"])
    moved = [k for k in fake if not np.array_equal(fake[k], teacher_params[".ema_params" + k])]
    assert len(moved) == len(fake)  # the fake score started from the teacher and left it
    logs = {w: run_utils.logged_steps(runs[w]) for w in runs}
    for step in range(1, 9):
        with_dmd, plain = logs[1.0][step], logs[0.0][step]
        assert np.isfinite(with_dmd["dmd"]) and np.isfinite(with_dmd["fake_score_loss"])
        if step <= 4:  # steps 0-3 run before the warm-up ends: the student's loss is sCD's alone
            np.testing.assert_allclose(with_dmd["loss"], plain["loss"], rtol=1e-6)
        else:
            assert with_dmd["loss"] != pytest.approx(plain["loss"], rel=1e-3)


def test_a_resumed_run_restores_the_fake_score_and_ends_where_an_uninterrupted_one_does(teacher, tmp_path):
    config = scd_config(teacher, 1.0)
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    train.train(config, straight)
    shutil.copytree(straight, resumed)
    shutil.rmtree(os.path.join(resumed, "checkpoints", "8"))
    train.train(config, resumed)  # from step 4
    a, b = run_utils.restore_state(config, straight), run_utils.restore_state(config, resumed)
    assert any(k.startswith(".fake_score") for k in a)
    assert run_utils.max_difference(a, b) == 0.0


@pytest.mark.parametrize("values, named", [
    ({"objective.name": "sct", "objective.dmd_weight": 1.0}, "is sCD's regulariser (rCM), not objective.name='sct'"),
    ({"objective.init_from_teacher": False, "objective.dmd_weight": 1.0}, "init_from_teacher=True"),
    ({"objective.dmd_weight": -1.0}, "objective.dmd_weight must be >= 0"),
    ({"objective.dmd_weight": 1.0, "objective.fake_score_lr": 0.0}, "objective.fake_score_lr must be > 0"),
    ({"objective.dmd_weight": 1.0, "objective.dmd_p_std": 0.0}, "objective.dmd_p_std must be > 0"),
])
def test_bad_dmd_settings_exit_2_before_any_compute(tmp_path, values, named):
    values = {"objective.teacher_workdir": str(tmp_path / "no_teacher"), **values}
    args = run_utils.launch_args("toy_scd", str(tmp_path / "run"), values)
    out = run_utils.run(args, str(tmp_path / "log"), expect=2)
    assert named in out and "Traceback" not in out
    assert not os.path.exists(tmp_path / "run")


def test_the_pipeline_stage_scd_dmd_distils_the_pipelines_teacher(tmp_path):
    from configs.presets import PRESETS
    from consistency_jax.jobs import end_to_end

    configs = end_to_end.stage_configs(PRESETS["digits"], str(tmp_path), ("edm", "scd", "scd_dmd"))
    config = configs["scd_dmd"]
    assert config.objective.teacher_workdir == os.path.join(str(tmp_path), "edm")
    assert end_to_end.uses_teacher(config)
    # sCD's config but for the DMD term
    plain = configs["scd"].to_dict()
    plain["objective"]["dmd_weight"] = config.objective.dmd_weight
    assert config.objective.dmd_weight > 0 and config.to_dict() == plain
