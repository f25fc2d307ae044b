"""The training loop: setup (validated before compute), resume, logging, checkpoints, samples."""

import os
import signal
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from consistency_jax.config import checks
from consistency_jax.data import DataInfo, build_dataset, data_info, num_labels
from consistency_jax.data.latents import latent_info
from consistency_jax.errors import ConfigError
from consistency_jax.evaluation.samples import write_samples
from consistency_jax.jobs import latents
from consistency_jax.jobs.teacher import Teacher, load_teacher
from consistency_jax.networks import build_network
from consistency_jax.training import checkpoint, files, lock, parallel
from consistency_jax.training.log import MetricsLog, board_png
from consistency_jax.training.objectives import make_objective, needs_teacher, starts_from_teacher
from consistency_jax.training.state import (
    STUDENT_OWN,
    TrainState,
    abstract_state,
    create_train_state,
    example_input,
    init_params,
    learning_rate,
    make_optimizer,
    teacher_part,
)
from consistency_jax.training.step import make_train_step


def write_config(
    config: ml_collections.ConfigDict, workdir: str, started: bool = False, allow_change: bool = False
) -> None:
    """Save the resolved config (process 0), once any config.json already there has been checked
    (checks.check_resumable: `started` says whether the run has a checkpoint)."""
    path = os.path.join(workdir, "config.json")
    if os.path.exists(path):
        checks.check_resumable(config, workdir, started, allow_change)
    if not parallel.is_main_process():
        return
    text = config.to_json(indent=2)
    if os.path.exists(path):
        with open(path) as f:
            if f.read() == text:
                return  # a resume with the same config writes nothing
    os.makedirs(workdir, exist_ok=True)
    files.write_atomic(path, lambda f: f.write(text.encode()), "the run's config")


def latest_step(workdir: str) -> int | None:
    """The step of the newest checkpoint in `workdir`, or None (reads only: creates nothing)."""
    if not os.path.isdir(checkpoint.checkpoint_dir(workdir)):
        return None
    manager = checkpoint.make_manager(workdir)
    try:
        return manager.latest_step()
    finally:
        manager.close()


def check_resume_step(step: int | None, t: ml_collections.ConfigDict) -> None:
    """Refuse to resume from a checkpoint at `step` past train.num_steps, or between dispatches
    of train.steps_per_dispatch steps."""
    if step is None:
        return
    if step > t.num_steps:
        raise ConfigError(
            f"config.train.num_steps={t.num_steps} is below the step of the run's latest checkpoint, "
            f"{step}: set num_steps >= {step} to train on, or use --mode=sample or --mode=eval to "
            "use the trained model."
        )
    k = t.steps_per_dispatch
    if step % k:
        raise ConfigError(
            f"The latest checkpoint is at step {step}, not a multiple of "
            f"config.train.steps_per_dispatch={k}: resume with steps_per_dispatch "
            f"set to a divisor of {step} (1 always works)."
        )


