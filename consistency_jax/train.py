"""The training loop: setup (validated before compute), resume, logging, checkpoints, samples."""

import dataclasses
import json
import os
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import Mesh

from consistency_jax import checkpoint, config_checks, generate, parallel
from consistency_jax.data import DataInfo, build_dataset, data_info
from consistency_jax.networks import build_network
from consistency_jax.objectives import make_objective, needs_teacher
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


def _state_shapes(config: ml_collections.ConfigDict, model: nn.Module, info: DataInfo) -> TrainState:
    objective = make_objective(config, model, model, int(np.prod(info.shape)))
    optimizer = make_optimizer(config.optim)
    num_classes = _num_classes(config, info)
    return jax.eval_shape(
        lambda k: create_train_state(init_params(model, k, _example(info), num_classes), optimizer, objective),
        jax.random.key(0),
    )


def _on_mesh(shapes: TrainState, parallel_cfg: ml_collections.ConfigDict, mesh: Mesh) -> TrainState:
    return parallel.with_shardings(shapes, parallel.tree_shardings(shapes, mesh, parallel_cfg.fsdp_min_size))


def abstract_state(
    config: ml_collections.ConfigDict, model: nn.Module, info: DataInfo, mesh: Mesh | None = None
) -> TrainState:
    """Shapes, dtypes and shardings of the train state a run of `config` keeps, nothing allocated.

    The shardings are on `mesh` (default: the mesh config.parallel makes of the devices at
    hand): the target that checkpoint.restore restores onto, whatever mesh the run was saved on.
    """
    mesh = mesh or parallel.make_mesh(config.parallel)
    return _on_mesh(_state_shapes(config, model, info), config.parallel, mesh)


def starts_from_teacher(config: ml_collections.ConfigDict) -> bool:
    """Whether the run starts from the EDM run in objective.teacher_workdir: a CD student, or
    consistency training (CT, iCT, ECT) from a diffusion model (ECT's diffusion pretraining)."""
    o = config.objective
    return o.name != "edm" and o.init_from_teacher and bool(o.teacher_workdir)


def load_teacher(config: ml_collections.ConfigDict, info: DataInfo, mesh: Mesh | None = None) -> Teacher:
    """The EDM teacher's EMA parameters from config.objective.teacher_workdir; fails, naming the fix.

    They are restored onto `mesh` (default: config.parallel's) with this run's sharding rules,
    whatever mesh the teacher was trained on.
    """
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
    mesh = mesh or parallel.make_mesh(config.parallel)
    manager = checkpoint.make_manager(workdir)
    try:
        state = checkpoint.restore(manager, _on_mesh(_state_shapes(tconfig, model, info), config.parallel, mesh))
    except checkpoint.CheckpointNotFoundError:
        raise TeacherNotFoundError(f"The teacher run {workdir!r} has no checkpoint. {fix}") from None
    finally:
        manager.close()
    logging.info("Teacher: %s at step %d.", workdir, int(state.step))
    return Teacher(tconfig, model, state.ema_params)


