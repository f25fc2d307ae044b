"""Objectives: a config's choice of loss (`consistency_jax.core.losses`), with its draws and schedules.

`make_objective(config, model, teacher_model, dim)` returns an `Objective` whose pure `loss` the
train step differentiates. Each objective splits the step's key into (draw, noise, dropout),
draws its noise levels from its schedule, binds the network and calls its paper's loss.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from consistency_jax.core import guidance, losses, ode, sampling, schedules
from consistency_jax.core.parametrization import (
    Parametrization,
    denoiser,
    edm_network,
    edm_sigma,
    meanflow_network,
    trigflow_network,
    trigflow_time,
)
from consistency_jax.networks import logvar_fn, network_fn

DistanceFn = Callable[[Any, jax.Array, jax.Array], jax.Array]  # (variables, x, y) -> [B]
LossFn = Callable[..., tuple[jax.Array, dict[str, jax.Array]]]


@dataclasses.dataclass(frozen=True)
class Distance:
    """d(x, y) per sample: `fn(variables, x, y)`; the variables (LPIPS weights) enter the train
    step as an argument, never as constants baked into the compiled program."""

    fn: DistanceFn
    variables: Any = None

    def bound(self, frozen: dict) -> Callable[[jax.Array, jax.Array], jax.Array]:
        """d(x, y) with the variables the train step passes in `frozen["distance"]`."""
        return lambda x, y: self.fn(frozen["distance"], x, y)


def _pseudo_huber(o: ml_collections.ConfigDict, dim: int) -> Distance:
    c = o.huber_c if o.huber_c >= 0 else losses.ict_huber_c(dim)
    return Distance(lambda v, x, y: losses.pseudo_huber_distance(x, y, c))


def _lpips(o: ml_collections.ConfigDict, dim: int) -> Distance:
    """LPIPS-VGG after a bilinear resize to 224 (CM paper Sec. 5; images only)."""
    from consistency_jax.networks.pretrained.lpips import lpips_distance, lpips_variables  # loads weights

    return Distance(lpips_distance, lpips_variables())


# name -> factory(objective config, data dimension) -> Distance
DISTANCES: dict[str, Callable[[ml_collections.ConfigDict, int], Distance]] = {
    "l2": lambda o, dim: Distance(lambda v, x, y: losses.l2_distance(x, y)),
    "l1": lambda o, dim: Distance(lambda v, x, y: losses.l1_distance(x, y)),
    "pseudo_huber": _pseudo_huber,
    "lpips": _lpips,
}


@dataclasses.dataclass(frozen=True)
class FakeScore:
    """A second network trained beside the student by its own optimizer: rCM's fake score, the
    teacher's network from the teacher's parameters, denoising the student's one-step samples.
    `loss(fake_params, params, batch, key) -> (loss, metrics)` with the student's `params` fixed."""

    loss: LossFn
    optimizer: optax.GradientTransformation


@dataclasses.dataclass(frozen=True)
class Objective:
    """A loss `loss(params, target_params, frozen, batch, key, step) -> (loss, metrics)`.

    `frozen` holds the constant inputs: {"teacher": teacher params or None, **self.frozen} (the
    distance's variables), and "fake_score": its current parameters where the objective trains a
    `fake_score` beside the student. `target_ema(step)` is the rate mu of the target network, or
    None when the objective keeps none (the teacher, or a target that is the stop-gradient online
    network).
    """

    loss: LossFn
    target_ema: Callable[[jax.Array], jax.Array] | None
    needs_teacher: bool = False
    frozen: dict = dataclasses.field(default_factory=dict)
    fake_score: FakeScore | None = None

    def frozen_inputs(self, teacher_params: Any = None) -> dict:
        """The `frozen` argument of `loss` for this teacher."""
        return {"teacher": teacher_params, **self.frozen}


def _labels(config: ml_collections.ConfigDict, batch: dict[str, jax.Array]) -> jax.Array | None:
    return batch["label"] if config.data.conditional else None


def _grid(m: ml_collections.ConfigDict) -> losses.Grid:
    return (m.sigma_min, m.sigma_max, m.rho)


