"""The teacher of a run: the EDM run in config.objective.teacher_workdir, restored onto this run's mesh."""

import dataclasses
import os

import flax.linen as nn
import ml_collections
from absl import logging
from jax.sharding import Mesh

from consistency_jax.config.schema import load_config
from consistency_jax.data import DataInfo, num_labels
from consistency_jax.errors import ConfigError
from consistency_jax.networks import build_network
from consistency_jax.training import checkpoint, parallel
from consistency_jax.training.state import on_mesh, state_shapes


class TeacherNotFoundError(FileNotFoundError):
    """CD was pointed at a directory that holds no trained teacher."""


@dataclasses.dataclass(frozen=True)
class Teacher:
    config: ml_collections.ConfigDict
    model: nn.Module
    params: object  # the teacher's sampling-EMA parameters


def _latent_space(config: ml_collections.ConfigDict) -> str:
    """The space a run's network works in, in words: images, or an autoencoder's latents."""
    a = config.autoencoder
    if a.kind == "none":
        return "images (config.autoencoder.kind='none')"
    where = {"digits": f"workdir={os.path.normpath(a.workdir)!r}", "sd_vae": f"path={a.path!r}"}[a.kind]
    return f"the latents of config.autoencoder.kind={a.kind!r}, {where}, scaling_factor={a.scaling_factor}"


def check_teacher_kind(objective: str, ours: str, theirs: str, workdir: str) -> None:
    """How the teacher's network takes time (model.scm_network) must serve the student: sCT and
    sCD start from and convert a teacher of their own kind; the discrete-time students, whose
    networks take EDM's c_noise, need an 'edm' one. ConfigError naming the fix."""
    needed = ours if objective in ("sct", "scd") else "edm"
    if theirs != needed:
        raise ConfigError(
            f"The teacher in {workdir!r} takes time as model.scm_network={theirs!r}; {objective!r} "
            f"needs {needed!r} (a teacher cannot be converted to another network's time input). "
            + (
                f"Set --config.model.scm_network={theirs!r} to match it."
                if objective in ("sct", "scd")
                else "Distil a teacher trained with model.scm_network='edm', or use sCD/sCT."
            )
        )


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
        tconfig = load_config(os.path.join(workdir, "config.json"))
    except FileNotFoundError:
        raise TeacherNotFoundError(f"No teacher run in {workdir!r} (no config.json). {fix}") from None
    if tconfig.objective.name != "edm":
        raise TeacherNotFoundError(
            f"{workdir!r} holds a {tconfig.objective.name!r} run, not an EDM teacher. {fix}"
        )
    ours, theirs = _latent_space(config), _latent_space(tconfig)
    if ours != theirs:
        raise ConfigError(
            f"The teacher in {workdir!r} was trained on {theirs}, this run is on {ours}: a student "
            "works in its teacher's space. Set config.autoencoder to the teacher's (its config.json), "
            "or point config.objective.teacher_workdir at a teacher trained in this run's space "
            "(configs/digits_latent_edm.py, configs/digits_latent_edm_cond.py in the digits latents)."
        )
    if tconfig.data.conditional != config.data.conditional:
        kind = "a conditional" if config.data.conditional else "an unconditional"
        raise ConfigError(
            f"The teacher in {workdir!r} was trained with data.conditional={tconfig.data.conditional}, "
            f"this run has {config.data.conditional}: it distils {kind} teacher. Point "
            "config.objective.teacher_workdir at one (a conditional one trained with objective.label_dropout"
            " > 0: configs/digits_edm_cond.py, configs/digits_latent_edm_cond.py), or set data.conditional "
            "to the teacher's."
        )
    for key in ("model.sigma_data", "data.name", "data.image_size"):
        section, name = key.split(".")
        if tconfig[section][name] != config[section][name]:
            raise ConfigError(
                f"The teacher in {workdir!r} was trained with {key}={tconfig[section][name]!r}, "
                f"this run has {config[section][name]!r}: set them equal."
            )
    o = config.objective
    check_teacher_kind(o.name, config.model.scm_network, tconfig.model.scm_network, workdir)
    if o.name == "lcm" and (o.guidance_min, o.guidance_max) != (1, 1) and not tconfig.objective.label_dropout > 0:
        raise ConfigError(
            f"The teacher in {workdir!r} was trained without label dropout (objective.label_dropout="
            f"{tconfig.objective.label_dropout}), so its unconditional denoiser, which guidance at "
            f"w in [{o.guidance_min}, {o.guidance_max}] uses, is untrained. Train the teacher with "
            "--config.objective.label_dropout=0.1 (configs/digits_edm_cond.py), or distil it "
            "unguided with objective.guidance_min = guidance_max = 1."
        )
    model = build_network(tconfig.network, num_labels(tconfig.data, info))
    mesh = mesh or parallel.make_mesh(config.parallel)
    manager = checkpoint.make_manager(workdir)
    try:
        state = checkpoint.restore(manager, on_mesh(state_shapes(tconfig, model, info), config.parallel, mesh))
    except checkpoint.CheckpointNotFoundError:
        raise TeacherNotFoundError(f"The teacher run {workdir!r} has no checkpoint. {fix}") from None
    finally:
        manager.close()
    logging.info("Teacher: %s at step %d.", os.path.abspath(workdir), int(state.step))
    return Teacher(tconfig, model, state.ema_params)
