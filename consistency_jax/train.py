"""The training loop: setup (validated before compute), resume, logging, checkpoints, samples."""

import dataclasses
import json
import os
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from consistency_jax import checkpoint, config_checks, generate
from consistency_jax.data import DataInfo, build_dataset, data_info
from consistency_jax.networks import build_network
from consistency_jax.objectives import make_objective
from consistency_jax.train_state import (
    TrainState,
    create_train_state,
    init_params,
    make_optimizer,
    make_train_step,
)


class TeacherNotFoundError(FileNotFoundError):
    """CD was pointed at a directory that holds no trained teacher."""


class NonFiniteLossError(FloatingPointError):
    """The loss or its gradient stopped being finite."""


@dataclasses.dataclass(frozen=True)
class Teacher:
    config: ml_collections.ConfigDict
    model: nn.Module
    params: object  # the teacher's sampling-EMA parameters


def _num_classes(config: ml_collections.ConfigDict, info: DataInfo) -> int:
    return info.num_classes if config.data.conditional else 0


def _example(info: DataInfo) -> jax.Array:
    return jnp.zeros((1, *info.shape), jnp.float32)


def abstract_state(config: ml_collections.ConfigDict, model: nn.Module, info: DataInfo) -> TrainState:
    """Shapes of the train state a run of `config` keeps, without allocating it."""
    objective = make_objective(config, model, model, int(np.prod(info.shape)))
    optimizer = make_optimizer(config.optim)
    num_classes = _num_classes(config, info)
    return jax.eval_shape(
        lambda k: create_train_state(init_params(model, k, _example(info), num_classes), optimizer, objective),
        jax.random.key(0),
    )


def load_teacher(config: ml_collections.ConfigDict, info: DataInfo) -> Teacher:
    """The EDM teacher's EMA parameters from config.objective.teacher_workdir; fails, naming the fix."""
    workdir = config.objective.teacher_workdir
    fix = (
        f"Train the teacher first (python launch.py --config=<its EDM config> --workdir={workdir}) "
        "or point --config.objective.teacher_workdir at a finished EDM run."
    )
    try:
        tconfig = config_checks.load_config(os.path.join(workdir, "config.json"))
    except FileNotFoundError:
        raise TeacherNotFoundError(f"No teacher run in {workdir!r} (no config.json). {fix}") from None
    if tconfig.objective.name != "edm":
        raise TeacherNotFoundError(
            f"{workdir!r} holds a {tconfig.objective.name!r} run, not an EDM teacher. {fix}"
        )
    for key in ("model.sigma_data", "data.name", "data.image_size", "data.conditional"):
        section, name = key.split(".")
        if tconfig[section][name] != config[section][name]:
            raise config_checks.ConfigError(
                f"The teacher in {workdir!r} was trained with {key}={tconfig[section][name]!r}, "
                f"this run has {config[section][name]!r}: set them equal."
            )
    model = build_network(tconfig.network, _num_classes(tconfig, info))
    manager = checkpoint.make_manager(workdir)
    try:
        state = checkpoint.restore(manager, abstract_state(tconfig, model, info))
    except checkpoint.CheckpointNotFoundError:
        raise TeacherNotFoundError(f"The teacher run {workdir!r} has no checkpoint. {fix}") from None
    finally:
        manager.close()
    logging.info("Teacher: %s at step %d.", workdir, int(state.step))
    return Teacher(tconfig, model, state.ema_params)