def edm_objective(config: ml_collections.ConfigDict, model: nn.Module, **_) -> Objective:
    """The teacher: EDM denoising score matching, ln sigma ~ N(p_mean, p_std^2) (EDM Sec. 5);
    with objective.label_dropout > 0 each label is the null label (index num_classes) with that
    probability, training the unconditional denoiser of classifier-free guidance too."""
    o, m = config.objective, config.model
    edm = Parametrization("edm", m.sigma_data, 0.0)
    drops = config.data.conditional and o.label_dropout > 0

    def loss(params, target_params, frozen, batch, key, step):
        x, labels = batch["x"], _labels(config, batch)
        k_sigma, k_noise, k_drop = jax.random.split(key, 3)
        if drops:  # its own key: runs without label dropout draw as before
            labels = guidance.drop_labels(jax.random.fold_in(key, 3), labels, o.label_dropout, model.num_classes)
        sigma = schedules.lognormal_sigma(k_sigma, x.shape[:1], o.p_mean, o.p_std)
        n = jax.random.normal(k_noise, x.shape)
        net = network_fn(model, params, labels, train=True, dropout_key=k_drop)
        net = edm_network(net, m.scm_network, m.sigma_data)  # a TrigFlow teacher's too
        value = losses.edm_loss(denoiser(net, edm), x, sigma, n, m.sigma_data)
        return value, {"loss": value}

    return Objective(loss=loss, target_ema=None)


def _target(params: Any, target_params: Any) -> Any:
    """The target network's parameters: its own, or sg(online) when the objective keeps none."""
    return target_params if target_params is not None else params


def _student(config: ml_collections.ConfigDict, model: nn.Module, dim: int):
    """(distance, weighting, f(params, labels, key)) shared by the consistency objectives."""
    o, m = config.objective, config.model
    distance = make_distance(o, dim)
    if o.weighting not in losses.WEIGHTINGS:
        raise ValueError(
            f"Unknown weighting {o.weighting!r} (config.objective.weighting); "
            f"choose one of {sorted(losses.WEIGHTINGS)}."
        )
    cm = Parametrization("consistency", m.sigma_data, m.sigma_min)

    def f(params, labels, dropout_key, w=None):
        net = network_fn(model, params, labels, train=True, dropout_key=dropout_key, guidance=w)
        return denoiser(net, cm)

    return distance, losses.WEIGHTINGS[o.weighting], f


def teacher_denoiser(
    teacher_model: nn.Module, params: Any, labels: jax.Array, w: float | jax.Array, sigma_data: float,
    kind: str = "edm",
) -> ode.Denoiser:
    """The EDM teacher's denoiser guided at w (`guidance.guided_denoiser`: the conditional one
    at w = 1, its null label the unconditional one), as the loss and the sampler use it; `kind`:
    how its network takes time (config.model.scm_network)."""
    edm = Parametrization("edm", sigma_data, 0.0)
    bind = lambda labels: edm_network(network_fn(teacher_model, params, labels), kind, sigma_data)
    cond = denoiser(bind(labels), edm)
    uncond = denoiser(bind(None), edm)
    return guidance.guided_denoiser(cond, uncond, w)


def cd_objective(
    config: ml_collections.ConfigDict, model: nn.Module, teacher_model: nn.Module, dim: int, **_
) -> Objective:
    """CD (CM Alg. 2): a uniform pair of the fixed N-point grid, the teacher's ODE step below.
    Guided CD (objective lcm, LCM Alg. 1): w ~ U[guidance_min, guidance_max] per example, the
    teacher's guided ODE step from grid point n + k to n (k = objective.skip), the student
    f(x, t, w) (network.guidance_embedding) against its target's f(x_hat_{t_n}, t_n, w); CD is
    its w = 1, k = 1 case without the w-embedding."""
    o, m = config.objective, config.model
    distance, weighting, f = _student(config, model, dim)
    step_fn = ode.solver_step(o.solver)
    grid = _grid(m)
    mu = jnp.asarray(o.target_ema, jnp.float32)  # 0: target = sg(online)
    guided = o.name == "lcm"
    fixed_w = o.guidance_min == o.guidance_max
    takes_w = config.network.guidance_embedding

    def loss(params, target_params, frozen, batch, key, step):
        x, labels = batch["x"], _labels(config, batch)
        k_idx, k_noise, k_drop = jax.random.split(key, 3)
        n_scales = jnp.asarray(o.num_scales, jnp.int32)
        w_each, w = None, 1.0
        if guided:
            t_hi, t_lo, i = losses.skip_grid_pair(k_idx, n_scales, o.skip, grid, x.shape[0])
            w_each = guidance.uniform_guidance(jax.random.fold_in(key, 3), x.shape[0], o.guidance_min, o.guidance_max)
            w = float(o.guidance_min) if fixed_w else w_each
        else:
            t_hi, t_lo, i = losses.uniform_grid_pair(k_idx, n_scales, grid, x.shape[0])
        teacher = teacher_denoiser(teacher_model, frozen["teacher"], labels, w, m.sigma_data)
        solve = lambda x_hi: losses.teacher_ode_step(
            step_fn, teacher, x_hi, i, n_scales, grid, o.teacher_substeps, o.skip
        )
        w_in = w_each if takes_w else None
        value = losses.cd_loss(
            f(params, labels, k_drop, w_in), f(_target(params, target_params), labels, k_drop, w_in), solve, x,
            jax.random.normal(k_noise, x.shape), t_hi, t_lo, weighting(t_hi, t_lo), distance.bound(frozen),
        )
        return value, {"loss": value, "target_ema": mu, "num_scales": n_scales}

    return Objective(
        loss=loss, target_ema=(lambda step: mu) if o.target_ema > 0 else None, needs_teacher=True,
        frozen={"distance": distance.variables},
    )


