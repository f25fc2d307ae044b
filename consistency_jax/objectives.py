"""Training objectives: EDM denoising score matching (the teacher), CD, CT, iCT and ECT.

`make_objective(config, model, teacher_model)` returns an `Objective` whose pure `loss` the train
step differentiates. Distances for the consistency losses live in one registry, `DISTANCES`.
"""

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from consistency_jax import ode, schedules
from consistency_jax.parametrization import Parametrization, bind, edm_scalings, precondition

DistanceFn = Callable[[Any, jax.Array, jax.Array], jax.Array]  # (variables, x, y) -> [B]


def _flat(x: jax.Array) -> jax.Array:
    return x.reshape(x.shape[0], -1)


def l2_distance(x: jax.Array, y: jax.Array) -> jax.Array:
    """Per-sample mean squared difference (the official CM code's 'l2')."""
    return jnp.mean(_flat(x - y) ** 2, axis=1)


def l1_distance(x: jax.Array, y: jax.Array) -> jax.Array:
    """Per-sample mean absolute difference (the official CM code's 'l1')."""
    return jnp.mean(jnp.abs(_flat(x - y)), axis=1)


def pseudo_huber_distance(x: jax.Array, y: jax.Array, c: float) -> jax.Array:
    """sqrt(||x - y||_2^2 + c^2) - c on the per-sample norm (iCT Sec. 3.3)."""
    return jnp.sqrt(jnp.sum(_flat(x - y) ** 2, axis=1) + c**2) - c


def ict_huber_c(dim: int) -> float:
    """c = 0.00054 sqrt(d) (iCT Sec. 3.3)."""
    return 0.00054 * math.sqrt(dim)


@dataclasses.dataclass(frozen=True)
class Distance:
    """d(x, y) per sample: `fn(variables, x, y)`; the variables (LPIPS weights) enter the train
    step as an argument, never as constants baked into the compiled program."""

    fn: DistanceFn
    variables: Any = None


def _pseudo_huber(cfg: ml_collections.ConfigDict, dim: int) -> Distance:
    c = cfg.huber_c or ict_huber_c(dim)
    return Distance(lambda v, x, y: pseudo_huber_distance(x, y, c))


def _lpips(cfg: ml_collections.ConfigDict, dim: int) -> Distance:
    """LPIPS-VGG after a bilinear resize to 224 (CM paper Sec. 5; images only)."""
    from consistency_jax.evaluation.lpips import lpips_distance, lpips_variables  # loads weights

    return Distance(lpips_distance, lpips_variables())


# name -> factory(objective config, data dimension) -> Distance
DISTANCES: dict[str, Callable[[ml_collections.ConfigDict, int], Distance]] = {
    "l2": lambda cfg, dim: Distance(lambda v, x, y: l2_distance(x, y)),
    "l1": lambda cfg, dim: Distance(lambda v, x, y: l1_distance(x, y)),
    "pseudo_huber": _pseudo_huber,
    "lpips": _lpips,
}


def make_distance(cfg: ml_collections.ConfigDict, dim: int) -> Distance:
    """The distance named by `cfg.distance` for data of `dim` dimensions."""
    if cfg.distance not in DISTANCES:
        raise ValueError(
            f"Unknown distance {cfg.distance!r} (config.objective.distance); "
            f"choose one of {sorted(DISTANCES)}."
        )
    return DISTANCES[cfg.distance](cfg, dim)


@dataclasses.dataclass(frozen=True)
class Objective:
    """A loss `loss(params, target_params, frozen, batch, key, step) -> (loss, metrics)`.

    `frozen` holds the constant inputs: {"teacher": teacher params or None, **self.frozen} (the
    distance's variables). `target_ema(step)` is the rate mu of the target network, or None when
    the objective keeps none (the teacher, or a target that is the stop-gradient online network).
    """

    loss: Callable[..., tuple[jax.Array, dict[str, jax.Array]]]
    target_ema: Callable[[jax.Array], jax.Array] | None
    needs_teacher: bool = False
    frozen: dict = dataclasses.field(default_factory=dict)

    def frozen_inputs(self, teacher_params: Any = None) -> dict:
        """The `frozen` argument of `loss` for this teacher."""
        return {"teacher": teacher_params, **self.frozen}


def _labels(batch: dict[str, jax.Array], conditional: bool) -> jax.Array | None:
    return batch["label"] if conditional else None