def write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Save the resolved config, or check that the one already there can be resumed with."""
    path = os.path.join(workdir, "config.json")
    if os.path.exists(path):
        config_checks.check_resumable(config, path)
    os.makedirs(workdir, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(config.to_json(indent=2))
    os.replace(tmp, path)


def _format_eta(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class MetricsLog:
    """Collects per-step metrics on device; on flush checks finiteness, appends JSONL and prints."""

    def __init__(self, workdir: str, total_steps: int, nan_policy: str, manager):
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.total, self.nan_policy, self.manager = total_steps, nan_policy, manager
        self.pending: list[tuple[int, dict]] = []
        self.t0, self.step0 = time.perf_counter(), None

    def add(self, step: int, metrics: dict) -> None:
        if self.step0 is None:
            self.step0 = step
        self.pending.append((step, metrics))

    def flush(self) -> None:
        if not self.pending:
            return
        steps = [s for s, _ in self.pending]
        host = jax.device_get([m for _, m in self.pending])
        self.pending = []
        bad = [s for s, m in zip(steps, host) if not m["finite"]]
        if bad and self.nan_policy == "stop":
            raise NonFiniteLossError(
                f"The loss or gradient became non-finite at step {bad[0] + 1}; its update was not "
                f"applied. Last checkpoint: step {self.manager.latest_step()} in "
                f"{self.manager.directory}. Lower optim.lr, set optim.grad_clip, or set "
                "train.nan_policy=skip to skip such steps."
            )
        now = time.perf_counter()
        rate = (steps[-1] + 1 - self.step0) / max(now - self.t0, 1e-9)
        last = {k: float(v) for k, v in host[-1].items()}
        record = {"step": steps[-1] + 1, **last, "steps_per_sec": rate, "skipped": len(bad)}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        extra = f" N {int(last['num_scales'])} mu {last['target_ema']:.5f}" if "num_scales" in last else ""
        eta = _format_eta((self.total - steps[-1] - 1) / max(rate, 1e-9))
        logging.info(
            "step %d/%d loss %.5g%s %.1f steps/s ETA %s", steps[-1] + 1, self.total,
            last["loss"], extra, rate, eta,
        )


def write_samples(config, workdir: str, model: nn.Module, params, info: DataInfo, tag: str = "") -> dict:
    """Every configured sampler's samples at `params`, as workdir/samples/<name><tag>.npz; paths."""
    key = jax.random.fold_in(jax.random.key(config.seed), 2)
    reference = None
    if len(info.shape) == 1:
        it, _ = build_dataset(config.data, seed=config.seed)
        reference = next(it)["x"]
    paths = {}
    for name in generate.sampler_names(config):
        sampler = generate.make_sampler(config, model, name, info.shape)
        samples = generate.generate(sampler, params, key, config.sample.num_samples)
        paths[name] = generate.write_samples(workdir, name + tag, samples, reference)
    return paths


def train(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
    """Train `config` in `workdir`, resuming from its latest checkpoint; write samples at the end."""
    config_checks.validate(config)
    info = data_info(config.data)
    teacher = None
    if config.objective.name == "cd":
        teacher = load_teacher(config, info)
    dim = int(np.prod(info.shape))
    model = build_network(config.network, _num_classes(config, info))
    objective = make_objective(config, model, teacher.model if teacher else None, dim)
    write_config(config, workdir)  # only once every input has been checked
    optimizer = make_optimizer(config.optim)
    key = jax.random.key(config.seed)
    manager = checkpoint.make_manager(workdir)
    data_iter, _ = build_dataset(
        config.data, seed=config.seed, process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    if manager.latest_step() is not None:
        state = checkpoint.restore(manager, abstract_state(config, model, info), data_iter)
        logging.info("Resumed from step %d in %s.", int(state.step), workdir)
    else:
        state = initial_state(config, model, objective, optimizer, info, key, teacher)
    train_step = make_train_step(
        objective, optimizer, config.train.ema_rate, teacher.params if teacher else None
    )
    log = MetricsLog(workdir, config.train.num_steps, config.train.nan_policy, manager)
    train_key = jax.random.fold_in(key, 1)
    t = config.train
    try:
        for step in range(int(state.step), t.num_steps):
            batch = next(data_iter)
            state, metrics = train_step(state, batch, jax.random.fold_in(train_key, step))
            log.add(step, metrics)
            done = step + 1
            if done % t.log_every == 0 or done % t.ckpt_every == 0 or done == t.num_steps:
                log.flush()
            if done % t.ckpt_every == 0 or done == t.num_steps:
                checkpoint.save(manager, state, data_iter)
            if t.sample_every and done % t.sample_every == 0 and done != t.num_steps:
                write_samples(config, workdir, model, state.ema_params, info, tag=f"_{done:07d}")
    finally:
        manager.wait_until_finished()
        manager.close()
    write_samples(config, workdir, model, state.ema_params, info)
    return state


def initial_state(config, model, objective, optimizer, info: DataInfo, key, teacher: Teacher | None) -> TrainState:
    """Step-0 state: fresh parameters, or the teacher's EMA parameters for a CD student."""
    init = lambda k: init_params(model, k, _example(info), _num_classes(config, info))  # noqa: E731
    if teacher is not None and config.objective.init_from_teacher:
        shapes = lambda tree: jax.tree.map(lambda a: (a.shape, a.dtype), tree)  # noqa: E731
        if shapes(jax.eval_shape(init, key)) != shapes(teacher.params):
            raise config_checks.ConfigError(
                "objective.init_from_teacher=True needs the student's network to have the "
                "teacher's parameter shapes; make config.network match the teacher's or set "
                "objective.init_from_teacher=False."
            )
        return create_train_state(jax.tree.map(jnp.copy, teacher.params), optimizer, objective)
    return create_train_state(init(jax.random.fold_in(key, 0)), optimizer, objective)
