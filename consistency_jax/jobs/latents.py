"""Latent runs: the autoencoder config.autoencoder names, and the data set encoded once into a
cached latent data source (`consistency_jax.data.latents`).

An autoencoder run (objective.name='autoencoder') ends by writing workdir/autoencoder.json: the
scaling factor 1 / std of its latents over the training split (LDM Sec. 4.3.2's rescaling to unit
variance), their per-channel std, and the reconstruction error, beside its checkpoints.
"""

import dataclasses
import functools
import glob
import hashlib
import json
import os
import time

import jax
import ml_collections
import numpy as np
from absl import logging

from consistency_jax.config.schema import load_config
from consistency_jax.data import DataInfo, data_info, example_reader
from consistency_jax.data.latents import SPEC_FILE, LatentSource, channel_std, chunk_bounds, chunk_path
from consistency_jax.errors import ConfigError
from consistency_jax.evaluation.samples import reconstructions
from consistency_jax.networks import build_network
from consistency_jax.networks.autoencoder import Autoencoder, conv_autoencoder
from consistency_jax.training import checkpoint, files, parallel
from consistency_jax.training.log import format_duration
from consistency_jax.training.state import abstract_state

STATS_FILE = "autoencoder.json"
CHUNK_SIZE = 8192  # examples per cached chunk: the unit an interrupted encode resumes at
PROGRESS_EVERY_S = 10.0


# --- the autoencoder --------------------------------------------------------------------------


def load_autoencoder(config: ml_collections.ConfigDict) -> Autoencoder | None:
    """The autoencoder of config.autoencoder (None for a pixel run); ConfigError naming the fix
    when it is not there."""
    a = config.autoencoder
    if a.kind == "digits":
        return trained_autoencoder(a.workdir, a.scaling_factor)
    if a.kind == "sd_vae":
        from consistency_jax.networks.pretrained.sd_vae import load_sd_vae_autoencoder  # reads the weights

        vae = load_sd_vae_autoencoder(a.path or None)  # its scaling factor from the config.json beside it
        return dataclasses.replace(vae, scaling_factor=a.scaling_factor) if a.scaling_factor else vae
    return None


def autoencoder_run(workdir: str) -> ml_collections.ConfigDict:
    """The config of the finished autoencoder run in `workdir`; ConfigError naming the fix."""
    fix = (
        f"Train it first (python launch.py --config=configs/digits_autoencoder.py --workdir={workdir}) "
        "or point --config.autoencoder.workdir at a finished autoencoder run."
    )
    if not workdir:
        raise ConfigError(
            "config.autoencoder.kind='digits' needs a trained autoencoder: set "
            "config.autoencoder.workdir (e.g. --config.autoencoder.workdir=runs/digits/autoencoder)."
        )
    try:
        aconfig = load_config(os.path.join(workdir, "config.json"))
    except FileNotFoundError:
        raise ConfigError(f"No autoencoder run in {workdir!r} (no config.json). {fix}") from None
    if aconfig.objective.name != "autoencoder":
        raise ConfigError(f"{workdir!r} holds a {aconfig.objective.name!r} run, not an autoencoder. {fix}")
    if not os.path.exists(os.path.join(workdir, STATS_FILE)):
        raise ConfigError(f"The autoencoder run {workdir!r} has not finished (no {STATS_FILE}). {fix}")
    return aconfig


def trained_autoencoder(workdir: str, scaling_factor: float = 0.0) -> Autoencoder:
    """The autoencoder run in `workdir` at its latest checkpoint (sampling EMA), scaled by
    `scaling_factor` (0: its own, 1 / std of its latents, from autoencoder.json)."""
    aconfig = autoencoder_run(workdir)
    info = data_info(aconfig.data)
    model = build_network(aconfig.network)
    manager = checkpoint.make_manager(workdir)
    try:
        state = checkpoint.restore(manager, abstract_state(aconfig, model, info))
    finally:
        manager.close()
    with open(os.path.join(workdir, STATS_FILE)) as f:
        own = json.load(f)["scaling_factor"]
    return conv_autoencoder(model, state.ema_params, info.shape[-1], scaling_factor or own)


