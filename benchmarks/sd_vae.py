"""The SD VAE (KL-f8, SD 1.x/2.x size, 83.7M parameters): reading the diffusers safetensors file,
then compile and run times of encode and decode.

    python benchmarks/sd_vae.py --size=256 --batch=1

Random weights of every tensor's name and shape are written in diffusers' layout to a temporary
file and read back by `load_sd_vae`'s reader (the cost does not depend on their values).
"""

import functools
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from absl import app, flags
from safetensors.numpy import save_file

from benchmarks import common
from consistency_jax.networks.pretrained.sd_vae import (
    SDVAEConfig,
    expected_tensors,
    sd_vae_decode,
    sd_vae_encode,
    sd_vae_params,
)

COLUMNS = ("op", "size", "batch", "compile_s", "batch_s", "min_s", "img_s", "gflop", "peak_mib", "load_average")


def define_flags() -> None:
    flags.DEFINE_integer("size", 256, "image side (latents: size / 8)")
    flags.DEFINE_integer("batch", 1, "images per call")
    flags.DEFINE_integer("warmup", 1, "untimed calls before the timed ones")
    flags.DEFINE_integer("reps", 3, "timed calls")
    flags.DEFINE_string("out", "", "result JSON (default benchmarks/results/<device>-<date>.json)")


def main(_) -> None:
    f = flags.FLAGS
    record = common.header(f.flag_values_dict())
    config = SDVAEConfig()
    rng = np.random.default_rng(0)
    tensors = {k: (0.02 * rng.normal(size=s)).astype(np.float32) for k, s in expected_tensors(config).items()}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "diffusion_pytorch_model.safetensors"
        save_file(tensors, str(path))
        t = time.perf_counter()
        params = sd_vae_params(path, config)
        read_s = time.perf_counter() - t
    side = f.size // config.downsample
    inputs = {
        "encode": (sd_vae_encode, rng.uniform(-1, 1, (f.batch, f.size, f.size, 3)).astype(np.float32)),
        "decode": (sd_vae_decode, rng.normal(size=(f.batch, side, side, config.latent_channels)).astype(np.float32)),
    }
    rows = []
    for op, (fn, x) in inputs.items():
        t = time.perf_counter()
        compiled = fn.lower(params, x, config=config).compile()
        compile_s = time.perf_counter() - t
        times = common.blocked_times(functools.partial(compiled, params, x), f.warmup, f.reps)
        batch_s = statistics.median(times)
        rows.append(
            dict(
                op=op, size=f.size, batch=f.batch, compile_s=compile_s, batch_s=batch_s, min_s=min(times),
                img_s=f.batch / batch_s, gflop=common.flops(compiled) / 1e9, **common.memory(compiled),
                load_average=common.load_average(),
            )
        )  # fmt: skip
    n_params = sum(int(np.prod(s)) for s in expected_tensors(config).values())
    record.update(sd_vae=rows, read_s=read_s, parameters=n_params, load_average_end=common.load_average())
    print(f"parameters {n_params:,}; safetensors read, check and convert {read_s:.2f} s")
    common.print_table(rows, COLUMNS, "SD VAE (KL-f8), float32")
    print(f"\nwrote {common.write_json(record, f.out or None)}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