def ct_objective(config: ml_collections.ConfigDict, model: nn.Module, dim: int, **_) -> Objective:
    """CT (CM Alg. 3: uniform pairs, N(k) and the target EMA mu(k) of CM App. C) and iCT (iCT
    Sec. 3: lognormal pairs, N(k) doubling, target = sg(online))."""
    o, m = config.objective, config.model
    distance, weighting, f = _student(config, model, dim)
    grid, total = _grid(m), config.train.num_steps
    is_ict = o.name == "ict"

    def loss(params, target_params, frozen, batch, key, step):
        x, labels = batch["x"], _labels(config, batch)
        k_idx, k_noise, k_drop = jax.random.split(key, 3)
        if is_ict:
            n_scales = schedules.ict_num_scales(step, total, o.s0, o.s1)
            t_hi, t_lo = losses.lognormal_grid_pair(
                k_idx, n_scales, o.s1 + 1, grid, o.p_mean, o.p_std, x.shape[0]
            )
        else:
            n_scales = schedules.ct_num_scales(step, total, o.s0, o.s1)
            t_hi, t_lo, _ = losses.uniform_grid_pair(k_idx, n_scales, grid, x.shape[0])
        value = losses.ct_loss(
            f(params, labels, k_drop), f(_target(params, target_params), labels, k_drop), x,
            jax.random.normal(k_noise, x.shape), t_hi, t_lo, weighting(t_hi, t_lo), distance.bound(frozen),
        )
        mu = target_ema(step) if target_ema is not None else jnp.zeros(())
        return value, {"loss": value, "target_ema": mu, "num_scales": n_scales}

    target_ema = None
    if not is_ict:  # CM App. C: mu(k) = exp(s0 ln mu0 / (N(k) - 1))
        target_ema = lambda step: schedules.ct_target_ema(
            schedules.ct_num_scales(step, total, o.s0, o.s1), o.s0, o.mu0
        )
    return Objective(loss=loss, target_ema=target_ema, frozen={"distance": distance.variables})


def ect_objective(config: ml_collections.ConfigDict, model: nn.Module, dim: int, **_) -> Objective:
    """ECT (ECT Sec. 3): CT's loss on continuous pairs (t, r), the gap shrinking in stages."""
    o, m = config.objective, config.model
    distance, weighting, f = _student(config, model, dim)
    grid = _grid(m)

    def loss(params, target_params, frozen, batch, key, step):
        x, labels = batch["x"], _labels(config, batch)
        k_idx, k_noise, k_drop = jax.random.split(key, 3)
        stage = schedules.ect_stage(step, o.ect_stage_steps)
        t, r = losses.ect_pair(k_idx, stage, grid, o.p_mean, o.p_std, o.ect_q, o.ect_k, o.ect_b, x.shape[0])
        value = losses.ct_loss(
            f(params, labels, k_drop), f(params, labels, k_drop), x,
            jax.random.normal(k_noise, x.shape), t, r, weighting(t, r), distance.bound(frozen),
        )
        return value, {"loss": value, "target_ema": jnp.zeros(()), "ect_stage": stage}

    return Objective(loss=loss, target_ema=None, frozen={"distance": distance.variables})


