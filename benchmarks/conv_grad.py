"""The U-Net's 3x3 conv, forward and backward, with XLA's gradient, with the kernel gradient
taken as k^2 matmuls instead, and with the padding beyond kernel // 2 applied apart by jnp.pad,
as GFLOP/s and as a fraction of a matmul's.

The matmul form was tried for the CPU and not adopted: faster on the 32x32x256 conv at batch 8,
slower or equal on every other shape here and on the digits sizes, and the whole CIFAR-10-size
CD step did not get faster (see the README's performance section).

    python benchmarks/conv_grad.py                       # CIFAR-10 NCSN++ sizes at batch 8
    python benchmarks/conv_grad.py --batch=64 --shapes=8x8x16,8x8x32,4x4x32   # the digits U-Net
    python benchmarks/conv_grad.py --pad=2 --shapes=16x16x256,8x8x256   # NCSN++'s fused down conv

At --pad=2 (the fused down conv's padding: 1 for the kernel, 1 for the (1, 3, 3, 1) filter) XLA's
CPU kernel gradient is tens of times slower than with the extra padding applied apart, so the
U-Net's conv pads apart (`pad_apart`). `grad_w_in_loop` is the kernel gradient inside a lax.fori_loop,
as in a train step scanned over several steps per dispatch: on the CPU XLA's runs there tens of
times slower than alone, which is why train.py refuses steps_per_dispatch > 1 for the U-Nets on
the CPU.
"""

import functools
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp
from absl import app, flags

from benchmarks import common
from consistency_jax.networks.unet import conv2d as unet_conv  # pads beyond k // 2 apart


def xla_conv(x: jax.Array, w: jax.Array, pad: int) -> jax.Array:
    """The baseline: XLA's stride-1 conv with all of its padding inside the op (NHWC, HWIO)."""
    return jax.lax.conv_general_dilated(
        x, w, (1, 1), [(pad, pad)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def matmul_grad_conv(x: jax.Array, w: jax.Array, pad: int) -> jax.Array:
    """The same conv; its kernel gradient as k^2 matmuls (`_matmul_grad_conv_bwd`)."""
    return xla_conv(x, w, pad)


def _matmul_grad_conv_fwd(x: jax.Array, w: jax.Array, pad: int) -> tuple[jax.Array, tuple]:
    return xla_conv(x, w, pad), (x, w)


def _matmul_grad_conv_bwd(pad: int, residuals: tuple, g: jax.Array) -> tuple[jax.Array, jax.Array]:
    """dx by XLA's transposed conv; dw[i, j] = sum over b, h, w of x_pad[b, h + i, w + j] g[b, h, w]."""
    x, w = residuals
    (dx,) = jax.linear_transpose(lambda x: xla_conv(x, w, pad), x)(g)
    xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    h, v = g.shape[1:3]
    taps = range(w.shape[0])
    dw = jnp.stack([
        jnp.stack([jnp.einsum("bhwc,bhwd->cd", xp[:, i : i + h, j : j + v], g) for j in taps])
        for i in taps
    ])
    return dx, dw.astype(w.dtype)


matmul_grad_conv.defvjp(_matmul_grad_conv_fwd, _matmul_grad_conv_bwd)

CONVS = {"xla": xla_conv, "matmul_grad": matmul_grad_conv, "pad_apart": unet_conv}
COLUMNS = ("shape", "pad", "conv", "part", "ms", "gflop_s", "peak_frac")


LOOP_STEPS = 8


def parts(conv, pad: int) -> dict:
    """Jitted forward, input gradient, kernel gradient and both gradients of sum(conv(x, w)^2),
    and the kernel gradient inside a loop (LOOP_STEPS gradient steps on w by lax.fori_loop, as
    a scanned train step runs it; timed per step)."""
    loss = lambda x, w: jnp.sum(conv(x, w, pad) ** 2)
    descend = lambda x: lambda i, w: w - 1e-6 * jax.grad(loss, 1)(x, w)
    return {
        "forward": jax.jit(lambda x, w: conv(x, w, pad)),
        "grad_x": jax.jit(jax.grad(loss, 0)),
        "grad_w": jax.jit(jax.grad(loss, 1)),
        "grad_both": jax.jit(jax.grad(loss, (0, 1))),
        "grad_w_in_loop": jax.jit(lambda x, w: jax.lax.fori_loop(0, LOOP_STEPS, descend(x), w)),
    }


def bench_shape(batch: int, side: int, channels: int, pad: int, reps: int) -> list[dict]:
    """Rows for a 3x3 conv, `channels` in and out, padded by `pad`, on side x side images."""
    x = jax.random.normal(jax.random.key(0), (batch, side, side, channels))
    w = jax.random.normal(jax.random.key(1), (3, 3, channels, channels)) * 0.05
    out_side = side + 2 * pad - 2
    conv_flop = 2 * batch * out_side * out_side * 9 * channels * channels
    # the forward pass once, each gradient once more: the loss's own forward is counted apart
    flop = {"forward": conv_flop, "grad_x": 2 * conv_flop, "grad_w": 2 * conv_flop, "grad_both": 3 * conv_flop,
            "grad_w_in_loop": 2 * conv_flop}
    per_call = {"grad_w_in_loop": LOOP_STEPS}
    rows = []
    grads = [jax.grad(lambda x, w, c=conv: jnp.sum(c(x, w, pad) ** 2), (0, 1))(x, w) for conv in CONVS.values()]
    for other in grads[1:]:  # every form computes the same gradients
        for a, b in zip(grads[0], other, strict=True):
            assert float(jnp.max(jnp.abs(a - b))) <= 1e-4 * float(jnp.max(jnp.abs(a))), "gradients differ"
    for name, conv in CONVS.items():
        for part, fn in parts(conv, pad).items():
            compiled, _ = common.compile_timed(fn, x, w)
            s = statistics.median(common.blocked_times(lambda c=compiled: c(x, w), 1, reps)) / per_call.get(part, 1)
            peak = common.matmul_peak()
            rows.append({
                "shape": f"{batch}x{side}x{side}x{channels}", "pad": pad, "conv": name, "part": part,
                "ms": 1e3 * s, "gflop_s": flop[part] / s / 1e9, "peak_frac": flop[part] / s / peak,
            })
    return rows


def main(_) -> None:
    f = flags.FLAGS
    record = common.header(f.flag_values_dict())
    rows = []
    for shape in f.shapes:
        side, _, channels = (int(v) for v in shape.split("x"))
        rows += bench_shape(f.batch, side, channels, f.pad, f.reps)
    record.update(rows=rows, load_average_end=common.load_average())
    common.print_table(rows, COLUMNS, "3x3 conv")
    print(f"\nwrote {common.write_json(record, f.out or None)}")


if __name__ == "__main__":
    flags.DEFINE_integer("batch", 8, "images per batch")
    flags.DEFINE_list("shapes", ["32x32x256", "16x16x256", "8x8x256"], "SIDExSIDExCHANNELS")
    flags.DEFINE_integer("pad", 1, "zero padding of each side (1: the U-Net's 3x3 conv)")
    flags.DEFINE_integer("reps", 5, "timed calls (median reported)")
    flags.DEFINE_string("out", "", "JSON path (default benchmarks/results/<device>-<date>.json)")
    app.run(main)
