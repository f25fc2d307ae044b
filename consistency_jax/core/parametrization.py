"""EDM preconditioning, the consistency boundary and TrigFlow parametrizations around one network F.

D(x, sigma) = c_skip x + c_out F(c_in x, c_noise)                         (EDM Table 1)
f(x, t)     = c_skip(t) x + c_out(t) F(c_in(t) x, c_noise(t)), f(x, eps) = x  (CM App. C)
f(x_t, t)   = cos t x_t - sigma_d sin t F(x_t / sigma_d, t), x_t = cos t x0 + sin t z  (sCM TrigFlow)

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


def trigflow_scalings(t: jax.Array, sigma_data: float) -> Scalings:
    """c_skip = cos t, c_out = -sigma_d sin t, c_in = 1 / sigma_d (sCM TrigFlow), c_noise = t (sCM Sec. 4.1)."""
    return jnp.cos(t), -sigma_data * jnp.sin(t), jnp.full_like(t, 1 / sigma_data), t


def trigflow_time(sigma: jax.Array, sigma_data: float) -> jax.Array:
    """t = arctan(sigma / sigma_d): the TrigFlow time of the EDM noise level sigma (sCM App. B.2)."""
    return jnp.arctan(sigma / sigma_data)


def edm_sigma(t: jax.Array, sigma_data: float) -> jax.Array:
    """sigma = sigma_d tan t: the EDM noise level of the TrigFlow time t (sCM App. B.2)."""
    return sigma_data * jnp.tan(t)


def edm_network_as_trigflow(net: NetworkFn, sigma_data: float) -> NetworkFn:
    """TrigFlow's F(x_t / sigma_d, t) of an EDM-preconditioned network: -F_edm(x_t / sigma_d,
    c_noise(sigma_d tan t)).

    Exact (sCM App. B.2 with x_t = cos t x_sigma): at sigma = sigma_d tan t EDM's c_in x_sigma is
    x_t / sigma_d, c_skip x_sigma = cos t x_t and c_out = sigma_d sin t, so the TrigFlow consistency
    function and x0-prediction cos t x_t - sigma_d sin t F equal D(x_t / cos t, sigma): an EDM
    teacher is a TrigFlow teacher, and an EDM network a TrigFlow student, without retraining.
    """
    # sigma at least the smallest normal float: at t = 0, c_noise stays finite and f(x, 0) = x
    sigma = lambda t: jnp.maximum(edm_sigma(t, sigma_data), jnp.finfo(jnp.float32).tiny)
    return lambda y, t: -net(y, edm_scalings(sigma(t), sigma_data)[3])


def trigflow_network_as_edm(net: NetworkFn, sigma_data: float) -> NetworkFn:
    """EDM's F(c_in x_sigma, c_noise) of a TrigFlow network (c_noise = t): -F_trig(c_in x_sigma,
    arctan(e^(4 c_noise) / sigma_d)), the inverse of `edm_network_as_trigflow`.

    EDM's c_in x_sigma is x_t / sigma_d and c_noise = ln(sigma) / 4, so the EDM denoiser of the
    result is cos t x_t - sigma_d sin t F_trig(x_t / sigma_d, t) (sCM App. B.2): a TrigFlow teacher
    samples with the EDM solvers, and EDM's loss lambda(sigma) ||D - x0||^2 is the TrigFlow
    diffusion loss ||sigma_d F_trig - (cos t z - sin t x0)||^2 over sigma_d^2 (ln sigma ~ N(P_mean,
    P_std^2) is sCM's tau), so an EDM run of this network is a TrigFlow teacher.
    """
    return lambda y, c_noise: -net(y, trigflow_time(jnp.exp(4 * c_noise), sigma_data))


# How a network takes time (config.model.scm_network): 'edm', c_noise = ln(sigma) / 4 (EDM
# Table 1), or 'trigflow', c_noise = t (sCM Sec. 4.1); each kind seen as a TrigFlow F (sCT,
# sCD) and as an EDM F (the teacher's loss and ODE), the conversions exact.
TRIGFLOW_NETWORKS: dict[str, Callable[[NetworkFn, float], NetworkFn]] = {
    "edm": edm_network_as_trigflow,
    "trigflow": lambda net, sigma_data: net,
}
EDM_NETWORKS: dict[str, Callable[[NetworkFn, float], NetworkFn]] = {
    "edm": lambda net, sigma_data: net,
    "trigflow": trigflow_network_as_edm,
}


def _network_as(table: dict, net: NetworkFn, kind: str, sigma_data: float) -> NetworkFn:
    if kind not in table:
        raise ValueError(f"Unknown network kind {kind!r} (config.model.scm_network); choose one of {sorted(table)}.")
    return table[kind](net, sigma_data)


def trigflow_network(net: NetworkFn, kind: str, sigma_data: float) -> NetworkFn:
    """TrigFlow's F(x_t / sigma_d, t) of a network of kind `kind` (a TRIGFLOW_NETWORKS key)."""
    return _network_as(TRIGFLOW_NETWORKS, net, kind, sigma_data)


def edm_network(net: NetworkFn, kind: str, sigma_data: float) -> NetworkFn:
    """EDM's F(c_in x_sigma, ln(sigma) / 4) of a network of kind `kind` (an EDM_NETWORKS key)."""
    return _network_as(EDM_NETWORKS, net, kind, sigma_data)


@dataclasses.dataclass(frozen=True)
class Parametrization:
    """Which scalings wrap the network: 'edm' (teacher denoiser), 'consistency' (f_theta) or
    'trigflow' (f_theta of sCM, its argument the TrigFlow time t rather than sigma)."""

    kind: str
    sigma_data: float
    sigma_min: float

    def scalings(self, sigma: jax.Array) -> Scalings:
        if self.kind == "edm":
            return edm_scalings(sigma, self.sigma_data)
        if self.kind == "consistency":
            return consistency_scalings(sigma, self.sigma_data, self.sigma_min)
        if self.kind == "trigflow":
            return trigflow_scalings(sigma, self.sigma_data)
        raise ValueError(f"Unknown parametrization {self.kind!r}; use 'edm', 'consistency' or 'trigflow'.")


def precondition(net: NetworkFn, param: Parametrization, x: jax.Array, sigma: jax.Array) -> jax.Array:
    """c_skip x + c_out F(c_in x, c_noise): the denoiser D or the consistency function f."""
    s = per_sample(jnp.broadcast_to(jnp.asarray(sigma, jnp.float32), x.shape[:1]), x)
    c_skip, c_out, c_in, c_noise = param.scalings(s)
    return c_skip * x + c_out * net(c_in * x, c_noise.reshape(-1))


def denoiser(net: NetworkFn, param: Parametrization) -> Denoiser:
    """The (x, sigma) -> x0_hat callable of a network, for the ODE, the samplers and the losses."""
    return lambda x, sigma: precondition(net, param, x, sigma)


def meanflow_network(net: NetworkFn) -> Callable[[jax.Array, jax.Array, jax.Array], jax.Array]:
    """MeanFlow's u(z_t, t, r) = F(z_t, (t, t - r)): the network takes z_t as it is and the two
    times t and h = t - r as c_noise [B, 2] (MeanFlow `u_fn`; t = 0 data, t = 1 noise)."""
    return lambda z, t, r: net(z, jnp.stack([t, t - r], axis=1))
