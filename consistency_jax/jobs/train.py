"""The training loop: setup (validated before compute), resume, logging, checkpoints, samples."""

import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from consistency_jax.config import checks
from consistency_jax.data import DataInfo, build_dataset, data_info, num_labels
from consistency_jax.errors import ConfigError
from consistency_jax.evaluation.samples import write_samples
from consistency_jax.jobs.teacher import Teacher, load_teacher, starts_from_teacher
from consistency_jax.networks import build_network
from consistency_jax.training import checkpoint, parallel
from consistency_jax.training.log import MetricsLog
from consistency_jax.training.objectives import make_objective, needs_teacher
from consistency_jax.training.state import (
    TrainState,
    abstract_state,
    create_train_state,
    example_input,
    init_params,
    make_optimizer,
)
from consistency_jax.training.step import make_train_step


def write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Save the resolved config (process 0), or check that the one already there can be resumed with."""
    path = os.path.join(workdir, "config.json")
    if os.path.exists(path):
        checks.check_resumable(config, path)
    if not parallel.is_main_process():
        return
    os.makedirs(workdir, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(config.to_json(indent=2))
    os.replace(tmp, path)


def check_resume_step(workdir: str, steps_per_dispatch: int) -> None:
    """Refuse to resume from a checkpoint between dispatches of `steps_per_dispatch` steps."""
    if steps_per_dispatch == 1:
        return
    manager = checkpoint.make_manager(workdir)  # read-only: creates nothing
    step = manager.latest_step()
    manager.close()
    if step is not None and step % steps_per_dispatch:
        raise ConfigError(
            f"The latest checkpoint is at step {step}, not a multiple of "
            f"config.train.steps_per_dispatch={steps_per_dispatch}: resume with steps_per_dispatch "
            f"set to a divisor of {step} (1 always works)."
        )


def train(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
    """Train `config` in `workdir`, resuming from its latest checkpoint; write samples at the end.

    On SIGTERM (preemption) it saves a checkpoint at the next step and returns that state
    early, without samples; rerunning the same command resumes exactly where it stopped.
    """
    checks.validate(config)
    t = config.train
    mesh = parallel.make_mesh(config.parallel)
    parallel.check_batch_size("data.batch_size", config.data.batch_size, mesh)
    parallel.check_batch_size("sample.batch_size", config.sample.batch_size, mesh)
    info = data_info(config.data)
    checks.check_network_fits_data(config, info.shape)
    checks.check_steps_per_dispatch_on(config, jax.default_backend())
    distils = needs_teacher(config.objective.name)
    teacher = load_teacher(config, info, mesh) if distils or starts_from_teacher(config) else None
    dim = int(np.prod(info.shape))
    model = build_network(config.network, num_labels(config.data, info))
    objective = make_objective(config, model, teacher.model if distils else None, dim)
    check_resume_step(workdir, t.steps_per_dispatch)
    write_config(config, workdir)  # only once every input has been checked
    optimizer = make_optimizer(config.optim)
    key = jax.random.key(config.seed)
    target = abstract_state(config, model, info, mesh)
    shardings = jax.tree.map(lambda a: a.sharding, target)
    manager = checkpoint.make_manager(workdir, keep=t.ckpt_keep, keep_every=t.ckpt_keep_every)
    data_iter, _ = build_dataset(
        config.data, seed=config.seed, process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    if manager.latest_step() is not None:
        state = checkpoint.restore(manager, target, data_iter)
        checkpoint.set_aside_newer(manager, workdir, int(state.step))
        logging.info("Resumed from step %d in %s.", int(state.step), workdir)
    else:
        state = initial_state(config, model, objective, optimizer, info, key, teacher, shardings)
    train_step = make_train_step(
        objective, optimizer, t.ema_rate, teacher.params if distils else None,
        ema_warmup=t.ema_warmup, shardings=(shardings, parallel.replicated(mesh)),
        steps_per_call=t.steps_per_dispatch,
    )
    log = MetricsLog(workdir, t.num_steps, t.nan_policy, manager)
    train_key = jax.random.fold_in(key, 1)
    k = t.steps_per_dispatch
    try:
        with checkpoint.Preemption() as preemption:
            for step in range(int(state.step), t.num_steps, k):
                batch = parallel.shard_batch(next_batches(data_iter, k), mesh, stacked=k > 1)
                state, metrics = train_step(state, batch, step_keys(train_key, step, k))
                log.add(step, metrics, k)
                done = step + k
                preempted = preemption.reached(done // k)
                save = done % t.ckpt_every == 0 or done == t.num_steps or preempted
                if save or done % t.log_every == 0:
                    log.flush()
                if save:
                    checkpoint.save(manager, state, data_iter)
                if preempted:
                    logging.warning(
                        "Stopped at step %d on request; rerun the same command to resume.", done
                    )
                    return state
                if t.sample_every and done % t.sample_every == 0 and done != t.num_steps:
                    write_samples(config, workdir, model, state.ema_params, info, tag=f"_{done:07d}")
    finally:
        checkpoint.finish(manager)
    write_samples(config, workdir, model, state.ema_params, info)
    return state


def next_batches(data_iter: Any, k: int) -> dict:
    """The next batch, or (k > 1) the next k batches stacked on a leading axis."""
    if k == 1:
        return next(data_iter)
    return jax.tree.map(lambda *xs: np.stack(xs), *(next(data_iter) for _ in range(k)))


def step_keys(train_key: jax.Array, step: int, k: int) -> jax.Array:
    """The key of step `step`, or (k > 1) of steps step..step + k - 1: each folds in its step."""
    if k == 1:
        return jax.random.fold_in(train_key, step)
    return jax.vmap(jax.random.fold_in, (None, 0))(train_key, jnp.arange(step, step + k))


def initial_state(
    config, model, objective, optimizer, info: DataInfo, key, teacher: Teacher | None, shardings=None
) -> TrainState:
    """Step-0 state, created already laid out as `shardings`: fresh parameters, or the teacher's
    EMA parameters for a CD student."""
    init = lambda k: init_params(model, k, example_input(info), num_labels(config.data, info))
    if teacher is not None and config.objective.init_from_teacher:
        shapes = lambda tree: jax.tree.map(lambda a: (a.shape, a.dtype), tree)
        # a loss-weighting head of the student (network.logvar_head) starts fresh
        fresh = {k: v for k, v in jax.eval_shape(init, key).items() if k != "logvar"}
        if shapes(fresh) != shapes(dict(teacher.params)):
            raise ConfigError(
                "objective.init_from_teacher=True needs the student's network to have the "
                "teacher's parameter shapes; make config.network match the teacher's or set "
                "objective.init_from_teacher=False."
            )
        create = lambda params, k: create_train_state(
            {**params, **({"logvar": init(k)["logvar"]} if config.network.logvar_head else {})},
            optimizer, objective,
        )
        # Copies: the train step donates the state, and the teacher's parameters must survive.
        return jax.jit(create, out_shardings=shardings)(jax.tree.map(jnp.copy, teacher.params), key)
    create = lambda k: create_train_state(init(jax.random.fold_in(k, 0)), optimizer, objective)
    return jax.jit(create, out_shardings=shardings)(key)
