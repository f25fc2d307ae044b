"""The Flax SD VAE against diffusers' `AutoencoderKL` at the full SD 1.x/2.x size (tests/test_sd_vae.py
checks a tiny config): random weights, every parameter perturbed, saved by `save_pretrained` and
again under diffusers' legacy attention names (as stabilityai/sd-vae-ft-mse ships them), read by
`load_sd_vae`; prints max |ours - diffusers| / max |diffusers| of encode (posterior mean) and decode.

    pip install torch diffusers  # requirements-test.txt
    python benchmarks/sd_vae_parity.py --size=64
"""

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from absl import app, flags
from diffusers import AutoencoderKL
from safetensors.numpy import load_file, save_file

from consistency_jax.networks.pretrained import load_sd_vae_autoencoder
from consistency_jax.networks.pretrained.sd_vae import LEGACY_ATTENTION_NAMES, WEIGHTS_NAME

flags.DEFINE_integer("size", 64, "image side (latents: size / 8)")
flags.DEFINE_integer("batch", 2, "images per call")


def _relative_error(ours, reference) -> float:
    return float(np.abs(np.asarray(ours) - reference).max() / np.abs(reference).max())


def main(_) -> None:
    f = flags.FLAGS
    torch.manual_seed(0)
    model = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
    ).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (f.batch, f.size, f.size, 3)).astype(np.float32)
    latents = rng.normal(size=(f.batch, f.size // 8, f.size // 8, 4)).astype(np.float32)
    with torch.no_grad():
        mean = model.encode(torch.from_numpy(images).permute(0, 3, 1, 2)).latent_dist.mean
        decoded = model.decode(torch.from_numpy(latents).permute(0, 3, 1, 2)).sample
    mean, decoded = mean.permute(0, 2, 3, 1).numpy(), decoded.permute(0, 2, 3, 1).numpy()
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder, safe_serialization=True)
        legacy = {}
        for key, value in load_file(Path(folder) / WEIGHTS_NAME).items():
            for old, new in LEGACY_ATTENTION_NAMES.items():
                key = key.replace(f".attentions.0.{new}.", f".attentions.0.{old}.")
            legacy[key] = value
        (Path(folder) / "legacy").mkdir()
        save_file(legacy, str(Path(folder) / "legacy" / WEIGHTS_NAME))
        for name, path in [("diffusers names", folder), ("legacy attention names", Path(folder) / "legacy")]:
            vae = load_sd_vae_autoencoder(path)
            print(
                f"{name}: {f.batch}x{f.size}x{f.size} encode {_relative_error(vae.encode(images), mean):.2e}, "
                f"decode {_relative_error(vae.decode(latents), decoded):.2e} (max |diffusers| "
                f"{np.abs(mean).max():.3g}, {np.abs(decoded).max():.3g})"
            )


if __name__ == "__main__":
    app.run(main)
