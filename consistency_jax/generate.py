"""Samples from a run: the configured samplers, batched and jitted, written as .npz and .png."""

import os
from collections.abc import Callable

import flax.linen as nn
import jax
import matplotlib
import ml_collections
import numpy as np

from consistency_jax import sampling
from consistency_jax.parametrization import Parametrization, bind

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def sampler_names(config: ml_collections.ConfigDict) -> list[str]:
    """The samplers a run of this config writes: the teacher's ODE, or one- and multistep."""
    if config.objective.name == "edm":
        return [f"teacher_{config.sample.teacher_solver}{2 * config.sample.teacher_steps - 1}"]
    return ["onestep", f"{len(config.sample.multistep_sigmas) + 1}step"]


def make_sampler(
    config: ml_collections.ConfigDict, model: nn.Module, name: str, shape: tuple[int, ...]
) -> Callable[[object, jax.Array], jax.Array]:
    """A jitted `(params, key) -> samples [sample.batch_size, *shape]` for a `sampler_names` entry."""
    m, s = config.model, config.sample
    batch_shape = (s.batch_size, *shape)
    clip = len(shape) == 3  # images live in [-1, 1]
    if config.objective.name == "edm":
        edm = Parametrization("edm", m.sigma_data, 0.0)
        sigmas = sampling.teacher_sigmas(s.teacher_steps, m.sigma_min, m.sigma_max, m.rho)
        fn = lambda params, key: sampling.teacher_sample(  # noqa: E731
            bind(model, edm, params), key, batch_shape, sigmas, s.teacher_solver, clip
        )
    else:
        cm = Parametrization("consistency", m.sigma_data, m.sigma_min)
        taus = (m.sigma_max,) if name == "onestep" else (m.sigma_max, *s.multistep_sigmas)
        fn = lambda params, key: sampling.multistep_sample(  # noqa: E731
            bind(model, cm, params), key, batch_shape, taus, m.sigma_min, clip
        )
    return jax.jit(fn)


def generate(sampler: Callable, params, key: jax.Array, num: int) -> np.ndarray:
    """`num` samples from `sampler`, batch by batch; batch b uses fold_in(key, b)."""
    batches, count, b = [], 0, 0
    while count < num:
        batches.append(np.asarray(sampler(params, jax.random.fold_in(key, b))))
        count += len(batches[-1])
        b += 1
    return np.concatenate(batches)[:num]


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[-1, 1] float images -> uint8 [0, 255] (as saved and as evaluated)."""
    return np.clip(np.round((images + 1) * 127.5), 0, 255).astype(np.uint8)


def write_samples(workdir: str, name: str, samples: np.ndarray, reference: np.ndarray | None = None) -> str:
    """workdir/samples/<name>.npz (array `samples`: uint8 NHWC for images, float32 vectors) and a PNG."""
    out = os.path.join(workdir, "samples")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"{name}.npz")
    is_image = samples.ndim == 4
    np.savez(path, samples=to_uint8(samples) if is_image else samples.astype(np.float32))
    png = os.path.join(out, f"{name}.png")
    if is_image:
        plt.imsave(png, image_grid(to_uint8(samples[:64])).squeeze(), cmap="gray")
    else:
        plot_points(png, {name: samples} | ({"data": reference} if reference is not None else {}))
    return path


def image_grid(images: np.ndarray) -> np.ndarray:
    """A square-ish grid of NHWC uint8 images with a 1-pixel border."""
    n, h, w, c = images.shape
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    grid = np.zeros((rows * (h + 1) + 1, cols * (w + 1) + 1, c), np.uint8)
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        grid[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + q * (w + 1) : 1 + q * (w + 1) + w] = img
    return grid


def plot_points(path: str, sets: dict[str, np.ndarray]) -> None:
    """Scatter plots of 2-D point sets side by side, on shared axes."""
    fig, axes = plt.subplots(1, len(sets), figsize=(4 * len(sets), 4), squeeze=False)
    for ax, (title, pts) in zip(axes[0], sets.items()):
        ax.scatter(pts[:, 0], pts[:, 1], s=1, alpha=0.5)
        ax.set_title(title)
        ax.set_xlim(-1.5, 1.5)
        ax.set_ylim(-1.5, 1.5)
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
