"""Import a published network as a run, without torch: an NVlabs/edm network pickle (an EDM
teacher), or an openai/consistency_models_cifar10 flax msgpack checkpoint (its EDM teacher, CD or
CT consistency models); the file's first bytes tell which.

    python -m consistency_jax.jobs.convert edm-cifar10-32x32-uncond-vp.pkl --out=runs/edm_vp \
        --config=configs/edm_cifar10_uncond_vp.py
    python -m consistency_jax.jobs.convert checkpoint_80 --out=runs/jcm_cd_lpips \
        --config=configs/jcm_cifar10_cd_lpips.py

writes `<out>/config.json` (the network the file holds, laid over the given config: for a pickle
objective.name='edm' and model.sigma_data from the EDMPrecond; for a msgpack the config's
objective, edm, cd or ct) and an orbax checkpoint at step 0 whose online and EMA parameters are
the file's network (the pickle's `ema`; the msgpack's `params_ema`, or `params` with
--params=params), as a trained run holds them: `--mode=sample|eval --workdir=<out>` samples it,
and `--config.objective.teacher_workdir=<out>` distils from an imported teacher.
"""

import argparse
import importlib.util
import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from consistency_jax.errors import ConfigError
from consistency_jax.jobs.train import write_config
from consistency_jax.networks import build_network
from consistency_jax.networks.pretrained import jcm_msgpack
from consistency_jax.networks.pretrained.edm_pickle import (
    EDMNetwork,
    flax_params,
    is_pickle,
    load_edm_pickle,
    network_settings,
)
from consistency_jax.networks.pretrained.weights import WeightsUnavailableError
from consistency_jax.training import checkpoint, files
from consistency_jax.training.objectives import make_objective
from consistency_jax.training.state import TrainState, create_train_state, init_params, make_optimizer


def teacher_config(config: ml_collections.ConfigDict, net: EDMNetwork) -> ml_collections.ConfigDict:
    """`config` made an EDM teacher run of `net`: its network, labels and sigma_data."""
    if config.data.image_size not in (0, net.img_resolution):
        raise ConfigError(
            f"The pickle's network is for {net.img_resolution}x{net.img_resolution} images, the config "
            f"has data.image_size={config.data.image_size}: set it to 0 or {net.img_resolution}."
        )
    config = ml_collections.ConfigDict(config.to_dict())
    settings = network_settings(net)
    config.network.update({k: v for k, v in settings.items() if k != "unet"})
    config.network.unet.update(settings["unet"])
    config.network.logvar_head = False
    config.network.embedding_type = settings.get("embedding_type", "auto")
    config.objective.name = "edm"
    config.model.sigma_data = net.sigma_data
    config.data.conditional = net.label_dim > 0
    return config


def imported_state(
    config: ml_collections.ConfigDict, example: jax.Array, num_classes: int, to_flax: Callable[[Any], Any]
) -> TrainState:
    """A step-0 train state of `config` whose parameters (online, target, EMA) are
    `to_flax(shapes)`: the imported tensors laid out as the network's parameter shapes."""
    model = build_network(config.network, num_classes)
    shapes = jax.eval_shape(lambda k: init_params(model, k, example, num_classes), jax.random.key(0))
    params = jax.tree.map(jnp.asarray, to_flax(shapes))
    objective = make_objective(config, model, model, int(np.prod(example.shape)))
    return create_train_state(params, make_optimizer(config.optim), objective)


def teacher_state(config: ml_collections.ConfigDict, net: EDMNetwork) -> TrainState:
    """A step-0 train state of `config` whose parameters (online, target, EMA) are `net`'s."""
    example = jnp.zeros((1, net.img_resolution, net.img_resolution, net.img_channels))
    return imported_state(config, example, net.label_dim, lambda shapes: flax_params(net, shapes))


# The objectives whose parametrization is jcm's: its denoiser (jcm get_denoiser_fn) is our 'edm'
# one, its consistency function (get_distiller_fn, eps = t_min) our 'consistency' one, both
# with c_in = 1 / sqrt(t^2 + sigma_d^2) and c_noise = ln(t) / 4 (jcm/models/utils.py).
JCM_OBJECTIVES = ("edm", "cd", "ct")
JCM_SIGMA_DATA, JCM_SIGMA_MIN = 0.5, 0.002  # jcm KVESDE data_std, t_min (configs/cifar10_ve_cd.py)
JCM_IMAGE_SIZE = 32  # CIFAR-10: the only data jcm's checkpoints were trained on


