"""EDM pickles imported without torch against EDM's own forward: an `EDMPrecond` around a small
DDPM++, NCSN++ and ADM, built and pickled by NVlabs/edm's own code (its `persistence` module),
read by `consistency_jax.networks.pretrained.edm_pickle`, and the denoiser D(x, sigma) compared.

    git clone https://github.com/NVlabs/edm /tmp/edm && pip install torch
    python benchmarks/edm_pickle_parity.py --edm=/tmp/edm

Every weight, the zero-initialised ones included, is drawn at random first, so every path shows
in the output; labels include the null label (EDM: the all-zero one-hot). Prints, per network,
the max |difference| and the max |EDM output|; docs/results.md#edm-pickles records a run.
"""

import argparse
import copy
import os
import pickle
import sys
import tempfile

import jax
import numpy as np

from consistency_jax.config import schema
from consistency_jax.core.parametrization import Parametrization, precondition
from consistency_jax.jobs.convert import teacher_config
from consistency_jax.networks import build_network, network_fn
from consistency_jax.networks.pretrained.edm_pickle import flax_params, load_edm_pickle

RES, LABELS = 16, 10
SMALL = dict(model_channels=32, channel_mult=[1, 2], num_blocks=2, attn_resolutions=[8], dropout=0.13)
NETWORKS = {
    "ddpmpp": dict(model_type="SongUNet", embedding_type="positional", encoder_type="standard",
                   decoder_type="standard", channel_mult_noise=1, resample_filter=[1, 1], augment_dim=9),
    "ncsnpp": dict(model_type="SongUNet", embedding_type="fourier", encoder_type="residual",
                   decoder_type="standard", channel_mult_noise=2, resample_filter=[1, 3, 3, 1], augment_dim=9),
    "adm": dict(model_type="DhariwalUNet"),
}


def edm_snapshot(edm, kwargs: dict, path: str) -> object:
    """An EDMPrecond with random weights, pickled as EDM's training loop pickles its snapshots."""
    import dnnlib
    import torch

    net = edm.EDMPrecond(img_resolution=RES, img_channels=3, label_dim=LABELS, **SMALL, **kwargs)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.05)
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    with open(path, "wb") as f:
        pickle.dump(dict(ema=ema, loss_fn=None, augment_pipe=None, dataset_kwargs=dnnlib.EasyDict()), f)
    return ema


def compare(name: str, edm, workdir: str) -> None:
    import torch

    path = os.path.join(workdir, f"{name}.pkl")
    theirs = edm_snapshot(edm, NETWORKS[name], path)
    imported = load_edm_pickle(path)
    base = schema.get_config()
    base.data.name = "cifar10"
    config = teacher_config(base, imported)
    config.network.dropout = 0.0
    model = build_network(config.network, LABELS)
    x0 = np.zeros((1, RES, RES, 3), np.float32)
    init = lambda: model.init(jax.random.key(0), x0, np.zeros(1, np.float32), np.zeros(1, np.int32))
    params = flax_params(imported, jax.eval_shape(init)["params"])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, RES, RES, 3)).astype(np.float32)
    sigma, labels = np.array([0.002, 0.5, 5.0, 80.0], np.float32), np.array([0, 3, 9, LABELS])
    param = Parametrization("edm", imported.sigma_data, config.model.sigma_min)
    ours = precondition(network_fn(model, params, labels), param, x * sigma[:, None, None, None], sigma)
    one_hot = torch.nn.functional.one_hot(torch.tensor(labels), LABELS + 1)[:, :LABELS].float()  # null: 0
    with torch.no_grad():
        ref = theirs(torch.tensor(x * sigma[:, None, None, None]).permute(0, 3, 1, 2), torch.tensor(sigma), one_hot)
    ref = ref.permute(0, 2, 3, 1).numpy()
    count = sum(p.numel() for p in theirs.parameters())
    print(f"{name}: EDMPrecond({imported.model}), {count} parameters; max |ours - EDM|: "
          f"{np.abs(np.asarray(ours) - ref).max():.3g}; max |EDM output|: {np.abs(ref).max():.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edm", required=True, help="a clone of github.com/NVlabs/edm")
    args = parser.parse_args()
    sys.path.insert(0, args.edm)
    from training import networks as edm

    with tempfile.TemporaryDirectory() as workdir:
        for name in NETWORKS:
            compare(name, edm, workdir)


if __name__ == "__main__":
    main()
