"""Import an NVlabs/edm network pickle as an EDM teacher run, without torch.

    python -m consistency_jax.jobs.convert edm-cifar10-32x32-uncond-vp.pkl --out=runs/edm_vp \
        --config=configs/edm_cifar10_uncond_vp.py

writes `runs/edm_vp/config.json` (the network the pickle holds, laid over the given config, with
objective.name='edm' and model.sigma_data from the EDMPrecond) and an orbax checkpoint at step 0
whose online and EMA parameters are the pickle's `ema` network, as a trained teacher run holds
them; `--config.objective.teacher_workdir=runs/edm_vp` then distils from it.
"""

import argparse
import importlib.util
import os
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from consistency_jax.errors import ConfigError
from consistency_jax.jobs.train import write_config
from consistency_jax.networks import build_network
from consistency_jax.networks.pretrained.edm_pickle import EDMNetwork, flax_params, load_edm_pickle, network_settings
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


def teacher_state(config: ml_collections.ConfigDict, net: EDMNetwork) -> TrainState:
    """A step-0 train state of `config` whose parameters (online, target, EMA) are `net`'s."""
    model = build_network(config.network, net.label_dim)
    example = jnp.zeros((1, net.img_resolution, net.img_resolution, net.img_channels))
    shapes = jax.eval_shape(lambda k: init_params(model, k, example, net.label_dim), jax.random.key(0))
    params = jax.tree.map(jnp.asarray, flax_params(net, shapes))
    objective = make_objective(config, model, model, int(np.prod(example.shape)))
    return create_train_state(params, make_optimizer(config.optim), objective)


def convert(pickle_path: str, config: ml_collections.ConfigDict, workdir: str) -> ml_collections.ConfigDict:
    """Write the teacher run of the EDM pickle at `pickle_path` into the new `workdir`; its config."""
    if os.path.exists(os.path.join(workdir, "config.json")) or os.path.isdir(checkpoint.checkpoint_dir(workdir)):
        raise ConfigError(f"{workdir!r} already holds a run; give --out a new directory.")
    if not os.path.isfile(pickle_path):
        raise ConfigError(f"No file {pickle_path!r}: download it first (see configs/edm_*.py).")
    net = load_edm_pickle(pickle_path)
    config = teacher_config(config, net)
    state = teacher_state(config, net)
    write_config(config, workdir)
    manager = checkpoint.make_manager(workdir, keep=1)
    checkpoint.save(manager, state, None)
    checkpoint.finish(manager)
    return config


def load_config_file(path: str) -> ml_collections.ConfigDict:
    """get_config() of the config file at `path` (configs/*.py)."""
    if not os.path.isfile(path):
        raise ConfigError(f"--config: no file {path!r}; the shipped configs are configs/*.py.")
    spec = importlib.util.spec_from_file_location("config_file", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"--config: {path!r} has no get_config(); give a run's config (configs/edm_*.py).")
    return module.get_config()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pickle", help="an NVlabs/edm network pickle (.pkl)")
    parser.add_argument("--out", required=True, help="the new teacher workdir")
    parser.add_argument("--config", required=True, help="the run's config file, e.g. configs/edm_cifar10_uncond_vp.py")
    args = parser.parse_args(argv)
    try:
        config = convert(args.pickle, load_config_file(args.config), args.out)
    except (ConfigError, files.WriteError, checkpoint.CheckpointSaveError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    n = config.network
    print(f"{args.out}: EDM teacher run ({n.name}, {n.unet.model_channels} channels, "
          f"{'conditional' if config.data.conditional else 'unconditional'}), step 0.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