def jcm_config(config: ml_collections.ConfigDict, params: dict) -> ml_collections.ConfigDict:
    """`config` made a run of the jcm network `params`: NCSN++ at the checkpoint's sizes,
    unconditional, with the config's objective (edm: the teacher; cd, ct: a consistency model)."""
    o, m = config.objective, config.model
    if o.name not in JCM_OBJECTIVES:
        raise ConfigError(
            f"config.objective.name={o.name!r}: a jcm checkpoint is an EDM denoiser or a CD/CT "
            f"consistency model; set it to one of {JCM_OBJECTIVES} (configs/jcm_cifar10_*.py)."
        )
    if (m.sigma_data, m.sigma_min) != (JCM_SIGMA_DATA, JCM_SIGMA_MIN):
        raise ConfigError(
            f"config.model.sigma_data={m.sigma_data}, sigma_min={m.sigma_min}: jcm's networks are "
            f"wrapped with sigma_data={JCM_SIGMA_DATA} and eps=t_min={JCM_SIGMA_MIN}; set those."
        )
    config = ml_collections.ConfigDict(config.to_dict())
    config.network.name = "ncsnpp"
    config.network.embedding_type = "fourier"
    config.network.logvar_head = config.network.guidance_embedding = False
    config.network.unet.update(jcm_msgpack.network_settings(params))
    config.data.conditional = False
    jcm_msgpack.check_attention(params, config.network.unet, config.data.image_size or JCM_IMAGE_SIZE)
    return config


def jcm_state(config: ml_collections.ConfigDict, params: dict) -> TrainState:
    """A step-0 train state of `config` whose parameters (online, target, EMA) are `params`'."""
    size = config.data.image_size or JCM_IMAGE_SIZE
    example = jnp.zeros((1, size, size, jcm_msgpack.tensor_shape(params, "Conv_0/kernel")[2]))
    unet = config.network.unet
    return imported_state(config, example, 0, lambda shapes: jcm_msgpack.flax_params(params, shapes, unet, size))


def convert(
    path: str, config: ml_collections.ConfigDict, workdir: str, params: str = "params_ema"
) -> ml_collections.ConfigDict:
    """Write the run of the network file at `path` (an EDM pickle or a jcm msgpack, whose tree
    `params` it imports) into the new `workdir`; its config."""
    if os.path.exists(os.path.join(workdir, "config.json")) or os.path.isdir(checkpoint.checkpoint_dir(workdir)):
        raise ConfigError(f"{workdir!r} already holds a run; give --out a new directory.")
    if not os.path.isfile(path):
        raise ConfigError(f"No file {path!r}: download it first (see configs/edm_*.py, configs/jcm_*.py).")
    with open(path, "rb") as f:
        head = f.read(2)
    if jcm_msgpack.is_msgpack(head):
        tree = jcm_msgpack.load_jcm_params(path, params)
        config = jcm_config(config, tree)
        state = jcm_state(config, tree)
    elif is_pickle(head):
        net = load_edm_pickle(path)
        config = teacher_config(config, net)
        state = teacher_state(config, net)
    else:
        raise ConfigError(
            f"{path} is neither an NVlabs/edm network pickle nor an openai/consistency_models_cifar10 "
            f"flax msgpack checkpoint (it starts with {head!r})."
        )
    write_config(config, workdir)
    manager = checkpoint.make_manager(workdir, keep=1)
    checkpoint.save(manager, state, None)
    checkpoint.finish(manager)
    return config


def load_config_file(path: str) -> ml_collections.ConfigDict:
    """get_config() of the config file at `path` (configs/*.py)."""
    return config_module(path).get_config()


def config_module(path: str) -> ModuleType:
    """The config file at `path` (configs/*.py) as a module with a get_config()."""
    if not os.path.isfile(path):
        raise ConfigError(f"--config: no file {path!r}; the shipped configs are configs/*.py.")
    spec = importlib.util.spec_from_file_location("config_file", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"--config: {path!r} has no get_config(); give a run's config (configs/edm_*.py).")
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", help="an NVlabs/edm network pickle (.pkl) or a jcm msgpack checkpoint")
    parser.add_argument("--out", required=True, help="the new workdir")
    parser.add_argument("--config", required=True, help="the run's config file, e.g. configs/edm_cifar10_uncond_vp.py")
    parser.add_argument(
        "--params", choices=jcm_msgpack.PARAM_TREES, default=None,
        help="msgpack: the parameter tree to import (default: the config file's PARAMS, else params_ema)",
    )
    args = parser.parse_args(argv)
    try:
        module = config_module(args.config)
        params = args.params or getattr(module, "PARAMS", "params_ema")
        config = convert(args.file, module.get_config(), args.out, params)
    except (ConfigError, WeightsUnavailableError, files.WriteError, checkpoint.CheckpointSaveError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    n = config.network
    print(f"{args.out}: {config.objective.name} run ({n.name}, {n.unet.model_channels} channels, "
          f"{'conditional' if config.data.conditional else 'unconditional'}), step 0.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
