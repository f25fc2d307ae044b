"""EDM preconditioning and the consistency boundary parametrization around one network F.

D(x, sigma) = c_skip x + c_out F(c_in x, c_noise)                         (EDM Table 1)
f(x, t)     = c_skip(t) x + c_out(t) F(c_in(t) x, c_noise(t)), f(x, eps) = x  (CM App. C)

F is any callable `net(c_in x, c_noise) -> output` with c_noise of shape [B]
(`consistency_jax.networks.network_fn` binds a Flax module and its parameters into one).
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from consistency_jax.core.arrays import per_sample
from consistency_jax.core.ode import Denoiser

Scalings = tuple[jax.Array, jax.Array, jax.Array, jax.Array]
NetworkFn = Callable[[jax.Array, jax.Array], jax.Array]  # F(c_in x, c_noise [B]) -> output


def edm_scalings(sigma: jax.Array, sigma_data: float) -> Scalings:
    """c_skip, c_out, c_in, c_noise of the EDM denoiser (EDM Table 1)."""
    c_skip = sigma_data**2 / (sigma**2 + sigma_data**2)
    c_out = sigma * sigma_data / jnp.sqrt(sigma**2 + sigma_data**2)
    c_in = 1 / jnp.sqrt(sigma**2 + sigma_data**2)
    return c_skip, c_out, c_in, 0.25 * jnp.log(sigma)


def consistency_scalings(t: jax.Array, sigma_data: float, sigma_min: float) -> Scalings:
    """Boundary-respecting c_skip, c_out (zero at t = eps), c_in, c_noise (CM App. C, eq. 8)."""
    c_skip = sigma_data**2 / ((t - sigma_min) ** 2 + sigma_data**2)
    c_out = (t - sigma_min) * sigma_data / jnp.sqrt(t**2 + sigma_data**2)
    c_in = 1 / jnp.sqrt(t**2 + sigma_data**2)
    return c_skip, c_out, c_in, 0.25 * jnp.log(t)


@dataclasses.dataclass(frozen=True)
class Parametrization:
    """Which scalings wrap the network: 'edm' (teacher denoiser) or 'consistency' (f_theta)."""

    kind: str
    sigma_data: float
    sigma_min: float

    def scalings(self, sigma: jax.Array) -> Scalings:
        if self.kind == "edm":
            return edm_scalings(sigma, self.sigma_data)
        if self.kind == "consistency":
            return consistency_scalings(sigma, self.sigma_data, self.sigma_min)
        raise ValueError(f"Unknown parametrization {self.kind!r}; use 'edm' or 'consistency'.")


def precondition(net: NetworkFn, param: Parametrization, x: jax.Array, sigma: jax.Array) -> jax.Array:
    """c_skip x + c_out F(c_in x, c_noise): the denoiser D or the consistency function f."""
    s = per_sample(jnp.broadcast_to(jnp.asarray(sigma, jnp.float32), x.shape[:1]), x)
    c_skip, c_out, c_in, c_noise = param.scalings(s)
    return c_skip * x + c_out * net(c_in * x, c_noise.reshape(-1))


def denoiser(net: NetworkFn, param: Parametrization) -> Denoiser:
    """The (x, sigma) -> x0_hat callable of a network, for the ODE, the samplers and the losses."""
    return lambda x, sigma: precondition(net, param, x, sigma)
