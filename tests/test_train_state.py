"""Train-state pieces: the sampling EMA's warm-up, the learning-rate schedule."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from consistency_jax.config import schema
from consistency_jax.training.state import learning_rate
from consistency_jax.training.step import warmed_up_ema_rate


def test_ema_warmup_follows_early_parameters_and_then_the_rate():
    rates = np.asarray([warmed_up_ema_rate(0.999, jnp.int32(k)) for k in (0, 10, 100, 100_000)])
    np.testing.assert_allclose(rates, [0.1, 11 / 20, 101 / 110, 0.999], rtol=1e-6)


@pytest.mark.parametrize("warmup", [0, 10])
def test_learning_rate_warms_up_linearly_then_follows_a_cosine_to_zero(warmup):
    cfg = schema.get_config().optim
    cfg.lr, cfg.warmup_steps, cfg.decay_steps = 2e-3, warmup, 100
    steps = [warmup // 2, warmup, warmup + 25, warmup + 50, warmup + 100, warmup + 500]
    expected = [2e-3 * (warmup // 2) / warmup if warmup else 2e-3]
    expected += [1e-3 * (1 + math.cos(math.pi * k / 100)) for k in (0, 25, 50, 100, 100)]
    np.testing.assert_allclose([float(learning_rate(cfg)(k)) for k in steps], expected, atol=1e-9)


def test_a_constant_learning_rate_stays_a_number():
    cfg = schema.get_config().optim
    cfg.lr, cfg.warmup_steps, cfg.decay_steps = 3e-4, 0, 0
    assert learning_rate(cfg) == 3e-4  # no schedule counter in the optimizer state
