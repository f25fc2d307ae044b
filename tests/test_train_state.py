"""Train-state pieces: the sampling EMA's warm-up."""

import jax.numpy as jnp
import numpy as np

from consistency_jax.train_state import warmed_up_ema_rate


def test_ema_warmup_follows_early_parameters_and_then_the_rate():
    rates = np.asarray([warmed_up_ema_rate(0.999, jnp.int32(k)) for k in (0, 10, 100, 100_000)])
    np.testing.assert_allclose(rates, [0.1, 11 / 20, 101 / 110, 0.999], rtol=1e-6)
