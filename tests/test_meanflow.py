"""MeanFlow against the closed form of Gaussian data: for x ~ N(0, S^2 I) and e ~ N(0, I) the
flow z_t = (1 - t) x + t e keeps z / a(t) constant, a(t)^2 = (1 - t)^2 S^2 + t^2, so the exact
average velocity is u(z_t, t, r) = z_t (1 - a(r) / a(t)) / (t - r)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import run_utils

from configs import toy_meanflow
from consistency_jax.config import schema
from consistency_jax.core import losses, sampling
from consistency_jax.core.parametrization import meanflow_network
from consistency_jax.errors import ConfigError
from consistency_jax.evaluation import samples
from consistency_jax.jobs import train
from consistency_jax.networks import build_network, network_fn

S = 0.4


def a(t):
    return jnp.sqrt((1 - t) ** 2 * S**2 + t**2)


def velocity(z, t):
    """The marginal velocity dz/dt = z a'(t) / a(t)."""
    t = t[:, None]
    return z * ((t - 1) * S**2 + t) / a(t) ** 2


def exact_u(z, t, r, eps: float = 0.0):
    gap = (t - r)[:, None]
    safe = jnp.where(gap > 0, gap, 1.0)
    u = jnp.where(gap > 0, z * (1 - a(r)[:, None] / a(t)[:, None]) / safe, velocity(z, t))
    return u + eps * t[:, None] * z  # eps > 0: not the average velocity


def _draw(n=512, d=3):
    kx, ke, kt = jax.random.split(jax.random.key(0), 3)
    t, r = losses.meanflow_pair(kt, n, -0.4, 1.0, 0.25)
    return S * jax.random.normal(kx, (n, d)), jax.random.normal(ke, (n, d)), t, r


def test_pairs_are_ordered_logit_normal_with_the_equal_fraction():
    t, r = losses.meanflow_pair(jax.random.key(1), 100_000, -0.4, 1.0, 0.75)
    t, r = np.asarray(t), np.asarray(r)
    assert np.all(r <= t) and np.all(r[:75_000] == t[:75_000]) and np.all(r[75_000:] < t[75_000:])
    assert 0 < r.min() and t.max() < 1


def test_the_jvp_target_of_the_exact_average_velocity_is_itself():
    x, e, t, r = _draw()
    z = (1 - t)[:, None] * x + t[:, None] * e
    u, target = losses.meanflow_target(exact_u, z, t, r, velocity(z, t))
    np.testing.assert_allclose(u, target, atol=2e-5 * float(jnp.max(jnp.abs(u))))
    u, target = losses.meanflow_target(lambda *a: exact_u(*a, eps=0.1), z, t, r, velocity(z, t))
    assert float(jnp.max(jnp.abs(u - target))) > 1e-2


def test_meanflow_loss_of_the_exact_average_velocity_is_nearly_zero():
    x, e, t, r = _draw()
    loss = lambda u: float(losses.meanflow_loss(u, velocity, x, e, t, r, 1.0, 1e-3))
    exact, wrong = loss(exact_u), loss(lambda *a: exact_u(*a, eps=0.1))
    assert exact < 1e-6 and wrong > 1e3 * exact, (exact, wrong)
    # with the conditional velocity e - x (training) the exact u is no longer a zero of it
    assert float(losses.meanflow_loss(exact_u, lambda z, t: e - x, x, e, t, r, 1.0, 1e-3)) > 0.1


@pytest.mark.parametrize("steps", [(1.0, 0.0), (1.0, 0.5, 0.0)])
def test_sampling_the_exact_average_velocity_lands_on_the_data_distribution(steps):
    e = jax.random.normal(jax.random.key(2), (4096, 2))
    z0 = sampling.meanflow_sample(exact_u, e, steps)
    np.testing.assert_allclose(z0, S * e, atol=1e-5)  # the flow map of Gaussian data: z / a const


def test_networks_take_two_times_and_the_second_one_matters():
    cfg = schema.get_config().network
    cfg.name, cfg.unet.model_channels, cfg.unet.channel_mult = "ddpmpp", 16, (1,)
    cfg.unet.num_blocks, cfg.unet.attn_resolutions = 1, ()
    for model, x in ((build_network(schema.get_config().network), jnp.ones((4, 2))),
                     (build_network(cfg), jnp.ones((4, 8, 8, 1)))):
        params = jax.jit(model.init)(jax.random.key(0), x, jnp.zeros(4))["params"]  # one time: same tree
        u = jax.jit(meanflow_network(network_fn(model, params)))
        t = jnp.full((4,), 0.7)
        a, b = u(x, t, t), u(x, t, jnp.zeros(4))
        assert a.shape == x.shape and np.all(np.isfinite(a)) and float(jnp.max(jnp.abs(a - b))) > 0


@pytest.mark.slow
def test_meanflow_trains_and_samples_in_one_and_two_steps(tmp_path):
    config = run_utils.config("toy_meanflow")
    state = train.train(config, str(tmp_path / "mf"))
    assert int(state.step) == config.train.num_steps
    assert samples.sampler_names(config) == ["onestep", "2step"]
    assert [samples.nfe(config, s) for s in ("onestep", "2step")] == [1, 2]
    for sampler in ("onestep", "2step"):
        x = np.load(tmp_path / "mf" / "samples" / f"{sampler}.npz")["samples"]
        assert x.dtype == np.float32 and x.shape == (64, 2) and np.all(np.isfinite(x))


@pytest.mark.parametrize("section,key,value,message", [
    ("objective", "meanflow_equal_fraction", 1.5, "meanflow_equal_fraction must be in [0, 1]"),
    ("objective", "meanflow_norm_eps", 0.0, "config.objective.meanflow_norm_eps must be > 0"),
    ("sample", "meanflow_steps", (0.5, 0.7), "must decrease strictly within (0, 1)"),
    ("sample", "meanflow_steps", (1.0,), "must decrease strictly within (0, 1)"),
])
def test_meanflow_values_that_cannot_work(tmp_path, section, key, value, message):
    config = toy_meanflow.get_config()
    config[section][key] = value
    with pytest.raises(ConfigError, match=re.escape(message)):
        train.train(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()
