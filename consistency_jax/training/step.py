"""The pure train step `state, metrics = train_step(state, batch, rng)`: one jit, any mesh."""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from consistency_jax.training.objectives import FakeScore, Objective
from consistency_jax.training.state import FakeScoreTrainState, TrainState

PyTree = Any


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
    shardings: tuple[PyTree, jax.sharding.Sharding] | None = None,
    steps_per_call: int = 1,
) -> Callable[[TrainState, dict, jax.Array], tuple[TrainState, dict]]:
    """The jitted, state-donating `train_step(state, batch, rng) -> (state, metrics)`.

    With `steps_per_call` k > 1 one call makes k steps (`lax.scan`): the batch's leaves and `rng`
    carry a leading axis of k (the steps' batches and keys) and so do the metrics.

    The target (if any) and sampling EMA are updated from the post-step parameters. A step whose
    loss or gradient is not finite leaves the state unchanged but for the step count
    (metrics['finite'] = 0), so the loop can stop or skip without a corrupted state.
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
        if objective.fake_score is not None:
            frozen = {**frozen, "fake_score": state.fake_score["params"]}
        grad_fn = jax.value_and_grad(objective.loss, has_aux=True)
        (loss, metrics), grads = grad_fn(
            state.params, state.target_params, frozen, batch, rng, state.step
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        target = state.target_params
        if objective.target_ema is not None:
            target = ema_update(target, params, objective.target_ema(state.step))
        new = state.replace(
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
        if objective.fake_score is not None:
            new, fake_metrics, fake_finite = fake_score_step(objective.fake_score, new, batch, rng)
            metrics, finite = {**metrics, **fake_metrics}, finite & fake_finite
        new = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, state)
        new = new.replace(step=state.step + 1)
        metrics = dict(metrics, grad_norm=optax.global_norm(grads), finite=finite.astype(jnp.float32))
        return new, metrics

    fn = step_fn if steps_per_call == 1 else scanned(step_fn, steps_per_call)
    jitted = jax.jit(fn, donate_argnums=(0,), out_shardings=(state_shardings, replicated))
    return lambda state, batch, rng: jitted(state, batch, rng, frozen)


def fake_score_step(fake_score: FakeScore, state: FakeScoreTrainState, batch: dict, rng: jax.Array) -> tuple:
    """One update of the fake score on the updated student's samples (rCM, DMD2: the two networks
    alternate); its key is the step's folded, apart from the student's draws."""
    fake = state.fake_score
    (loss, metrics), grads = jax.value_and_grad(fake_score.loss, has_aux=True)(
        fake["params"], state.params, batch, jax.random.fold_in(rng, 1)
    )
    updates, opt_state = fake_score.optimizer.update(grads, fake["opt_state"], fake["params"])
    fake = {"params": optax.apply_updates(fake["params"], updates), "opt_state": opt_state}
    finite = jnp.isfinite(loss) & jnp.isfinite(optax.global_norm(grads))
    return state.replace(fake_score=fake), metrics, finite


def scanned(step_fn: Callable, steps: int) -> Callable:
    """`step_fn(state, batch, rng, frozen)` run over `steps` stacked batches and keys by lax.scan."""

    def run(state: TrainState, batches: dict, rngs: jax.Array, frozen: dict) -> tuple:
        body = lambda state, xs: step_fn(state, *xs, frozen)
        return jax.lax.scan(body, state, (batches, rngs), length=steps)

    return run