def train(config: ml_collections.ConfigDict, workdir: str, allow_config_change: bool = False) -> TrainState:
    """Train `config` in `workdir`, resuming from its latest checkpoint; write samples at the end.

    Every input is checked before anything is written (a refused start leaves the workdir as it
    was); resuming with keys changed that change what the run computes (checks.RESUME_KEYS) is
    refused unless `allow_config_change`.

    On SIGTERM (preemption) it saves a checkpoint at the next step and raises
    checkpoint.Preempted once it is on disk, without writing samples; rerunning the same command
    resumes exactly where it stopped.
    """
    checks.validate(config)
    checks.check_workdir(workdir)
    t = config.train
    mesh = parallel.make_mesh(config.parallel)
    parallel.check_batch_size("data.batch_size", config.data.batch_size, mesh)
    parallel.check_batch_size("sample.batch_size", config.sample.batch_size, mesh)
    images = data_info(config.data)
    ae = latents.load_autoencoder(config)
    info = latent_info(images, ae, config.data.name)  # what the network sees: images or latents
    checks.check_network_fits_data(config, info.shape)
    checks.check_steps_per_dispatch_on(config, jax.default_backend())
    checks.check_labels_fit(config, num_labels(config.data, info))
    distils = needs_teacher(config.objective.name)
    teacher = load_teacher(config, info, mesh) if distils or starts_from_teacher(config) else None
    dim = int(np.prod(info.shape))
    model = build_network(config.network, num_labels(config.data, info))
    objective = make_objective(config, model, teacher.model if distils else None, dim)
    step = latest_step(workdir)
    check_resume_step(step, t)
    with lock.WorkdirLock(workdir, "train"):  # held until the run ends; refuses a second run
        write_config(config, workdir, step is not None, allow_config_change)  # once every input is checked
        optimizer = make_optimizer(config.optim)
        key = jax.random.key(config.seed)
        target = abstract_state(config, model, info, mesh)
        shardings = jax.tree.map(lambda a: a.sharding, target)
        manager = checkpoint.make_manager(workdir, keep=t.ckpt_keep, keep_every=t.ckpt_keep_every)
        source = latents.latent_dataset(config, ae, images, workdir) if ae is not None else None
        data_iter, _ = build_dataset(
            config.data, seed=config.seed, process_index=jax.process_index(),
            process_count=jax.process_count(), latents=source,
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
        log = MetricsLog(
            workdir, t.num_steps, t.nan_policy, manager, start=int(state.step),
            lr=learning_rate(config.optim),
        )
        train_key = jax.random.fold_in(key, 1)
        k = t.steps_per_dispatch
        stopped = None
        # The SIGTERM handler stays installed until the last save is on disk, so that a signal
        # during it waits for it rather than killing the process.
        with checkpoint.Preemption() as preemption:
            try:
                for step in range(int(state.step), t.num_steps, k):
                    batch = parallel.shard_batch(next_batches(data_iter, k), mesh, stacked=k > 1)
                    state, metrics = train_step(state, batch, step_keys(train_key, step, k))
                    log.add(step, metrics, k)
                    checkpoint.check(manager)
                    done = step + k
                    preempted = preemption.reached(done // k)
                    save = done % t.ckpt_every == 0 or done == t.num_steps or preempted
                    if save or done % t.log_every == 0:
                        log.flush()
                    if save:
                        checkpoint.save(manager, state, data_iter)
                    if preempted:
                        stopped = done
                        break
                    if t.sample_every and done % t.sample_every == 0 and done != t.num_steps:
                        paths = write_samples(
                            config, workdir, model, state.ema_params, info, tag=f"_{done:07d}", autoencoder=ae
                        )
                        log_samples(log.board, paths, done)
            finally:
                checkpoint.finish(manager)
        if stopped is not None or preemption.signum is not None:
            raise checkpoint.Preempted(int(state.step), preemption.signum or signal.SIGTERM)
        if config.objective.name == "autoencoder":
            latents.write_autoencoder_stats(config, workdir, model, state.ema_params, info)
        paths = write_samples(config, workdir, model, state.ema_params, info, autoencoder=ae)
        log_samples(log.board, paths, int(state.step))
        log.close()
        return state


def log_samples(board, paths: dict[str, str], step: int) -> None:
    """Each sampler's grid or plot (the PNG beside its .npz) as TensorBoard image samples/<sampler>."""
    if board is None:
        return
    for name, path in paths.items():
        board_png(board, f"samples/{name}", path.removesuffix(".npz") + ".png", step)
    board.flush()


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
        # the student's own parts start fresh: a loss-weighting head (network.logvar_head), a
        # w-embedding (network.guidance_embedding, zero at the start)
        own = [k for k in STUDENT_OWN if k in jax.eval_shape(init, key)]
        shared = teacher_part(jax.eval_shape(init, key))
        if shapes(shared) != shapes(dict(teacher.params)):
            raise ConfigError(
                "objective.init_from_teacher=True needs the student's network to have the "
                "teacher's parameter shapes; make config.network match the teacher's or set "
                "objective.init_from_teacher=False."
            )
        create = lambda params, k: create_train_state(
            {**params, **{name: init(k)[name] for name in own}}, optimizer, objective,
            teacher_params=params,
        )
        # Copies: the train step donates the state, and the teacher's parameters must survive.
        return jax.jit(create, out_shardings=shardings)(jax.tree.map(jnp.copy, teacher.params), key)
    create = lambda k: create_train_state(init(jax.random.fold_in(k, 0)), optimizer, objective)
    return jax.jit(create, out_shardings=shardings)(key)
