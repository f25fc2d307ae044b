"""The Flax SD VAE against diffusers' `AutoencoderKL` on random weights saved in diffusers' layout,
and the safetensors reader's refusals; a tiny config with every path of the SD one (a channel
change, so conv_shortcut, mid-block attention, a down and an up step)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import run_utils
from safetensors.numpy import load_file, save_file

from consistency_jax.errors import ConfigError
from consistency_jax.networks.pretrained import WeightsUnavailableError, load_sd_vae, load_sd_vae_autoencoder
from consistency_jax.networks.pretrained import sd_vae as sd_vae_module
from consistency_jax.networks.pretrained.sd_vae import SDVAEConfig, VAEWeightsError, expected_tensors

TINY = SDVAEConfig(block_out_channels=(8, 16), layers_per_block=1, latent_channels=4, norm_num_groups=4)
TOLERANCE = 1e-5  # max |ours - diffusers| / max |diffusers|
# the paths the tiny config must exercise: conv_shortcut where channels change, mid-block attention
EXERCISED = (
    "encoder.down_blocks.1.resnets.0.conv_shortcut.weight",
    "decoder.up_blocks.1.resnets.0.conv_shortcut.weight",
    "encoder.mid_block.attentions.0.to_q.weight",
    "decoder.mid_block.attentions.0.to_out.0.weight",
)


def _relative_error(ours, reference) -> float:
    return float(np.abs(np.asarray(ours) - reference).max() / np.abs(reference).max())


def _images(shape=(2, 16, 16, 3)) -> np.ndarray:
    return np.random.default_rng(1).uniform(-1, 1, shape).astype(np.float32)


def _latents() -> np.ndarray:
    return np.random.default_rng(2).normal(size=(2, 8, 8, TINY.latent_channels)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory) -> Path:
    """Random tensors of every name and shape of the tiny VAE, written in diffusers' layout."""
    rng = np.random.default_rng(0)
    tensors = {k: (0.2 * rng.normal(size=s)).astype(np.float32) for k, s in expected_tensors(TINY).items()}
    path = tmp_path_factory.mktemp("tiny") / "vae.safetensors"
    save_file(tensors, str(path))
    return path


@pytest.fixture(scope="module")
def diffusers_vae(tmp_path_factory):
    """diffusers' AutoencoderKL under TINY, every parameter perturbed (norm scales and biases
    too, so nothing is an identity), saved by `save_pretrained`: (model, its folder)."""
    torch = pytest.importorskip("torch", reason="needs torch (requirements-test.txt)")
    diffusers = pytest.importorskip("diffusers", reason="needs diffusers (requirements-test.txt)")
    torch.manual_seed(0)
    levels = len(TINY.block_out_channels)
    model = diffusers.AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=TINY.block_out_channels,
        layers_per_block=TINY.layers_per_block,
        latent_channels=TINY.latent_channels,
        norm_num_groups=TINY.norm_num_groups,
    ).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    folder = tmp_path_factory.mktemp("diffusers_vae")
    model.save_pretrained(folder, safe_serialization=True)
    return model, folder


def test_encode_matches_diffusers_posterior_mean(diffusers_vae):
    import torch

    model, folder = diffusers_vae
    assert set(EXERCISED) <= set(model.state_dict()), "the tiny config must have these paths"
    vae = load_sd_vae_autoencoder(folder)  # the folder's config.json gives the architecture
    assert (vae.latent_channels, vae.downsample, vae.scaling_factor) == (4, 2, 0.18215)
    images = _images()
    with torch.no_grad():
        mean = model.encode(torch.from_numpy(images).permute(0, 3, 1, 2)).latent_dist.mean
    assert _relative_error(vae.encode(images), mean.permute(0, 2, 3, 1).numpy()) < TOLERANCE


def test_decode_matches_diffusers(diffusers_vae):
    import torch

    model, folder = diffusers_vae
    latents = _latents()
    with torch.no_grad():
        decoded = model.decode(torch.from_numpy(latents).permute(0, 3, 1, 2)).sample
    _, decode = load_sd_vae(folder)  # the (encode, decode) entry point
    assert _relative_error(decode(latents), decoded.permute(0, 2, 3, 1).numpy()) < TOLERANCE


