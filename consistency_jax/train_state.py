"""The train state, the optimizer, and the pure train step `state, metrics = train_step(state, batch, rng)`."""

from collections.abc import Callable
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from consistency_jax.objectives import Objective

PyTree = Any


@flax.struct.dataclass
class TrainState:
    """Online, target (None when the objective keeps none) and sampling-EMA parameters, in one state."""

    step: jax.Array
    params: PyTree
    target_params: PyTree
    ema_params: PyTree
    opt_state: PyTree


OPTIMIZERS = {"adam": optax.scale_by_adam, "radam": optax.scale_by_radam}


def learning_rate(cfg: ml_collections.ConfigDict) -> optax.ScalarOrSchedule:
    """Linear warm-up from 0 over `warmup_steps`, then constant, or cosine decay to 0 over the next
    `decay_steps` when that is set (config.optim)."""
    if not cfg.warmup_steps and not cfg.decay_steps:
        return cfg.lr  # a constant adds no step counter to the optimizer state
    decay = (
        optax.cosine_decay_schedule(cfg.lr, cfg.decay_steps)
        if cfg.decay_steps
        else optax.constant_schedule(cfg.lr)
    )
    if not cfg.warmup_steps:
        return decay
    warmup = optax.linear_schedule(0.0, cfg.lr, cfg.warmup_steps)
    return optax.join_schedules([warmup, decay], [cfg.warmup_steps])


def make_optimizer(cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Clip (optional) -> Adam/RAdam -> weight decay -> learning-rate schedule (config.optim)."""
    if cfg.name not in OPTIMIZERS:
        raise ValueError(
            f"Unknown optimizer {cfg.name!r} (config.optim.name); choose one of {sorted(OPTIMIZERS)}."
        )
    parts = [optax.clip_by_global_norm(cfg.grad_clip)] if cfg.grad_clip > 0 else []
    parts += [
        OPTIMIZERS[cfg.name](b1=cfg.b1, b2=cfg.b2, eps=cfg.eps),
        optax.add_decayed_weights(cfg.weight_decay),
        optax.scale_by_learning_rate(learning_rate(cfg)),
    ]
    return optax.chain(*parts)


def init_params(model: nn.Module, key: jax.Array, example_x: jax.Array, num_classes: int) -> PyTree:
    """Network parameters for inputs shaped like `example_x` ([B, ...])."""
    labels = jnp.zeros(example_x.shape[:1], jnp.int32) if num_classes else None
    c_noise = jnp.zeros(example_x.shape[:1])
    return model.init({"params": key}, example_x, c_noise, labels, train=False)["params"]


def create_train_state(
    params: PyTree,
    optimizer: optax.GradientTransformation,
    objective: Objective,
    ema_params: PyTree | None = None,
) -> TrainState:
    """A fresh state at step 0; target and EMA start as copies of the online parameters."""
    copy = lambda tree: jax.tree.map(jnp.copy, tree)  # noqa: E731
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        target_params=copy(params) if objective.target_ema is not None else None,
        ema_params=copy(ema_params if ema_params is not None else params),
        opt_state=optimizer.init(params),
    )


def ema_update(ema: PyTree, new: PyTree, rate: jax.Array) -> PyTree:
    """ema <- rate ema + (1 - rate) new."""
    return jax.tree.map(lambda e, p: rate * e + (1 - rate) * p, ema, new)


def warmed_up_ema_rate(rate: float, step: jax.Array) -> jax.Array:
    """min(rate, (1 + k) / (10 + k)): early on the EMA follows the parameters instead of
    remembering their initial values for ~1/(1 - rate) steps."""
    k = step.astype(jnp.float32)
    return jnp.minimum(rate, (1 + k) / (10 + k))


def make_train_step(
    objective: Objective,
    optimizer: optax.GradientTransformation,
    ema_rate: float,
    teacher_params: PyTree | None = None,
    ema_warmup: bool = False,
    skip_nonfinite: bool = True,
    shardings: tuple[PyTree, jax.sharding.Sharding] | None = None,
    steps_per_call: int = 1,
) -> Callable[[TrainState, dict, jax.Array], tuple[TrainState, dict]]:
    """The jitted, state-donating `train_step(state, batch, rng) -> (state, metrics)`.

    With `steps_per_call` k > 1 one call makes k steps (`lax.scan`): the batch's leaves and `rng`
    carry a leading axis of k (the steps' batches and keys) and so do the metrics.

    The target (if any) and sampling EMA are updated from the post-step parameters. A step whose
    loss or gradient is not finite leaves the state unchanged (metrics['finite'] = 0) when
    `skip_nonfinite`, so the loop can stop or skip without a corrupted state.
    On a mesh the state, teacher and batch arrive placed (the batch split over the devices) and
    `shardings` = (the state's shardings, a replicated sharding of the mesh): the new state keeps
    the old one's layout, the metrics and the distance's variables are replicated, and XLA
    inserts the gradient reductions.
    """
    frozen = objective.frozen_inputs(teacher_params)
    state_shardings, replicated = shardings or (None, None)
    if replicated is not None:
        frozen = {**frozen, **jax.device_put(objective.frozen, replicated)}

    def step_fn(state: TrainState, batch: dict, rng: jax.Array, frozen: dict) -> tuple:
        grad_fn = jax.value_and_grad(objective.loss, has_aux=True)
        (loss, metrics), grads = grad_fn(
            state.params, state.target_params, frozen, batch, rng, state.step
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        target = state.target_params
        if objective.target_ema is not None:
            target = ema_update(target, params, objective.target_ema(state.step))
        new = TrainState(
            step=state.step + 1,
            params=params,
            target_params=target,
            ema_params=ema_update(
                state.ema_params, params,
                warmed_up_ema_rate(ema_rate, state.step) if ema_warmup else ema_rate,
            ),
            opt_state=opt_state,
        )
        finite = jnp.isfinite(loss) & jnp.isfinite(optax.global_norm(grads))
        if skip_nonfinite:
            new = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, state)
            new = new.replace(step=state.step + 1)
        metrics = dict(metrics, grad_norm=optax.global_norm(grads), finite=finite.astype(jnp.float32))
        return new, metrics

    fn = step_fn if steps_per_call == 1 else scanned(step_fn, steps_per_call)
    jitted = jax.jit(fn, donate_argnums=(0,), out_shardings=(state_shardings, replicated))
    return lambda state, batch, rng: jitted(state, batch, rng, frozen)


def scanned(step_fn: Callable, steps: int) -> Callable:
    """`step_fn(state, batch, rng, frozen)` run over `steps` stacked batches and keys by lax.scan."""

    def run(state: TrainState, batches: dict, rngs: jax.Array, frozen: dict) -> tuple:
        body = lambda state, xs: step_fn(state, *xs, frozen)  # noqa: E731
        return jax.lax.scan(body, state, (batches, rngs), length=steps)

    return run
