"""Data sets behind grain pipelines: toy 2-D points, scikit-learn digits, any TFDS data set.

    it, info = build_dataset(cfg.data, seed=cfg.seed, process_index=jax.process_index(),
                             process_count=jax.process_count())
    batch = next(it)  # {"x": float32 [B, *info.shape], "label": int32 [B] if info.num_classes}
    state = it.get_state(); ...; it.set_state(state)  # resumes exactly
"""

import dataclasses
import functools
from collections.abc import Callable

import grain
import ml_collections
import numpy as np

from consistency_jax.data import images, toy
from consistency_jax.data.batching import (
    ArraySource,
    DataInfo,
    Example,
    array_batches,
    local_batch_size,
    record_batches,
)
from consistency_jax.data.images import DatasetUnavailableError
from consistency_jax.data.latents import LatentSource
from consistency_jax.errors import ConfigError

__all__ = ["DataInfo", "DatasetUnavailableError", "build_dataset", "data_info", "num_labels"]


def data_info(cfg: ml_collections.ConfigDict) -> DataInfo:
    """Shape, class count and size of the data set `cfg.name` (`cfg` is `config.data`).

    Reads no examples (a TFDS data set is prepared the first time); raises
    DatasetUnavailableError, naming the fix, when the data cannot be had.
    """
    if cfg.name in toy.TOY_DATASETS:
        info = DataInfo(shape=(2,), num_classes=0, num_examples=cfg.num_points)
    elif cfg.name == images.DIGITS:
        info = images.digits_info(cfg.image_size)
    else:
        info = images.tfds_info(cfg.name, cfg.split, cfg.tfds_data_dir, cfg.image_size)
    if cfg.conditional and not info.num_classes:
        raise ConfigError(
            f"config.data.conditional=True, but {cfg.name!r} has no labels: set it False, or pick a "
            "labelled data set."
        )
    return info


def build_dataset(
    cfg: ml_collections.ConfigDict, *, seed: int, process_index: int = 0, process_count: int = 1,
    latents: LatentSource | None = None,
) -> tuple[grain.DatasetIterator, DataInfo]:
    """An endless iterator of this process's batches of `cfg.name`, and the data set's DataInfo.

    Each batch holds cfg.batch_size // process_count examples: "x" float32 (toy points as they
    are; images NHWC in [-1, 1]; with `latents`, the data set's cached scaled latents, and the
    DataInfo their shape) and, for labelled data sets, "label" int32. `seed` (the same on every
    process) fixes the order and the flips.
    """
    info = data_info(cfg)
    share = {
        "seed": seed,
        "batch_size": local_batch_size(cfg.batch_size, process_count),
        "process_index": process_index,
        "process_count": process_count,
    }
    labelled = info.num_classes > 0
    augment = images.random_flip if cfg.random_flip else None
    if latents is not None:
        ds = array_batches(latents, prepare=None, augment=None, **share)
        info = dataclasses.replace(info, shape=latents.shape)
    elif cfg.name in toy.TOY_DATASETS:
        source = ArraySource({"x": toy.toy_points(cfg.name, cfg.num_points, seed)})
        ds = array_batches(source, prepare=None, augment=None, **share)
    elif cfg.name == images.DIGITS:
        source = images.digits_source(cfg.image_size)
        prepare = functools.partial(images.to_example, labelled=labelled)
        ds = array_batches(source, prepare=prepare, augment=augment, **share)
    else:
        source = images.tfds_source(cfg.name, cfg.split, cfg.tfds_data_dir)
        preprocess = images.tfds_preprocessor(cfg.image_size, labelled)
        ds = record_batches(
            source,
            preprocess=preprocess,
            augment=augment,
            num_threads=images.TFDS_READ_THREADS,
            **share,
        )
    return iter(ds), info


def num_labels(cfg: ml_collections.ConfigDict, info: DataInfo) -> int:
    """The number of classes the network is conditioned on: the data's, or 0 unless
    cfg.conditional (`cfg` is config.data)."""
    return info.num_classes if cfg.conditional else 0


def example_reader(cfg: ml_collections.ConfigDict) -> Callable[[np.ndarray], Example]:
    """indices -> those examples of the image data set `cfg.name` in the split's own order, as a
    batch {"x": float32 NHWC in [-1, 1], "label"}: unshuffled and unflipped (what an encoder reads)."""
    labelled = data_info(cfg).num_classes > 0
    if cfg.name == images.DIGITS:
        source = images.digits_source(cfg.image_size)
        return lambda index: images.to_example(source[index], labelled)
    source = images.tfds_source(cfg.name, cfg.split, cfg.tfds_data_dir)
    preprocess = images.tfds_preprocessor(cfg.image_size, labelled)

    def read(index: np.ndarray) -> Example:
        examples = [preprocess(source[int(i)]) for i in index]
        return {k: np.stack([e[k] for e in examples]) for k in examples[0]}

    return read