def edm_objective(config: ml_collections.ConfigDict, model: nn.Module, **_) -> Objective:
    """EDM denoising score matching: E lambda(sigma) ||D(y + sigma n, sigma) - y||^2 (EDM eq. 2, 8)."""
    o, m = config.objective, config.model
    edm = Parametrization("edm", m.sigma_data, 0.0)

    def loss(params, target_params, frozen, batch, key, step):
        x = batch["x"]
        k_sigma, k_noise, k_drop = jax.random.split(key, 3)
        sigma = schedules.lognormal_sigma(k_sigma, x.shape[:1], o.p_mean, o.p_std)
        noise = jax.random.normal(k_noise, x.shape) * sigma.reshape((-1,) + (1,) * (x.ndim - 1))
        labels = _labels(batch, config.data.conditional)
        denoised = precondition(
            model, edm, params, x + noise, sigma, labels, train=True, dropout_key=k_drop
        )
        weight = edm_scalings(sigma, m.sigma_data)[1] ** -2  # lambda(sigma) = 1 / c_out^2
        value = jnp.mean(weight * l2_distance(denoised, x))
        return value, {"loss": value}

    return Objective(loss=loss, target_ema=None)


@dataclasses.dataclass(frozen=True)
class ConsistencySpec:
    """What distinguishes CD, CT and iCT: curriculum, index sampling, x at the lower sigma, target."""

    curriculum: str  # fixed | ct | ict | ect (continuous sigmas, gap shrinking in stages)
    index_sampling: str  # uniform | lognormal (grid index) | continuous (ECT: ln t lognormal)
    lower_point: str  # teacher (one ODE step) | data (x + t_lo z, same z)
    target: str  # ema (target network, rate from config or CT's mu(k)) | online (sg of online)


CONSISTENCY_SPECS = {
    "cd": ConsistencySpec("fixed", "uniform", "teacher", "ema"),  # CM Alg. 2
    "ct": ConsistencySpec("ct", "uniform", "data", "ema"),  # CM Alg. 3
    "ict": ConsistencySpec("ict", "lognormal", "data", "online"),  # iCT Sec. 3
    "ect": ConsistencySpec("ect", "continuous", "data", "online"),  # ECT Sec. 3
}


def needs_teacher(name: str) -> bool:
    """Whether objective `name` takes its lower point from a teacher's ODE step (distillation)."""
    spec = CONSISTENCY_SPECS.get(name)
    return spec is not None and spec.lower_point == "teacher"


def _num_scales(spec: ConsistencySpec, o: ml_collections.ConfigDict, step, total: int) -> jax.Array:
    if spec.curriculum == "fixed":
        return jnp.asarray(o.num_scales, jnp.int32)
    if spec.curriculum == "ct":
        return schedules.ct_num_scales(step, total, o.s0, o.s1)
    return schedules.ict_num_scales(step, total, o.s0, o.s1)


def _max_scales(spec: ConsistencySpec, o: ml_collections.ConfigDict) -> int:
    return o.num_scales if spec.curriculum == "fixed" else o.s1 + 1