def autoencoder_identity(config: ml_collections.ConfigDict) -> dict:
    """What identifies the autoencoder's weights, for the latent cache's spec: the run's folder and
    a digest of its autoencoder.json (rewritten whenever it is retrained), or the VAE's file."""
    a = config.autoencoder
    if a.kind == "digits":
        with open(os.path.join(a.workdir, STATS_FILE), "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:16]
        return {"kind": a.kind, "workdir": os.path.abspath(a.workdir), "stats": digest}
    return {"kind": a.kind, "path": os.path.abspath(a.path) if a.path else ""}


def encode_all(encode, read, num_examples: int, batch_size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(unscaled latents, labels or None) of examples [0, num_examples) read by `read(indices)`,
    `batch_size` at a time (the last batch padded, so `encode` compiles once)."""
    latents, labels = [], []
    for lo in range(0, num_examples, batch_size):
        index = np.arange(lo, min(lo + batch_size, num_examples))
        batch = read(index)
        x = np.concatenate([batch["x"], np.repeat(batch["x"][-1:], batch_size - len(index), axis=0)])
        latents.append(np.asarray(encode(x))[: len(index)])
        labels.append(batch.get("label"))
    return np.concatenate(latents), None if labels[0] is None else np.concatenate(labels)


def write_autoencoder_stats(config: ml_collections.ConfigDict, workdir: str, model, params, info: DataInfo) -> str:
    """At the end of an autoencoder run: workdir/autoencoder.json with scaling_factor (1 / the std
    of the latents of the training split, all channels together), the per-channel latent std and
    the reconstruction mean squared error on [-1, 1] images; its path."""
    images, latents, recon = reconstructions(config, model, params, info, info.num_examples, config.sample.batch_size)
    stats = {
        "scaling_factor": float(1.0 / latents.std()),
        "latent_channel_std": [float(s) for s in latents.std(axis=(0, 1, 2))],
        "latent_shape": list(latents.shape[1:]),
        "reconstruction_mse": float(np.mean((recon - images) ** 2)),
        "num_examples": int(info.num_examples),
    }
    path = os.path.join(workdir, STATS_FILE)
    if parallel.is_main_process():
        files.write_atomic(path, lambda f: f.write(json.dumps(stats, indent=2).encode()), "autoencoder statistics")
    logging.info("Autoencoder: %s", stats)
    return path


# --- the latent data set ----------------------------------------------------------------------


def cache_dir(config: ml_collections.ConfigDict, workdir: str) -> str:
    """config.autoencoder.cache_dir, or workdir/latents."""
    return config.autoencoder.cache_dir or os.path.join(workdir, "latents")


def latent_spec(config: ml_collections.ConfigDict, info: DataInfo, chunk_size: int = CHUNK_SIZE) -> dict:
    """Everything the cached latents depend on, as JSON."""
    d = config.data
    data = {"name": d.name, "split": d.split, "image_size": d.image_size, "num_examples": info.num_examples}
    return {"data": data, "autoencoder": autoencoder_identity(config), "chunk_size": chunk_size}


def _chunk_done(directory: str, k: int, n: int, labelled: bool) -> bool:
    """Whether chunk k is on disk whole: its latents (and labels) with n rows."""
    arrays = ["latents", "labels"] if labelled else ["latents"]
    try:
        return all(len(np.load(chunk_path(directory, k, a), mmap_mode="r")) == n for a in arrays)
    except (OSError, ValueError):
        return False


def latent_dataset(config: ml_collections.ConfigDict, ae: Autoencoder, info: DataInfo, workdir: str) -> LatentSource:
    """The training split encoded by `ae` (unscaled, cached in `cache_dir`: `encode_latents`),
    read back as a LatentSource scaled by ae.scaling_factor. Every process returns it once every
    chunk is on disk."""
    directory = cache_dir(config, workdir)
    encode_latents(config, ae, info, directory)
    parallel.sync("latents_encoded")
    source = LatentSource(
        directory, len(chunk_bounds(info.num_examples, CHUNK_SIZE)), ae.scaling_factor, info.num_classes > 0
    )
    logging.info(
        "Latents %s of %r in %s; per-channel std after scaling: %s",
        source.shape,
        config.data.name,
        directory,
        np.array2string(channel_std(source), precision=3),
    )
    return source


def encode_latents(
    config: ml_collections.ConfigDict,
    ae: Autoencoder,
    info: DataInfo,
    directory: str,
    process_index: int | None = None,
    process_count: int | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> list[int]:
    """Encode the chunks of the cache in `directory` that are missing, cut short, or encoded with
    another spec (`latent_spec`: the data, the autoencoder's identity, the chunk size), chunk k by
    process k % process_count (default: jax's process index and count), with progress logged; the
    chunks this process encoded. A cache of another spec is emptied of its chunks before the new
    spec is written, so that none of them is ever read as the new spec's."""
    index = jax.process_index() if process_index is None else process_index
    count = jax.process_count() if process_count is None else process_count
    spec = latent_spec(config, info, chunk_size)
    spec_path = os.path.join(directory, SPEC_FILE)
    fresh = False
    if os.path.exists(spec_path):
        with open(spec_path) as f:
            fresh = json.load(f) == spec
    bounds = chunk_bounds(info.num_examples, chunk_size)
    labelled = info.num_classes > 0
    todo = [k for k, (lo, hi) in enumerate(bounds) if not (fresh and _chunk_done(directory, k, hi - lo, labelled))]
    parallel.sync("latents_checked")  # every process has read the spec before it is rewritten
    if todo and not fresh and index == 0:
        os.makedirs(directory, exist_ok=True)
        for name in glob.glob(os.path.join(directory, "chunk_*.npy")):  # encoded with another spec
            os.remove(name)
        files.write_atomic(spec_path, lambda f: f.write(json.dumps(spec, indent=2).encode()), "the latent spec")
    parallel.sync("latents_spec")
    mine = [k for k in todo if k % count == index]
    if mine:
        _encode_chunks(config, ae, directory, [bounds[k] for k in mine], mine)
    return mine


def _read_from(read, lo: int, index: np.ndarray):
    return read(index + lo)


def _encode_chunks(config, ae: Autoencoder, directory: str, bounds: list[tuple[int, int]], ks: list[int]) -> None:
    read = example_reader(config.data)
    batch_size = config.autoencoder.encode_batch_size
    total, done, start = sum(hi - lo for lo, hi in bounds), 0, time.perf_counter()
    last = start
    logging.info("Encoding %d images of %r into %s.", total, config.data.name, directory)
    for k, (lo, hi) in zip(ks, bounds):
        latents, labels = encode_all(ae.encode, functools.partial(_read_from, read, lo), hi - lo, batch_size)
        arrays = {"latents": latents.astype(np.float32)}
        arrays |= {"labels": labels.astype(np.int32)} if labels is not None else {}
        for name, array in arrays.items():  # the labels first: a chunk is whole once its latents are
            files.write_atomic(chunk_path(directory, k, name), functools.partial(np.save, arr=array), "latents")
        done += hi - lo
        now = time.perf_counter()
        if now - last >= PROGRESS_EVERY_S or done == total:
            last, rate = now, done / max(now - start, 1e-9)
            logging.info(
                "encode: %d/%d images, %.1f images/s, ETA %s",
                done,
                total,
                rate,
                format_duration((total - done) / rate),
            )
