"""The train state (online, target and sampling-EMA parameters, optimizer state) and the optimizer."""

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh

from consistency_jax.data import DataInfo, num_labels
from consistency_jax.training import parallel
from consistency_jax.training.objectives import Objective, make_objective

PyTree = Any


@flax.struct.dataclass
class TrainState:
    """Online, target (None when the objective keeps none) and sampling-EMA parameters, in one state."""

    step: jax.Array
    params: PyTree
    target_params: PyTree
    ema_params: PyTree
    opt_state: PyTree


@flax.struct.dataclass
class FakeScoreTrainState(TrainState):
    """A TrainState with {"params", "opt_state"} of the network an objective trains beside the
    student (`Objective.fake_score`); a subclass, so that other runs' checkpoints keep their tree."""

    fake_score: PyTree


STUDENT_OWN = ("logvar", "map_guidance")  # parameters a student has and its teacher lacks


def teacher_part(params: PyTree) -> PyTree:
    """The parameters a student shares with its teacher's network (all but STUDENT_OWN)."""
    return {k: v for k, v in params.items() if k not in STUDENT_OWN}


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
    guided = {"guidance": jnp.ones(example_x.shape[:1])} if getattr(model, "guidance_embedding", False) else {}
    return model.init({"params": key}, example_x, c_noise, labels, train=False, **guided)["params"]


def create_train_state(
    params: PyTree,
    optimizer: optax.GradientTransformation,
    objective: Objective,
    ema_params: PyTree | None = None,
    teacher_params: PyTree | None = None,
) -> TrainState:
    """A fresh state at step 0; target and EMA start as copies of the online parameters, a fake
    score (`objective.fake_score`) as a copy of `teacher_params` (default: the student's own
    teacher-shaped part)."""
    copy = lambda tree: jax.tree.map(jnp.copy, tree)
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        target_params=copy(params) if objective.target_ema is not None else None,
        ema_params=copy(ema_params if ema_params is not None else params),
        opt_state=optimizer.init(params),
    )
    if objective.fake_score is None:
        return state
    fake = copy(teacher_params if teacher_params is not None else teacher_part(params))
    fake_score = {"params": fake, "opt_state": objective.fake_score.optimizer.init(fake)}
    return FakeScoreTrainState(**vars(state), fake_score=fake_score)


def example_input(info: DataInfo) -> jax.Array:
    """A batch of one zero example of the data, for shapes and initialisation."""
    return jnp.zeros((1, *info.shape), jnp.float32)


def state_shapes(config: ml_collections.ConfigDict, model: nn.Module, info: DataInfo) -> TrainState:
    """Shapes and dtypes of the train state a run of `config` keeps, nothing allocated."""
    objective = make_objective(config, model, model, int(np.prod(info.shape)))
    optimizer = make_optimizer(config.optim)
    num_classes = num_labels(config.data, info)
    return jax.eval_shape(
        lambda k: create_train_state(
            init_params(model, k, example_input(info), num_classes), optimizer, objective
        ),
        jax.random.key(0),
    )


def on_mesh(shapes: TrainState, parallel_cfg: ml_collections.ConfigDict, mesh: Mesh) -> TrainState:
    """`shapes` with the shardings config.parallel's rules give them on `mesh`."""
    return parallel.with_shardings(shapes, parallel.tree_shardings(shapes, mesh, parallel_cfg.fsdp_min_size))


def abstract_state(
    config: ml_collections.ConfigDict, model: nn.Module, info: DataInfo, mesh: Mesh | None = None
) -> TrainState:
    """Shapes, dtypes and shardings of the train state a run of `config` keeps, nothing allocated.

    The shardings are on `mesh` (default: the mesh config.parallel makes of the devices at
    hand): the target that checkpoint.restore restores onto, whatever mesh the run was saved on.
    """
    mesh = mesh or parallel.make_mesh(config.parallel)
    return on_mesh(state_shapes(config, model, info), config.parallel, mesh)