def write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Save the resolved config (process 0), or check that the one already there can be resumed with."""
    path = os.path.join(workdir, "config.json")
    if os.path.exists(path):
        config_checks.check_resumable(config, path)
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
        raise config_checks.ConfigError(
            f"The latest checkpoint is at step {step}, not a multiple of "
            f"config.train.steps_per_dispatch={steps_per_dispatch}: resume with steps_per_dispatch "
            f"set to a divisor of {step} (1 always works)."
        )


def format_duration(seconds: float) -> str:
    """A duration as 1h05m or 3m07s (progress ETAs)."""
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class MetricsLog:
    """Collects per-step metrics on device; on flush checks finiteness, and (process 0) appends
    JSONL and prints. Every process checks, so all stop at the same step."""

    def __init__(self, workdir: str, total_steps: int, nan_policy: str, manager):
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.total, self.nan_policy, self.manager = total_steps, nan_policy, manager
        self.pending: list[tuple[int, dict, int]] = []
        self.t0, self.step0 = time.perf_counter(), None

    def add(self, step: int, metrics: dict, steps: int = 1) -> None:
        """Metrics of step `step`, or (`steps` > 1) of steps step.. on a leading axis."""
        if self.step0 is None:
            self.step0 = step
        self.pending.append((step, metrics, steps))

    def _last_checkpoint(self) -> str:
        step = self.manager.latest_step()
        where = self.manager.directory
        return f"step {step} in {where}" if step is not None else f"none yet in {where}"

    def flush(self) -> None:
        if not self.pending:
            return
        steps, host = [], []
        for (first, _, n), m in zip(self.pending, jax.device_get([m for _, m, _ in self.pending])):
            steps += range(first, first + n)
            host += [m] if n == 1 else [{k: v[i] for k, v in m.items()} for i in range(n)]
        self.pending = []
        bad = [s for s, m in zip(steps, host) if not m["finite"]]
        if bad and self.nan_policy == "stop":
            raise NonFiniteLossError(
                f"The loss or gradient became non-finite at step {bad[0] + 1}; its update was not "
                f"applied. Last good checkpoint: {self._last_checkpoint()}. Lower optim.lr, set "
                "optim.grad_clip, or set train.nan_policy=skip to skip such steps."
            )
        if not parallel.is_main_process():
            return
        now = time.perf_counter()
        rate = (steps[-1] + 1 - self.step0) / max(now - self.t0, 1e-9)
        last = {k: float(v) for k, v in host[-1].items()}
        record = {"step": steps[-1] + 1, **last, "steps_per_sec": rate, "skipped": len(bad)}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        extra = f" N {int(last['num_scales'])} mu {last['target_ema']:.5f}" if "num_scales" in last else ""
        extra += f" stage {int(last['ect_stage'])}" if "ect_stage" in last else ""
        eta = format_duration((self.total - steps[-1] - 1) / max(rate, 1e-9))
        logging.info(
            "step %d/%d loss %.5g%s %.1f steps/s ETA %s", steps[-1] + 1, self.total,
            last["loss"], extra, rate, eta,
        )


def write_samples(config, workdir: str, model: nn.Module, params, info: DataInfo, tag: str = "") -> dict:
    """Every configured sampler's samples at `params`, as workdir/samples/<name><tag>.npz; paths.

    Every process takes part: each sampling batch is split over the devices of config.parallel's
    mesh (config.sample.batch_size must divide by the device count); process 0 writes the files.
    """
    mesh = parallel.make_mesh(config.parallel)
    parallel.check_batch_size("sample.batch_size", config.sample.batch_size, mesh)
    key = jax.random.fold_in(jax.random.key(config.seed), 2)
    reference = _reference(config, info) if parallel.is_main_process() else None
    paths = {}
    for name in generate.sampler_names(config):
        sampler = parallel.sharded_sampler(generate.make_sampler(config, model, name, info.shape), mesh)
        samples = generate.generate(sampler, params, key, config.sample.num_samples)
        if parallel.is_main_process():
            paths[name] = generate.write_samples(workdir, name + tag, samples, reference)
    return paths


def _reference(config: ml_collections.ConfigDict, info: DataInfo) -> np.ndarray | None:
    """A batch of the data, plotted beside samples of vector data."""
    if len(info.shape) != 1:
        return None
    return next(build_dataset(config.data, seed=config.seed)[0])["x"]


def train(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
    """Train `config` in `workdir`, resuming from its latest checkpoint; write samples at the end.

    On SIGTERM (preemption) it saves a checkpoint at the next step and returns that state
    early, without samples; rerunning the same command resumes exactly where it stopped.
    """
    config_checks.validate(config)
    t = config.train
    mesh = parallel.make_mesh(config.parallel)
    parallel.check_batch_size("data.batch_size", config.data.batch_size, mesh)
    parallel.check_batch_size("sample.batch_size", config.sample.batch_size, mesh)
    info = data_info(config.data)
    config_checks.check_network_fits_data(config, info.shape)
    config_checks.check_steps_per_dispatch_on(config, jax.default_backend())
    distils = needs_teacher(config.objective.name)
    teacher = load_teacher(config, info, mesh) if distils or starts_from_teacher(config) else None
    dim = int(np.prod(info.shape))
    model = build_network(config.network, _num_classes(config, info))
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
    init = lambda k: init_params(model, k, _example(info), _num_classes(config, info))  # noqa: E731
    if teacher is not None and config.objective.init_from_teacher:
        shapes = lambda tree: jax.tree.map(lambda a: (a.shape, a.dtype), tree)  # noqa: E731
        if shapes(jax.eval_shape(init, key)) != shapes(teacher.params):
            raise config_checks.ConfigError(
                "objective.init_from_teacher=True needs the student's network to have the "
                "teacher's parameter shapes; make config.network match the teacher's or set "
                "objective.init_from_teacher=False."
            )
        create = lambda params: create_train_state(params, optimizer, objective)  # noqa: E731
        # Copies: the train step donates the state, and the teacher's parameters must survive.
        return jax.jit(create, out_shardings=shardings)(jax.tree.map(jnp.copy, teacher.params))
    create = lambda k: create_train_state(init(jax.random.fold_in(k, 0)), optimizer, objective)  # noqa: E731
    return jax.jit(create, out_shardings=shardings)(key)