def test_legacy_attention_names_load_as_the_current_ones(diffusers_vae, tmp_path):
    _, folder = diffusers_vae
    tensors = load_file(folder / sd_vae_module.WEIGHTS_NAME)
    legacy = {}
    for key, value in tensors.items():
        for old, new in sd_vae_module.LEGACY_ATTENTION_NAMES.items():
            key = key.replace(f".attentions.0.{new}.", f".attentions.0.{old}.")
        legacy[key] = value
    assert "encoder.mid_block.attentions.0.proj_attn.weight" in legacy
    save_file(legacy, str(tmp_path / "legacy.safetensors"))
    current, renamed = load_sd_vae_autoencoder(folder), load_sd_vae_autoencoder(tmp_path / "legacy.safetensors", TINY)
    np.testing.assert_array_equal(renamed.decode(_latents()), current.decode(_latents()))


def _rewrite(source: Path, target: Path, drop: str = "", replace: dict | None = None) -> Path:
    """`source`'s tensors without `drop` and with `replace`, saved at `target`."""
    tensors = {k: v for k, v in load_file(source).items() if k != drop} | (replace or {})
    save_file(tensors, str(target))
    return target


def test_missing_and_misshaped_tensors_are_refused_by_name(tiny_file, tmp_path):
    name = "decoder.mid_block.attentions.0.to_q.bias"
    missing = _rewrite(tiny_file, tmp_path / "missing.safetensors", drop=name)
    with pytest.raises(VAEWeightsError, match=f"lacks the SD VAE tensors {re.escape(name)}"):
        load_sd_vae_autoencoder(missing, TINY)
    name = "encoder.conv_in.weight"
    wrong = {name: np.zeros((8, 3, 1, 1), np.float32)}
    misshaped = _rewrite(tiny_file, tmp_path / "misshaped.safetensors", replace=wrong)
    with pytest.raises(VAEWeightsError, match=rf"{re.escape(name)} has shape \(8, 3, 1, 1\).*needs \(8, 3, 3, 3\)"):
        load_sd_vae_autoencoder(misshaped, TINY)
    extra = _rewrite(tiny_file, tmp_path / "extra.safetensors", replace={"encoder.extra.weight": np.zeros(2)})
    with pytest.raises(VAEWeightsError, match="does not have: encoder.extra.weight"):
        load_sd_vae_autoencoder(extra, TINY)
    assert issubclass(VAEWeightsError, ConfigError)  # a user error: the CLI exits 2 without traceback


def test_inputs_of_the_wrong_channel_count_are_refused(tiny_file):
    vae = load_sd_vae_autoencoder(tiny_file, TINY)
    with pytest.raises(ConfigError, match=r"NHWC images with 3 channels; got shape \(2, 16, 16, 1\)"):
        vae.encode(_images((2, 16, 16, 1)))
    with pytest.raises(ConfigError, match=r"NHWC latents with 4 channels; got shape \(2, 8, 8, 3\)"):
        vae.decode(_latents()[..., :3])