def _grid_pair(
    spec: ConsistencySpec, o: ml_collections.ConfigDict, grid: tuple, key: jax.Array, step, total: int,
    batch: int,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """(t_{n+1}, t_n, n, N(k)): a pair of the N(k)-point Karras grid, its index n uniform (CM) or
    lognormal (iCT), drawn independently or, with objective.stratified, stratified over the batch."""
    n_scales = _num_scales(spec, o, step, total)
    if spec.index_sampling == "uniform":
        u = jax.random.uniform(key, (batch,))
        i = jnp.minimum(jnp.floor(u * (n_scales - 1)), n_scales - 2)
    else:
        logits = schedules.ict_index_logits(n_scales, _max_scales(spec, o), *grid, o.p_mean, o.p_std)
        if o.stratified:
            i = schedules.stratified_categorical(key, logits, batch)
        else:
            i = jax.random.categorical(key, logits, shape=(batch,))
    t_hi, t_lo = (schedules.karras_sigma(i + d, n_scales, *grid) for d in (0, 1))
    return t_hi, t_lo, i, n_scales


def _continuous_pair(
    o: ml_collections.ConfigDict, grid: tuple, key: jax.Array, step, batch: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(t, r, stage): ln t ~ N(p_mean, p_std^2) clipped to [sigma_min, sigma_max], r from ECT's
    mapping at the curriculum's stage, at least sigma_min (where f is the identity)."""
    sigma_min, sigma_max, _ = grid
    t = jnp.clip(schedules.lognormal_sigma(key, (batch,), o.p_mean, o.p_std), sigma_min, sigma_max)
    stage = schedules.ect_stage(step, o.ect_stage_steps)
    r = jnp.maximum(schedules.ect_lower_sigma(t, stage, o.ect_q, o.ect_k, o.ect_b), sigma_min)
    return t, r, stage


# lambda(t_n) of a pair (t_hi, t_lo): uniform (CM), or 1 / (sigma_{i+1} - sigma_i) (iCT Sec. 3.1)
WEIGHTINGS: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "uniform": lambda t_hi, t_lo: jnp.ones_like(t_hi),
    "ict": lambda t_hi, t_lo: 1.0 / (t_hi - t_lo),
}


def consistency_objective(
    config: ml_collections.ConfigDict,
    model: nn.Module,
    teacher_model: nn.Module | None = None,
    dim: int = 1,
) -> Objective:
    """E lambda(t_n) d(f_theta(x + t_{n+1} z, t_{n+1}), sg f_theta-(x_hat_{t_n}, t_n)) (CM eq. 7, 10)."""
    o, m = config.objective, config.model
    spec = CONSISTENCY_SPECS[o.name]
    cm = Parametrization("consistency", m.sigma_data, m.sigma_min)
    edm = Parametrization("edm", m.sigma_data, 0.0)
    distance = make_distance(o, dim)
    if o.weighting not in WEIGHTINGS:
        raise ValueError(
            f"Unknown weighting {o.weighting!r} (config.objective.weighting); "
            f"choose one of {sorted(WEIGHTINGS)}."
        )
    total = config.train.num_steps
    grid = (m.sigma_min, m.sigma_max, m.rho)
    teacher_step = ode.solver_step(o.solver)

    def teacher_solve(teacher, x_hi, i, n_scales):
        """x_hat_{t_n}: the teacher's ODE from t_{n+1} to t_n in `teacher_substeps` solver steps
        along the (N - 1) K + 1 point Karras grid that refines the N-point one (K = 1: CM eq. 6)."""
        k = o.teacher_substeps
        fine_n = (n_scales - 1) * k + 1
        x = x_hi
        for j in range(k):
            s, s_next = (schedules.karras_sigma(i * k + j + d, fine_n, *grid) for d in (0, 1))
            x = teacher_step(teacher, x, s, s_next)
        return x

    def loss(params, target_params, frozen, batch, key, step):
        x = batch["x"]
        labels = _labels(batch, config.data.conditional)
        k_idx, k_noise, k_drop = jax.random.split(key, 3)
        if spec.index_sampling == "continuous":
            t_hi, t_lo, stage = _continuous_pair(o, grid, k_idx, step, x.shape[0])
            schedule = {"ect_stage": stage}
        else:
            t_hi, t_lo, i, n_scales = _grid_pair(spec, o, grid, k_idx, step, total, x.shape[0])
            schedule = {"num_scales": n_scales}
        z = jax.random.normal(k_noise, x.shape)
        bcast = lambda t: t.reshape((-1,) + (1,) * (x.ndim - 1))  # noqa: E731
        x_hi = x + bcast(t_hi) * z
        if spec.lower_point == "teacher":
            teacher = bind(teacher_model, edm, frozen["teacher"], labels)
            x_lo = jax.lax.stop_gradient(teacher_solve(teacher, x_hi, i, n_scales))
        else:
            x_lo = x + bcast(t_lo) * z  # the Euler step of the data's own ODE (CM eq. 9)
        f_online = precondition(model, cm, params, x_hi, t_hi, labels, train=True, dropout_key=k_drop)
        target = target_params if target_params is not None else params
        f_target = jax.lax.stop_gradient(
            precondition(model, cm, target, x_lo, t_lo, labels, train=True, dropout_key=k_drop)
        )
        # a pair clipped to t = r = sigma_min (ECT's t below sigma_min) carries no signal
        weight = jnp.where(t_hi > t_lo, WEIGHTINGS[o.weighting](t_hi, t_lo), 0.0)
        value = jnp.mean(weight * distance.fn(frozen["distance"], f_online, f_target))
        mu = target_ema(step) if target_ema is not None else jnp.zeros(())
        return value, {"loss": value, "target_ema": mu, **schedule}

    target_ema = None
    if spec.target == "ema" and spec.curriculum == "ct":
        target_ema = lambda step: schedules.ct_target_ema(  # noqa: E731
            schedules.ct_num_scales(step, total, o.s0, o.s1), o.s0, o.mu0
        )
    elif spec.target == "ema" and o.target_ema > 0:
        target_ema = lambda step: jnp.asarray(o.target_ema, jnp.float32)  # noqa: E731
    return Objective(
        loss=loss,
        target_ema=target_ema,
        needs_teacher=needs_teacher(o.name),
        frozen={"distance": distance.variables},
    )


OBJECTIVES = {"edm": edm_objective, **{name: consistency_objective for name in CONSISTENCY_SPECS}}


def make_objective(
    config: ml_collections.ConfigDict,
    model: nn.Module,
    teacher_model: nn.Module | None = None,
    dim: int = 1,
) -> Objective:
    """The objective named by config.objective.name ('edm', 'cd', 'ct', 'ict', 'ect')."""
    name = config.objective.name
    if name not in OBJECTIVES:
        raise ValueError(
            f"Unknown objective {name!r} (config.objective.name); choose one of {sorted(OBJECTIVES)}."
        )
    return OBJECTIVES[name](config, model, teacher_model=teacher_model, dim=dim)
