"""Samples from a run: the configured samplers, batched and jitted, written as .npz and .png."""

import os
from collections.abc import Callable

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from matplotlib.figure import Figure
from matplotlib.image import imsave

from consistency_jax.core import sampling
from consistency_jax.core.parametrization import (
    Parametrization,
    denoiser,
    meanflow_network,
    trigflow_network,
    trigflow_time,
)
from consistency_jax.data import DataInfo, build_dataset
from consistency_jax.networks import network_fn
from consistency_jax.training import files, parallel


def sampler_names(config: ml_collections.ConfigDict) -> list[str]:
    """The samplers a run of this config writes: the teacher's ODE, or one- and multistep."""
    if config.objective.name == "edm":
        return [f"teacher_{config.sample.teacher_solver}{nfe(config, 'teacher')}"]
    return ["onestep", f"{nfe(config, 'multistep')}step"]


def nfe(config: ml_collections.ConfigDict, sampler: str) -> int:
    """Network evaluations per sample of a sampler of this config: the teacher's Heun-type
    solvers on teacher_steps sigmas then 0 (EDM Alg. 1, 2), one step, or the multistep list."""
    if config.objective.name == "edm":
        if config.sample.teacher_solver == "euler":
            return config.sample.teacher_steps
        return 2 * config.sample.teacher_steps - 1
    if sampler == "onestep":
        return 1
    if config.objective.name == "meanflow":
        return len(config.sample.meanflow_steps) + 1
    return len(multistep_times(config))


def is_trigflow(config: ml_collections.ConfigDict) -> bool:
    """Whether the run's consistency function is sCM's, on TrigFlow's time (sCT, sCD)."""
    return config.objective.name in ("sct", "scd")


def multistep_times(config: ml_collections.ConfigDict) -> tuple[float, ...]:
    """The multistep sampler's noise levels from the largest: sigmas (CM) or TrigFlow times (sCM)."""
    m, s = config.model, config.sample
    if is_trigflow(config):
        return (float(trigflow_time(m.sigma_max, m.sigma_data)), *s.trigflow_steps)
    return (m.sigma_max, *s.multistep_sigmas)


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
        churn = sampling.Churn(s.s_churn, s.s_min, s.s_max, s.s_noise)
        fn = lambda params, key: sampling.teacher_sample(
            denoiser(network_fn(model, params), edm), key, batch_shape, sigmas, s.teacher_solver,
            clip, churn,
        )
    elif config.objective.name == "meanflow":
        ts = (1.0, 0.0) if name == "onestep" else (1.0, *s.meanflow_steps, 0.0)
        fn = lambda params, key: sampling.meanflow_sample(
            meanflow_network(network_fn(model, params)), jax.random.normal(key, batch_shape), ts, clip
        )
    else:
        times = multistep_times(config)
        times = times[:1] if name == "onestep" else times
        if is_trigflow(config):
            trig = Parametrization("trigflow", m.sigma_data, 0.0)
            f = lambda params: denoiser(
                trigflow_network(network_fn(model, params), m.scm_network, m.sigma_data), trig
            )
            fn = lambda params, key: sampling.trigflow_sample(
                f(params), key, batch_shape, times, m.sigma_data, m.sigma_max, clip
            )
        else:
            cm = Parametrization("consistency", m.sigma_data, m.sigma_min)
            fn = lambda params, key: sampling.multistep_sample(
                denoiser(network_fn(model, params), cm), key, batch_shape, times, m.sigma_min, clip
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


def save_samples(workdir: str, name: str, samples: np.ndarray, reference: np.ndarray | None = None) -> str:
    """workdir/samples/<name>.npz (array `samples`: uint8 NHWC for images, float32 vectors) and a PNG,
    each written whole (files.write_atomic)."""
    out = os.path.join(workdir, "samples")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"{name}.npz")
    is_image = samples.ndim == 4
    saved = to_uint8(samples) if is_image else samples.astype(np.float32)
    files.write_atomic(path, lambda f: np.savez(f, samples=saved), "samples")
    png = os.path.join(out, f"{name}.png")
    if is_image:
        grid = image_grid(to_uint8(samples[:64])).squeeze()
        files.write_atomic(png, lambda f: imsave(f, grid, cmap="gray", format="png"), "a sample grid")
    else:
        sets = {name: samples} | ({"data": reference} if reference is not None else {})
        files.write_atomic(png, lambda f: plot_points(f, sets), "a sample plot")
    return path


def image_grid(images: np.ndarray, cols: int | None = None) -> np.ndarray:
    """A grid of NHWC uint8 images with a 1-pixel border, `cols` wide (default: square-ish)."""
    n, h, w, c = images.shape
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    grid = np.zeros((rows * (h + 1) + 1, cols * (w + 1) + 1, c), np.uint8)
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        grid[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + q * (w + 1) : 1 + q * (w + 1) + w] = img
    return grid


def plot_points(path, sets: dict[str, np.ndarray]) -> None:
    """Scatter plots of 2-D point sets side by side, on shared axes."""
    fig = Figure(figsize=(4 * len(sets), 4))
    axes = fig.subplots(1, len(sets), squeeze=False)
    for ax, (title, pts) in zip(axes[0], sets.items()):
        ax.scatter(pts[:, 0], pts[:, 1], s=1, alpha=0.5)
        ax.set_title(title)
        ax.set_xlim(-1.5, 1.5)
        ax.set_ylim(-1.5, 1.5)
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path, dpi=80, format="png")


def write_samples(config, workdir: str, model: nn.Module, params, info: DataInfo, tag: str = "") -> dict:
    """Every configured sampler's samples at `params`, as workdir/samples/<name><tag>.npz; paths.

    Every process takes part: each sampling batch is split over the devices of config.parallel's
    mesh (config.sample.batch_size must divide by the device count); process 0 writes the files.
    """
    mesh = parallel.make_mesh(config.parallel)
    parallel.check_batch_size("sample.batch_size", config.sample.batch_size, mesh)
    key = jax.random.fold_in(jax.random.key(config.seed), 2)
    reference = _reference(config, info) if parallel.is_main_process() else None
    paths = {}
    for name in sampler_names(config):
        sampler = parallel.sharded_sampler(make_sampler(config, model, name, info.shape), mesh)
        samples = generate(sampler, params, key, config.sample.num_samples)
        if parallel.is_main_process():
            paths[name] = save_samples(workdir, name + tag, samples, reference)
    return paths


def _reference(config: ml_collections.ConfigDict, info: DataInfo) -> np.ndarray | None:
    """A batch of the data, plotted beside samples of vector data."""
    if len(info.shape) != 1:
        return None
    return next(build_dataset(config.data, seed=config.seed)[0])["x"]