def test_another_architecture_and_unsupported_configs_are_refused(tmp_path):
    unet = {  # a diffusers UNet2DModel's first tensors
        "conv_in.weight": np.zeros((8, 3, 3, 3), np.float32),
        "time_embedding.linear_1.weight": np.zeros((32, 8), np.float32),
        "down_blocks.0.resnets.0.norm1.weight": np.ones(8, np.float32),
    }
    save_file(unet, str(tmp_path / "unet.safetensors"))
    with pytest.raises(VAEWeightsError, match="not a diffusers AutoencoderKL weight file: it has none"):
        load_sd_vae_autoencoder(tmp_path / "unet.safetensors", TINY)
    ldm = {"first_stage_model.encoder.down.0.block.0.norm1.weight": np.ones(8, np.float32)}
    save_file(ldm, str(tmp_path / "ldm.safetensors"))
    with pytest.raises(VAEWeightsError, match="in the original LDM layout"):
        load_sd_vae_autoencoder(tmp_path / "ldm.safetensors", TINY)
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(VAEWeightsError, match="cannot be read as a safetensors file"):
        load_sd_vae_autoencoder(tmp_path / "garbage.safetensors", TINY)
    folder = tmp_path / "sd3"
    folder.mkdir()
    save_file(unet, str(folder / sd_vae_module.WEIGHTS_NAME))
    for setting, message in [
        ({"shift_factor": 0.0609}, r"shift_factor=0\.0609 is not supported"),
        ({"_class_name": "AutoencoderTiny"}, "configures AutoencoderTiny, not AutoencoderKL"),
        ({"norm_num_groups": 3}, "multiples of norm_num_groups"),
        ({"latents_mean": [0.1] * 4}, "latents_mean=.* is not supported"),
    ]:
        (folder / "config.json").write_text(json.dumps({"block_out_channels": [8, 16]} | setting))
        with pytest.raises(VAEWeightsError, match=message):
            load_sd_vae_autoencoder(folder)


def test_a_missing_file_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("CONSISTENCY_JAX_CACHE", str(tmp_path))
    target = tmp_path / "sd-vae-ft-mse" / "diffusion_pytorch_model.safetensors"
    with pytest.raises(WeightsUnavailableError, match=rf"No Stable Diffusion VAE weights at {re.escape(str(target))}"):
        load_sd_vae()
    with pytest.raises(WeightsUnavailableError, match="huggingface.co/stabilityai/sd-vae-ft-mse.*given as"):
        load_sd_vae_autoencoder(tmp_path / "nowhere.safetensors")


def test_loading_and_running_import_no_torch(tiny_file, tmp_path):
    out = tmp_path / "decoded.npy"
    code = (
        "import sys\nimport numpy as np\n"
        "from consistency_jax.networks.pretrained import load_sd_vae\n"
        "from consistency_jax.networks.pretrained.sd_vae import SDVAEConfig\n"
        f"encode, decode = load_sd_vae({str(tiny_file)!r}, SDVAEConfig((8, 16), 1, 4, 4))\n"
        f"np.save({str(out)!r}, np.asarray(decode(encode(np.load({str(tmp_path / 'x.npy')!r})))))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    np.save(tmp_path / "x.npy", _images())
    subprocess.run([sys.executable, "-c", code], check=True, cwd=run_utils.ROOT, env=run_utils.env())
    vae = load_sd_vae_autoencoder(tiny_file, TINY)
    reconstruction = vae.decode(vae.encode(_images()))
    assert np.abs(reconstruction).max() > 0.1  # random weights, yet not a degenerate output
    assert _relative_error(np.load(out), np.asarray(reconstruction)) < TOLERANCE


def test_a_latent_run_takes_the_vae_and_its_scaling_factor_from_its_folder(tiny_file, tmp_path):
    """config.autoencoder.kind='sd_vae' loads the folder's weights and its config.json (architecture
    and scaling factor, as SDXL's 0.13025 would be); a nonzero config scaling factor overrides it."""
    from consistency_jax.config import schema
    from consistency_jax.jobs.latents import load_autoencoder

    folder = tmp_path / "vae"
    folder.mkdir()
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(tiny_file.read_bytes())
    settings = {"block_out_channels": [8, 16], "layers_per_block": 1, "latent_channels": 4,
                "norm_num_groups": 4, "scaling_factor": 0.13025}
    (folder / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL", **settings}))
    config = schema.get_config()
    config.autoencoder.kind, config.autoencoder.path = "sd_vae", str(folder)
    vae = load_autoencoder(config)
    assert (vae.scaling_factor, vae.latent_channels, vae.downsample) == (0.13025, 4, 2)
    encode, _ = load_sd_vae(tiny_file, TINY)
    np.testing.assert_array_equal(np.asarray(vae.encode(_images())), np.asarray(encode(_images())))
    config.autoencoder.scaling_factor = 0.5
    assert load_autoencoder(config).scaling_factor == 0.5
