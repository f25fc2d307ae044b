"""ECT: its mapping r(t) and curriculum, the pairs its loss draws, and its start from the teacher."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import run_utils

from consistency_jax.config import schema
from consistency_jax.core import schedules
from consistency_jax.data.toy import gmm2d
from consistency_jax.jobs import train
from consistency_jax.training.objectives import make_objective


def test_ect_mapping_closed_form_and_the_gap_shrinking_by_q():
    t = np.array([0.01, 0.5, 1.0, 3.0, 10.0, 80.0])
    for stage in (0, 1, 3):
        r = np.asarray(schedules.ect_lower_sigma(jnp.asarray(t, jnp.float32), stage, 2.0, 8.0, 1.0))
        n = 1 + 8 / (1 + np.exp(t))  # 1 + k sigmoid(-b t)
        np.testing.assert_allclose(r, np.maximum(t * (1 - 2.0 ** -(stage + 1) * n), 0), rtol=1e-5, atol=1e-7)
    # Far from 0 the nominal r / t runs 0.5, 0.75, 0.875 (q = 2); at small t the gap is wider and
    # r clips to 0 in the first stages.
    r = [float(schedules.ect_lower_sigma(80.0, s, 2.0, 8.0, 1.0)) / 80 for s in (0, 1, 2)]
    np.testing.assert_allclose(r, [0.5, 0.75, 0.875], rtol=1e-6)
    assert float(schedules.ect_lower_sigma(1.0, 0, 2.0, 8.0, 1.0)) == 0.0
    gaps = [1.0 - float(schedules.ect_lower_sigma(1.0, s, 256.0, 8.0, 1.0)) for s in (0, 1)]
    np.testing.assert_allclose(gaps[0] / gaps[1], 256.0, rtol=1e-3)


def test_ect_stage_advances_every_stage_steps_or_never():
    steps = jnp.array([0, 249, 250, 999, 1000])
    np.testing.assert_array_equal(schedules.ect_stage(steps, 250), [0, 0, 1, 3, 4])
    np.testing.assert_array_equal(schedules.ect_stage(steps, 0), [0, 0, 0, 0, 0])


def test_ect_loss_draws_continuous_pairs_with_the_same_noise():
    """f = zeros recording its inputs: the loss's t is lognormal within [sigma_min, sigma_max],
    r is ECT's mapping of it at the step's stage, and x_r uses x_t's noise."""
    seen = []

    class Recorder(nn.Module):
        @nn.compact
        def __call__(self, xin, c_noise, labels=None, *, train=False):
            seen.append((xin, c_noise))
            return jnp.zeros_like(xin)

    c = schema.get_config()
    c.objective.name, c.objective.p_mean, c.objective.p_std = "ect", -1.1, 2.0
    c.objective.ect_stage_steps = 100
    objective = make_objective(c, Recorder(), dim=2)
    data = jnp.asarray(gmm2d().sample(20_000, np.random.default_rng(1)))
    value, metrics = objective.loss({}, {}, objective.frozen_inputs(), {"x": data}, jax.random.key(3), 250)
    assert int(metrics["ect_stage"]) == 2 and np.isfinite(float(value))
    (xin_t, cn_t), (xin_r, cn_r) = seen
    t, r = np.exp(4 * np.asarray(cn_t)), np.exp(4 * np.asarray(cn_r))  # c_noise = ln(sigma) / 4
    sd = c.model.sigma_data
    x_t = np.asarray(xin_t) * np.sqrt(t**2 + sd**2)[:, None]  # undo c_in
    x_r = np.asarray(xin_r) * np.sqrt(r**2 + sd**2)[:, None]
    assert t.min() >= 0.002 * (1 - 1e-5) and t.max() <= 80 * (1 + 1e-5)
    quartiles = np.percentile(np.log(t), [25, 50, 75])  # the clipping leaves them in place
    np.testing.assert_allclose(quartiles, -1.1 + 2.0 * np.array([-0.6745, 0, 0.6745]), atol=0.05)
    expected_r = np.maximum(np.asarray(schedules.ect_lower_sigma(jnp.asarray(t), 2, 2.0, 8.0, 1.0)), 0.002)
    np.testing.assert_allclose(r, expected_r, rtol=1e-4)
    z_t = (x_t - np.asarray(data)) / t[:, None]
    z_r = (x_r - np.asarray(data)) / r[:, None]
    far = r > 0.1
    np.testing.assert_allclose(z_t[far], z_r[far], rtol=2e-3, atol=2e-3)


@pytest.mark.slow
def test_consistency_training_starts_from_the_teacher_it_is_given(tmp_path):
    """With objective.init_from_teacher and teacher_workdir set, ECT (and iCT) start from the teacher's EMA parameters;
    without it they start from fresh ones. A learning rate of 1e-12 keeps step 1 where it began."""
    teacher_config = run_utils.config("toy_edm", {"train.num_steps": 2, "seed": 1})  # not our init
    teacher = train.train(teacher_config, str(tmp_path / "edm"))
    teacher_params = run_utils.flat(teacher.ema_params)
    one_step = {"train.num_steps": 1, "optim.lr": 1e-12, "train.ema_rate": 0.0}
    for name in ("ect", "ict"):
        tuned = run_utils.config("toy_ict", one_step | {
            "objective.name": name, "objective.teacher_workdir": str(tmp_path / "edm"),
            "objective.init_from_teacher": True,
        })
        state = train.train(tuned, str(tmp_path / name))
        assert run_utils.max_difference(run_utils.flat(state.params), teacher_params) < 1e-6
    fresh = train.train(run_utils.config("toy_ict", one_step), str(tmp_path / "fresh"))
    assert run_utils.max_difference(run_utils.flat(fresh.params), teacher_params) > 1e-2
