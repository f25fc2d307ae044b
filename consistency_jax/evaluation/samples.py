"""Samples from a run: the configured samplers, batched and jitted, written as .npz and .png."""

import hashlib
import json
import os
import re
from collections.abc import Callable

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from matplotlib.figure import Figure
from matplotlib.image import imsave

from consistency_jax.config import checks
from consistency_jax.core import sampling
from consistency_jax.core.parametrization import (
    Parametrization,
    denoiser,
    meanflow_network,
    trigflow_network,
    trigflow_time,
)
from consistency_jax.data import DataInfo, build_dataset, example_reader, num_labels
from consistency_jax.networks import network_fn
from consistency_jax.networks.autoencoder import Autoencoder, conv_autoencoder, unscale
from consistency_jax.training import files, parallel
from consistency_jax.training.objectives import teacher_denoiser

RECONSTRUCTION = "reconstruction"  # an autoencoder run's samples: decoded encodings of the data
SAMPLE_SECTIONS = ("seed", "model", "sample")  # the config a run's samples/ files depend on
MAX_TAG = 80  # a longer overrides tag is replaced by a hash of the overrides


def overrides_tag(overrides: dict) -> str:
    """The file-name tag of samples drawn under `overrides` ({dotted key: JSON value}): one
    _<key><value> per key, sorted (`{"model.sigma_max": 20.0, "seed": 7}` -> _model.sigma_max20.0_seed7,
    a list's items joined by -); over MAX_TAG characters, _overrides<hash of the overrides>."""
    value = lambda v: "-".join(map(value, v)) if isinstance(v, list) else json.dumps(v).strip('"')
    tag = "".join(f"_{key}{re.sub(r'[^A-Za-z0-9._+-]', '_', value(v))}" for key, v in sorted(overrides.items()))
    if len(tag) <= MAX_TAG:
        return tag
    return "_overrides" + hashlib.sha256(json.dumps(overrides, sort_keys=True).encode()).hexdigest()[:12]


def is_guided(config: ml_collections.ConfigDict) -> bool:
    """Whether the run samples at guidance scales (sample.guidance other than (1.0,))."""
    return tuple(config.sample.guidance) != (1.0,)


def base_sampler_names(config: ml_collections.ConfigDict) -> list[str]:
    """The samplers of a run, before guidance: the teacher's ODE, an LCM student's 1, 2, 4 ...
    steps, or one- and multistep."""
    if config.objective.name == "autoencoder":
        return [RECONSTRUCTION]
    if config.objective.name == "edm":
        return [f"teacher_{config.sample.teacher_solver}{_teacher_nfe(config)}"]
    if config.objective.name == "lcm":
        return [f"{k}step" for k in config.sample.lcm_steps]
    return ["onestep", f"{nfe(config, 'multistep')}step"]


def sampler_names(config: ml_collections.ConfigDict) -> list[str]:
    """The samplers a run of this config writes: each base sampler, and on a guided run each at
    every w of sample.guidance, named <sampler>_w<w>."""
    names = base_sampler_names(config)
    if not is_guided(config):
        return names
    return [f"{n}_w{w:g}" for n in names for w in config.sample.guidance]


def sampler_spec(config: ml_collections.ConfigDict, name: str) -> tuple[str, float]:
    """(base sampler, guidance scale w) of a `sampler_names` entry."""
    for base in base_sampler_names(config):
        if name == base:
            return base, 1.0
        for w in config.sample.guidance:
            if name == f"{base}_w{w:g}":
                return base, float(w)
    raise ValueError(f"Unknown sampler {name!r}; this config has {sampler_names(config)}.")


def _teacher_nfe(config: ml_collections.ConfigDict) -> int:
    """Evaluations of the teacher's Heun-type solvers on teacher_steps sigmas then 0 (EDM Alg. 1, 2)."""
    if config.sample.teacher_solver == "euler":
        return config.sample.teacher_steps
    return 2 * config.sample.teacher_steps - 1


def nfe(config: ml_collections.ConfigDict, sampler: str) -> int:
    """Network evaluations per sample of a sampler of this config: the teacher's ODE (twice as
    many at a guidance scale w other than 0 and 1: conditional and unconditional), one step,
    an LCM student's steps, or the multistep list; none for an autoencoder's reconstructions."""
    if config.objective.name == "autoencoder":
        return 0
    if config.objective.name == "edm":
        w = sampler_spec(config, sampler)[1]
        return _teacher_nfe(config) * (1 if w in (0.0, 1.0) else 2)
    if config.objective.name == "lcm":
        return int(sampler_spec(config, sampler)[0].removesuffix("step"))
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


Sampler = Callable[[object, jax.Array, jax.Array | None], jax.Array]  # (params, key, labels)


