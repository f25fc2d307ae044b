"""openai/consistency_models_cifar10 (jcm) checkpoints imported against jcm's own NCSN++: its
`NCSNpp` (jcm/models/ncsnpp.py, layerspp.py, layers.py, up_or_down_sampling.py, run as they are;
only its model registry is stubbed), initialised, every weight then drawn at random, saved as
jcm saves a train state (`flax.serialization.to_bytes`), read by
`consistency_jax.networks.pretrained.jcm_msgpack`, and the consistency function compared with
jcm's `get_distiller_fn` formula (sigma_d 0.5, t_min 0.002, c_noise = ln(t) / 4).

    git clone https://github.com/openai/consistency_models_cifar10 /tmp/jcm
    PYTHONPATH=. python benchmarks/jcm_parity.py --jcm=/tmp/jcm [--full]

--full: the CIFAR-10 size of jcm's configs (nf 128, ch_mult (2, 2, 2), 4 blocks, attention at
16, 32x32); default a small one (nf 16, (1, 2), 2 blocks, attention at 8, 16x16). Prints the
parameter counts and the max |difference| over t from 0.002 to 80; docs/results.md records a run.
"""

import argparse
import importlib
import os
import sys
import tempfile
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import serialization

from consistency_jax.config import schema
from consistency_jax.core.parametrization import Parametrization, precondition
from consistency_jax.jobs import convert
from consistency_jax.networks import build_network, network_fn
from consistency_jax.networks.pretrained import jcm_msgpack

SIZES = {
    False: dict(nf=16, ch_mult=(1, 2), num_res_blocks=2, attn_resolutions=(8,), image_size=16),
    True: dict(nf=128, ch_mult=(2, 2, 2), num_res_blocks=4, attn_resolutions=(16,), image_size=32),
}


def jcm_ncsnpp(root: str) -> type:
    """jcm's NCSNpp class, imported from the checkout at `root` with a stub `jcm.models.utils`."""
    for name, path in (("jcm", "jcm"), ("jcm.models", "jcm/models")):
        module = types.ModuleType(name)
        module.__path__ = [os.path.join(root, path)]
        sys.modules[name] = module
    utils = types.ModuleType("jcm.models.utils")
    utils.register_model = lambda cls=None, *, name=None: cls if cls is not None else (lambda c: c)
    sys.modules["jcm.models.utils"] = utils
    return importlib.import_module("jcm.models.ncsnpp").NCSNpp


def jcm_config(full: bool) -> ml_collections.ConfigDict:
    """jcm configs/cifar10_ve_cd.py's model section (at the small size unless `full`)."""
    s = SIZES[full]
    c = ml_collections.ConfigDict()
    c.data = ml_collections.ConfigDict(dict(image_size=s["image_size"], num_channels=3))
    c.model = ml_collections.ConfigDict(
        dict(
            nonlinearity="swish",
            nf=s["nf"],
            ch_mult=s["ch_mult"],
            num_res_blocks=s["num_res_blocks"],
            attn_resolutions=s["attn_resolutions"],
            dropout=0.0,
            resamp_with_conv=True,
            conditional=True,
            fir=True,
            fir_kernel=[1, 3, 3, 1],
            skip_rescale=True,
            resblock_type="biggan",
            progressive="none",
            progressive_input="residual",
            progressive_combine="sum",
            embedding_type="fourier",
            init_scale=0.0,
            fourier_scale=16,
            double_heads=False,
        )
    )
    return c


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jcm", required=True, help="a checkout of openai/consistency_models_cifar10")
    parser.add_argument("--full", action="store_true", help="jcm's CIFAR-10 size")
    args = parser.parse_args()
    cfg = jcm_config(args.full)
    res = cfg.data.image_size
    model = jcm_ncsnpp(args.jcm)(config=cfg)
    x = jax.random.normal(jax.random.key(1), (4, res, res, 3))
    t = jnp.array([0.002, 0.3, 2.0, 80.0])
    params = model.init({"params": jax.random.key(0)}, x, t, train=False)["params"]
    leaves, tree = jax.tree.flatten(params)  # init_scale 0 starts some layers at ~0: draw all
    keys = jax.random.split(jax.random.key(2), len(leaves))
    scale = lambda a: 1.0 if a.ndim < 2 else float(np.prod(a.shape[:-1])) ** -0.5
    params = jax.tree.unflatten(
        tree, [0.3 * jax.random.normal(k, a.shape) * scale(a) + (a.ndim == 1) * 0.1 for k, a in zip(keys, leaves)]
    )
    state = dict(step=0, lr=0.0, ema_rate=0.9999, params=params, params_ema=params, model_state={}, opt_state={})
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "checkpoint_1")
        with open(path, "wb") as f:
            f.write(serialization.to_bytes(state))
        tree_in = jcm_msgpack.load_jcm_params(path)
    config = schema.get_config()
    config.data.image_size, config.network.unet.attn_resolutions = res, cfg.model.attn_resolutions
    config.objective.name = "ct"
    config = convert.jcm_config(config, tree_in)
    ours = convert.jcm_state(config, tree_in).ema_params
    net = build_network(config.network)

    sd, eps = 0.5, 0.002  # jcm get_distiller_fn, written out
    tt = t[:, None, None, None]
    out = model.apply({"params": params}, x / jnp.sqrt(tt**2 + sd**2), 0.25 * jnp.log(t), train=False)
    want = x * sd**2 / ((tt - eps) ** 2 + sd**2) + out * (tt - eps) * sd / jnp.sqrt(tt**2 + sd**2)
    f_ours = network_fn(net, ours)
    got = precondition(f_ours, Parametrization("consistency", sd, eps), x, t)
    out_ours = f_ours(x / jnp.sqrt(tt**2 + sd**2), 0.25 * jnp.log(t))
    count = lambda p: sum(int(np.prod(a.shape)) for a in jax.tree.leaves(p))
    print(f"jcm NCSNpp {count(params):,} parameters, ours {count(ours):,}; unet {dict(config.network.unet)}")
    print(
        f"network F(c_in x, ln(t) / 4): max |ours - jcm| {float(jnp.abs(out_ours - out).max()):.3g}; "
        f"consistency function: max |ours - jcm| {float(jnp.abs(got - want).max()):.3g}, "
        f"max |jcm| {float(jnp.abs(want).max()):.3g}, max |jcm network output| {float(jnp.abs(out).max()):.3g}"
    )


if __name__ == "__main__":
    main()
