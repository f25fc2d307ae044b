"""Our ADM against EDM's own: the same weights in NVlabs/edm's PyTorch `DhariwalUNet` and in
`consistency_jax.networks.adm.DhariwalUNet`, the largest output difference on a random batch.

    git clone https://github.com/NVlabs/edm /tmp/edm && pip install torch
    python benchmarks/adm_parity.py --edm=/tmp/edm

Every weight, the zero-initialised ones included, is drawn at random first, so every path
(adaptive scale and shift, attention heads, resampling skips, the label map and the null label)
shows in the output. Prints the max |difference| and the max |output|; docs/results.md#adm
records a run.
"""

import argparse
import sys

import jax
import jax.numpy as jnp
import numpy as np

from consistency_jax.networks.adm import DhariwalUNet
from consistency_jax.networks.pretrained.edm_pickle import edm_module_name


def _torch_name(path) -> tuple[str, str]:
    """Our parameter path -> (EDM module path, EDM parameter name)."""
    keys = [k.key for k in path]
    return edm_module_name(keys[:-1]), {"kernel": "weight", "bias": "bias", "scale": "weight"}[keys[-1]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edm", required=True, help="a clone of github.com/NVlabs/edm")
    args = parser.parse_args()
    sys.path.insert(0, args.edm)
    import torch
    from training.networks import DhariwalUNet as EDMDhariwalUNet

    arch = dict(model_channels=64, channel_mult=(1, 2), num_blocks=2, attn_resolutions=(8,))
    theirs = EDMDhariwalUNet(
        img_resolution=16, in_channels=3, out_channels=3, label_dim=10, dropout=0.0,
        **{k: list(v) if isinstance(v, tuple) else v for k, v in arch.items()},
    ).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.randn_like(p) * 0.05)
    ours = DhariwalUNet(num_classes=10, dropout=0.0, **arch)
    x = np.random.default_rng(0).normal(size=(4, 16, 16, 3)).astype(np.float32)
    c_noise, labels = np.array([-1.0, 0.0, 0.5, 2.0], np.float32), np.array([0, 3, 9, 10])  # 10: null
    params = ours.init(jax.random.key(0), x, c_noise, labels)["params"]
    state = theirs.state_dict()
    leaves, tree = jax.tree_util.tree_flatten_with_path(params)
    copied = []
    for path, ours_leaf in leaves:
        module, name = _torch_name(path)
        w = state[f"{module}.{name}"].numpy()
        w = w.transpose(2, 3, 1, 0) if w.ndim == 4 else w.T  # OIHW -> HWIO; [out, in] -> [in, out]
        assert w.shape == ours_leaf.shape, (module, w.shape, ours_leaf.shape)
        copied.append(jnp.asarray(w))
    trainable = sum(p.numel() for p in theirs.parameters())
    assert sum(w.size for w in copied) == trainable, "not every EDM parameter has a counterpart"
    out = ours.apply({"params": jax.tree_util.tree_unflatten(tree, copied)}, x, c_noise, labels)
    one_hot = torch.nn.functional.one_hot(torch.tensor(labels), 11)[:, :10].float()  # null: zeros
    with torch.no_grad():
        ref = theirs(torch.tensor(x).permute(0, 3, 1, 2), torch.tensor(c_noise), one_hot)
    ref = ref.permute(0, 2, 3, 1).numpy()
    print(f"parameters: {trainable}; max |ours - EDM|: {np.abs(np.asarray(out) - ref).max():.3g}; "
          f"max |EDM output|: {np.abs(ref).max():.3g}")


if __name__ == "__main__":
    main()