def scm_objective(
    config: ml_collections.ConfigDict, model: nn.Module, teacher_model: nn.Module | None = None, **_
) -> Objective:
    """sCT and sCD (sCM Alg. 1): t = arctan(e^tau / sigma_d), the tangent of F_theta- = sg(F_theta)
    by one JVP (the same dropout key as the primal pass), dx_t/dt from the data (sCT) or from the
    EDM teacher converted to TrigFlow (sCD); the adaptive weighting w_phi(t) where the network has
    its head (config.network.logvar_head). sCD with objective.dmd_weight > 0 adds rCM's DMD term
    once the tangent is warmed up, with a fake score trained beside the student (`FakeScore`)."""
    o, m = config.objective, config.model
    sd = m.sigma_data
    distils = o.name == "scd"
    as_trigflow = lambda net: trigflow_network(net, m.scm_network, sd)
    adaptive = config.network.logvar_head
    regularised = distils and o.dmd_weight > 0
    t_max = float(trigflow_time(m.sigma_max, sd))  # where the one-step samples start

    def loss(params, target_params, frozen, batch, key, step):
        x, labels = batch["x"], _labels(config, batch)
        k_t, k_noise, k_drop = jax.random.split(key, 3)
        t = losses.scm_time(k_t, x.shape[0], o.p_mean, o.p_std, sd)
        z = sd * jax.random.normal(k_noise, x.shape)
        bind = lambda p: as_trigflow(network_fn(model, p, labels, train=True, dropout_key=k_drop))
        if distils:
            # the teacher's network is of the student's kind (load_teacher checks it)
            teacher = as_trigflow(network_fn(teacher_model, frozen["teacher"], labels))
            velocity = lambda x_t, t: ode.trigflow_drift(teacher, x_t, t, sd)
        else:
            velocity = lambda x_t, t: losses.sct_velocity(x, z, t)
        warmup = jnp.minimum(1.0, step / o.tangent_warmup_steps) if o.tangent_warmup_steps else 1.0
        warmup = jnp.asarray(warmup, jnp.float32)
        logvar = logvar_fn(model, params)(t) if adaptive else jnp.zeros_like(t)
        prior = 1 / edm_sigma(t, sd) if o.prior_weighting else jnp.ones_like(t)
        value, tangent_norm = losses.scm_loss(
            bind(params), bind(jax.lax.stop_gradient(params)), velocity, x, z, t, warmup,
            o.tangent_c, o.tangent_rms, logvar, prior, sd,
        )
        metrics = {"loss": value, "target_ema": jnp.zeros(()), "tangent_warmup": warmup, "tangent_norm": tangent_norm}
        if regularised:
            k_gen, k_dmd = jax.random.split(jax.random.fold_in(key, 3))
            real = teacher_denoiser(teacher_model, frozen["teacher"], labels, 1, sd, m.scm_network)
            fake = teacher_denoiser(teacher_model, frozen["fake_score"], labels, 1, sd, m.scm_network)
            dmd_term = lambda p: losses.dmd_loss(
                student_samples(p, labels, k_gen, x.shape, dropout_key=k_drop), real, fake, *dmd_draws(k_dmd, x.shape)
            )
            # rCM: after the warm-up; before it the term (and its student pass) is not computed
            dmd = jax.lax.cond(step >= o.tangent_warmup_steps, dmd_term, lambda p: jnp.zeros(()), params)
            value = value + o.dmd_weight * dmd
            metrics = dict(metrics, loss=value, dmd=dmd)
        return value, metrics

    def student_samples(params, labels, key, shape, dropout_key=None):
        """The student's one-step samples x_hat = f(x_T, t_max), as its sampler draws them (with
        dropout from `dropout_key` when given)."""
        train = dropout_key is not None
        f = denoiser(
            as_trigflow(network_fn(model, params, labels, train=train, dropout_key=dropout_key)),
            Parametrization("trigflow", sd, 0.0),
        )
        return sampling.trigflow_sample(f, key, shape, (t_max,), sd, m.sigma_max)

    def dmd_draws(key, shape):
        """(sigma, n): the noise levels ln sigma ~ N(dmd_p_mean, dmd_p_std^2) of the DMD term and
        of the fake score's denoising loss, and the noise."""
        k_sigma, k_noise = jax.random.split(key)
        sigma = schedules.lognormal_sigma(k_sigma, shape[:1], o.dmd_p_mean, o.dmd_p_std)
        return sigma, jax.random.normal(k_noise, shape)

    def fake_score_loss(fake_params, params, batch, key):
        """EDM's denoising loss of the fake score on the student's one-step samples (DMD, rCM)."""
        labels = _labels(config, batch)
        k_gen, k_dmd, k_drop = jax.random.split(key, 3)
        x_hat = jax.lax.stop_gradient(student_samples(params, labels, k_gen, batch["x"].shape))
        net = network_fn(teacher_model, fake_params, labels, train=True, dropout_key=k_drop)
        fake = denoiser(edm_network(net, m.scm_network, sd), Parametrization("edm", sd, 0.0))
        value = losses.edm_loss(fake, x_hat, *dmd_draws(k_dmd, x_hat.shape), sd)
        return value, {"fake_score_loss": value}

    fake_score = None
    if regularised:  # rCM's fake-score Adam has no momentum: betas (0, 0.999)
        fake_score = FakeScore(fake_score_loss, optax.adam(o.fake_score_lr, b1=0.0, b2=0.999))
    return Objective(loss=loss, target_ema=None, needs_teacher=distils, fake_score=fake_score)