def consistency_function(
    config: ml_collections.ConfigDict, model: nn.Module, params, labels: jax.Array | None = None, w: float = 1.0
) -> sampling.ConsistencyFn:
    """A consistency run's f(x, time) -> x_0: CM's f(x_sigma, sigma), or sCM's f(x_t, t) on
    TrigFlow time (sCT, sCD); an LCM student's at guidance scale w (network.guidance_embedding)."""
    m = config.model
    if is_trigflow(config):
        net = trigflow_network(network_fn(model, params, labels), m.scm_network, m.sigma_data)
        return denoiser(net, Parametrization("trigflow", m.sigma_data, 0.0))
    guided = config.network.guidance_embedding
    net = network_fn(model, params, labels, guidance=w if guided else None)
    return denoiser(net, Parametrization("consistency", m.sigma_data, m.sigma_min))


def make_sampler(
    config: ml_collections.ConfigDict, model: nn.Module, name: str, shape: tuple[int, ...],
    autoencoder: Autoencoder | None = None,
) -> Sampler:
    """A jitted `(params, key, labels) -> samples [sample.batch_size, *shape]` for a
    `sampler_names` entry; labels int [sample.batch_size] on a conditional run (`batch_labels`),
    None on an unconditional one. A latent run's sampler (`autoencoder` given, `shape` the
    latents') draws scaled latents and returns them unscaled and decoded: images; its params are
    `sampler_params(params, autoencoder)`."""
    m, s = config.model, config.sample
    batch_shape = (s.batch_size, *shape)
    clip = len(shape) == 3 and autoencoder is None  # images live in [-1, 1], latents do not
    base, w = sampler_spec(config, name)
    if config.objective.name == "edm":
        sigmas = sampling.teacher_sigmas(s.teacher_steps, m.sigma_min, m.sigma_max, m.rho)
        churn = sampling.Churn(s.s_churn, s.s_min, s.s_max, s.s_noise)
        fn = lambda params, key, labels: sampling.teacher_sample(
            teacher_denoiser(model, params, labels, w, m.sigma_data, m.scm_network), key, batch_shape, sigmas,
            s.teacher_solver, clip, churn,
        )
    elif config.objective.name == "meanflow":
        ts = (1.0, 0.0) if name == "onestep" else (1.0, *s.meanflow_steps, 0.0)
        fn = lambda params, key, labels: sampling.meanflow_sample(
            meanflow_network(network_fn(model, params, labels)), jax.random.normal(key, batch_shape),
            ts, clip,
        )
    elif is_trigflow(config):
        times = multistep_times(config)
        times = times[:1] if name == "onestep" else times
        fn = lambda params, key, labels: sampling.trigflow_sample(
            consistency_function(config, model, params, labels), key, batch_shape, times, m.sigma_data,
            m.sigma_max, clip,
        )
    else:
        if config.objective.name == "lcm":
            steps = int(base.removesuffix("step"))
            times = sampling.lcm_sigmas(steps, config.objective.num_scales, m.sigma_min, m.sigma_max, m.rho)
        else:
            times = multistep_times(config)
            times = times[:1] if name == "onestep" else times
        fn = lambda params, key, labels: sampling.multistep_sample(
            consistency_function(config, model, params, labels, w), key, batch_shape, times, m.sigma_min, clip,
        )
    if autoencoder is not None:
        return jax.jit(decoded(fn, autoencoder))
    return jax.jit(fn)


def decoded(sampler: Sampler, ae: Autoencoder) -> Sampler:
    """A latent run's `sampler` followed by the decoder: samples are images. It takes
    `sampler_params(params, ae)`: the decoder's parameters are an argument of the compiled
    program, not constants baked into it (a program the size of the SD VAE, compiled anew for
    each autoencoder)."""
    return lambda params, key, labels: ae.decode_fn(params[1], unscale(sampler(params[0], key, labels), ae))


def sampler_params(params, ae: Autoencoder | None):
    """What a `make_sampler` sampler takes: the network's `params`; on a latent run (`ae` given),
    (the network's, the autoencoder's)."""
    return params if ae is None else (params, ae.params)


def batch_labels(config: ml_collections.ConfigDict, num_classes: int, index: int, size: int) -> np.ndarray | None:
    """The labels of sampling batch `index` of `size` samples (`sampling.sample_labels`: sample i
    of the whole draw gets class i % num_classes, or sample.labels cycled); None if unconditional."""
    if not num_classes:
        return None
    return sampling.sample_labels(index * size, size, num_classes, tuple(config.sample.labels))


