"""The flow-map error against closed forms: Gaussian data's exact consistency function has none,
a perturbed one its known error; an sCM run's f in sigma units is the EDM denoiser it started from;
bad input is named before any checkpoint is read."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import run_utils

from consistency_jax.core import sampling
from consistency_jax.errors import ConfigError
from consistency_jax.evaluation import flow_map
from consistency_jax.jobs import flow_map as jobs_flow_map
from consistency_jax.jobs.teacher import TeacherNotFoundError
from consistency_jax.networks import build_network
from consistency_jax.training.objectives import teacher_denoiser
from consistency_jax.training.state import init_params

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
S = 0.3  # the data: x0 ~ N(0, S^2 I)
GRID = np.asarray(sampling.teacher_sigmas(256, 0.002, 80.0, 7.0))
SIGMAS = [80.0, 5.0, 1.0, 0.2, 0.05]


def gauss_denoiser(x, sigma):
    """E[x0 | x_sigma] = S^2 x / (S^2 + sigma^2)."""
    s = jnp.reshape(sigma, (-1, 1))  # the ODE's sigma is a scalar
    return S**2 * x / (S**2 + s**2)


def gauss_f(x, sigma, eps=0.0):
    """The exact consistency function S x / sqrt(S^2 + sigma^2) (x / sqrt(var) is constant along
    the PF-ODE), plus eps sigma x."""
    return S * x / jnp.sqrt(S**2 + sigma[:, None] ** 2) + eps * sigma[:, None] * x


def test_the_exact_consistency_function_has_no_flow_map_error_and_a_perturbed_one_its_own():
    x_T = 80.0 * jax.random.normal(jax.random.key(0), (2000, 3))
    exact = flow_map.flow_map_error(gauss_f, gauss_denoiser, x_T, GRID, SIGMAS)
    assert np.max(exact) < 1e-3 * S, exact
    eps = 0.01
    wrong = flow_map.flow_map_error(lambda x, s: gauss_f(x, s, eps), gauss_denoiser, x_T, GRID, SIGMAS)
    # on the exact ODE x_sigma = x_T sqrt(S^2 + sigma^2) / sqrt(S^2 + 80^2): the error is eps sigma x_sigma
    rms_T = float(jnp.sqrt(jnp.mean(x_T**2)))
    expected = [eps * s * rms_T * np.sqrt(S**2 + s**2) / np.sqrt(S**2 + 80.0**2) for s in SIGMAS]
    # the error is the sum of that and the exact function's solver residual: within it of expected
    assert np.all(np.abs(wrong - expected) <= 1.5 * exact + 2e-3 * np.asarray(expected)), (wrong, expected, exact)
    assert np.all(np.abs(wrong - expected) < 0.05 * np.asarray(expected))


@pytest.mark.parametrize("sigmas", [[1.0, 5.0], [100.0], [0.0], []])
def test_noise_levels_must_decrease_inside_the_teachers_range(sigmas):
    with pytest.raises(ValueError, match="decreasing noise levels in"):
        flow_map.check_sigmas(sigmas, GRID)


def test_an_scm_runs_f_in_sigma_units_is_the_edm_denoiser_it_started_from():
    config = run_utils.config("toy_scd")
    model = build_network(config.network, 0)
    params = init_params(model, jax.random.key(1), jnp.zeros((1, 2)), 0)
    x = 2.0 * jax.random.normal(jax.random.key(2), (64, 2))
    sigma = jnp.exp(jax.random.uniform(jax.random.key(3), (64,), minval=-4.0, maxval=4.0))
    f = flow_map.sigma_consistency_fn(config, model, params)(x, sigma)
    d = teacher_denoiser(model, params, None, 1.0, config.model.sigma_data)(x, sigma)
    np.testing.assert_allclose(f, d, rtol=1e-4, atol=1e-5)


def test_a_run_without_a_teacher_or_not_a_student_is_named_before_any_checkpoint(tmp_path):
    cases = (
        ("toy_edm", "", ConfigError, "holds a 'edm' run"),
        ("toy_cd", "", ConfigError, "names no teacher"),
        ("toy_cd", str(tmp_path / "none"), TeacherNotFoundError, "No teacher run in"),
    )
    for name, teacher, error, message in cases:
        config = run_utils.config(name, {"objective.teacher_workdir": teacher})
        (tmp_path / "config.json").write_text(config.to_json())
        with pytest.raises(error, match=message):
            jobs_flow_map.run_flow_map(str(tmp_path), [1.0], 10)
    result = subprocess.run(
        [sys.executable, "-m", "consistency_jax.jobs.flow_map", f"--workdir={tmp_path / 'absent'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    assert result.returncode == 2 and "No run in" in result.stderr and "Traceback" not in result.stderr