def meanflow_objective(config: ml_collections.ConfigDict, model: nn.Module, **_) -> Objective:
    """MeanFlow: the average velocity u(z_t, t, r) against its JVP target with the conditional
    velocity e - x, adaptively weighted (MeanFlow `MeanFlow.forward`); from data alone."""
    o = config.objective

    def loss(params, target_params, frozen, batch, key, step):
        x, labels = batch["x"], _labels(config, batch)
        k_t, k_noise, k_drop = jax.random.split(key, 3)
        t, r = losses.meanflow_pair(k_t, x.shape[0], o.p_mean, o.p_std, o.meanflow_equal_fraction)
        e = jax.random.normal(k_noise, x.shape)
        u = meanflow_network(network_fn(model, params, labels, train=True, dropout_key=k_drop))
        value = losses.meanflow_loss(
            u, lambda z, t: e - x, x, e, t, r, o.meanflow_norm_p, o.meanflow_norm_eps
        )
        return value, {"loss": value, "target_ema": jnp.zeros(())}

    return Objective(loss=loss, target_ema=None)


def autoencoder_objective(config: ml_collections.ConfigDict, model: nn.Module, **_) -> Objective:
    """An autoencoder run: the mean squared reconstruction error of network.name='autoencoder'
    (its F(x) is decode(encode(x))), a plain deterministic autoencoder."""

    def loss(params, target_params, frozen, batch, key, step):
        x = batch["x"]
        value = jnp.mean(losses.l2_distance(network_fn(model, params)(x, jnp.zeros(x.shape[:1])), x))
        return value, {"loss": value}

    return Objective(loss=loss, target_ema=None)


OBJECTIVES: dict[str, Callable[..., Objective]] = {
    "edm": edm_objective,
    "cd": cd_objective,
    "lcm": cd_objective,
    "ct": ct_objective,
    "ict": ct_objective,
    "ect": ect_objective,
    "sct": scm_objective,
    "scd": scm_objective,
    "meanflow": meanflow_objective,
    "autoencoder": autoencoder_objective,
}


def needs_teacher(name: str) -> bool:
    """Whether objective `name` distils a teacher's ODE (CD's lower point, sCD's dx_t/dt)."""
    return name in ("cd", "lcm", "scd")


def starts_from_teacher(config: ml_collections.ConfigDict) -> bool:
    """Whether the run starts from the EDM run in objective.teacher_workdir: a CD student, or
    consistency training (CT, iCT, ECT, sCT) from a diffusion model (ECT's diffusion pretraining)."""
    return config.objective.name != "edm" and config.objective.init_from_teacher


def make_distance(o: ml_collections.ConfigDict, dim: int) -> Distance:
    """The distance named by `o.distance` (config.objective) for data of `dim` dimensions."""
    if o.distance not in DISTANCES:
        raise ValueError(
            f"Unknown distance {o.distance!r} (config.objective.distance); "
            f"choose one of {sorted(DISTANCES)}."
        )
    return DISTANCES[o.distance](o, dim)


def make_objective(
    config: ml_collections.ConfigDict,
    model: nn.Module,
    teacher_model: nn.Module | None = None,
    dim: int = 1,
) -> Objective:
    """The objective named by config.objective.name (an OBJECTIVES key)."""
    name = config.objective.name
    if name not in OBJECTIVES:
        raise ValueError(
            f"Unknown objective {name!r} (config.objective.name); choose one of {sorted(OBJECTIVES)}."
        )
    return OBJECTIVES[name](config, model, teacher_model=teacher_model, dim=dim)