def generate(
    sampler: Sampler, params, key: jax.Array, num: int,
    labels_of: Callable[[int], np.ndarray | None] = lambda b: None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """`num` samples from `sampler` and their labels (None if unconditional), batch by batch;
    batch b uses fold_in(key, b) and the labels `labels_of(b)`."""
    batches, labels, count, b = [], [], 0, 0
    while count < num:
        labels.append(labels_of(b))
        batches.append(np.asarray(sampler(params, jax.random.fold_in(key, b), labels[-1])))
        count += len(batches[-1])
        b += 1
    return np.concatenate(batches)[:num], None if labels[0] is None else np.concatenate(labels)[:num]


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[-1, 1] float images -> uint8 [0, 255] (as saved and as evaluated)."""
    return np.clip(np.round((images + 1) * 127.5), 0, 255).astype(np.uint8)


def save_samples(
    workdir: str, name: str, samples: np.ndarray, reference: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> str:
    """workdir/samples/<name>.npz (array `samples`: uint8 NHWC for images, float32 vectors; and
    `labels`, int32, on a conditional run) and a PNG, each written whole (files.write_atomic)."""
    out = os.path.join(workdir, "samples")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"{name}.npz")
    is_image = samples.ndim == 4
    arrays = {"samples": to_uint8(samples) if is_image else samples.astype(np.float32)}
    arrays |= {"labels": labels.astype(np.int32)} if labels is not None else {}
    files.write_atomic(path, lambda f: np.savez(f, **arrays), "samples")
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


def write_samples(
    config, workdir: str, model: nn.Module, params, info: DataInfo, tag: str = "",
    autoencoder: Autoencoder | None = None,
) -> dict:
    """Every configured sampler's samples at `params`, as workdir/samples/<name><tag>.npz; paths.
    A conditional image run also gets workdir/samples/classes<tag>.png (`class_grid`). A latent
    run (`autoencoder` given, `info` its latents') saves the decoded images; an autoencoder run
    its reconstructions of the first sample.num_samples images (`write_reconstructions`).

    Every process takes part: each sampling batch is split over the devices of config.parallel's
    mesh (config.sample.batch_size must divide by the device count); process 0 writes the files.
    """
    if config.objective.name == "autoencoder":
        return write_reconstructions(config, workdir, model, params, info, tag)
    num_classes = num_labels(config.data, info)
    checks.check_labels_fit(config, num_classes)
    mesh = parallel.make_mesh(config.parallel)
    parallel.check_batch_size("sample.batch_size", config.sample.batch_size, mesh)
    key = jax.random.fold_in(jax.random.key(config.seed), 2)
    reference = _reference(config, info) if parallel.is_main_process() else None
    labels_of = lambda b: batch_labels(config, num_classes, b, config.sample.batch_size)
    paths, drawn = {}, {}
    for name in sampler_names(config):
        sampler = parallel.sharded_sampler(make_sampler(config, model, name, info.shape, autoencoder), mesh)
        samples, labels = generate(
            sampler, sampler_params(params, autoencoder), key, config.sample.num_samples, labels_of
        )
        if parallel.is_main_process():
            paths[name] = save_samples(workdir, name + tag, samples, reference, labels)
            drawn[name] = (samples, labels)
    if num_classes and len(info.shape) == 3 and parallel.is_main_process():
        png = os.path.join(workdir, "samples", f"classes{tag}.png")
        files.write_atomic(png, lambda f: class_grid(f, drawn, num_classes), "a class grid")
    return paths


def reconstructions(
    config: ml_collections.ConfigDict, model: nn.Module, params, info: DataInfo, count: int, batch_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An autoencoder run's first `count` images x of the data, their latents encode(x) and their
    reconstructions decode(encode(x)) in [-1, 1], encoded and decoded `batch_size` at a time."""
    ae = conv_autoencoder(model, params, info.shape[-1], 1.0)
    images = example_reader(config.data)(np.arange(count))["x"]
    latents = [np.asarray(ae.encode(images[i : i + batch_size])) for i in range(0, count, batch_size)]
    return images, np.concatenate(latents), np.concatenate([np.asarray(ae.decode(z)) for z in latents])


def write_reconstructions(config, workdir: str, model: nn.Module, params, info: DataInfo, tag: str = "") -> dict:
    """An autoencoder run's samples: its reconstructions of the first sample.num_samples images of
    the data, as workdir/samples/reconstruction<tag>.npz and .png (process 0)."""
    count = min(config.sample.num_samples, info.num_examples)
    samples = reconstructions(config, model, params, info, count, config.sample.batch_size)[2]
    if not parallel.is_main_process():
        return {}
    return {RECONSTRUCTION: save_samples(workdir, RECONSTRUCTION + tag, samples)}


def class_grid(path, drawn: dict[str, tuple[np.ndarray, np.ndarray]], num_classes: int) -> None:
    """One row per class, one column per sampler (each guidance scale, each step count): the
    first sample of each class of every sampler (the same x_T along a row where labels are
    balanced); a class a sampler never drew stays blank."""
    fig = Figure(figsize=(1.0 * len(drawn) + 0.6, 1.0 * num_classes + 0.4))
    axes = fig.subplots(num_classes, len(drawn), squeeze=False)
    for col, (name, (samples, labels)) in enumerate(drawn.items()):
        axes[0, col].set_title(name, fontsize=6)
        for c in range(num_classes):
            ax = axes[c, col]
            ax.axis("off")
            hits = np.flatnonzero(labels == c)
            if hits.size:
                ax.imshow(to_uint8(samples[hits[0]]).squeeze(), cmap="gray")
    for c in range(num_classes):
        axes[c, 0].text(-0.15, 0.5, str(c), transform=axes[c, 0].transAxes, ha="right", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")


def _reference(config: ml_collections.ConfigDict, info: DataInfo) -> np.ndarray | None:
    """A batch of the data, plotted beside samples of vector data."""
    if len(info.shape) != 1:
        return None
    return next(build_dataset(config.data, seed=config.seed)[0])["x"]
