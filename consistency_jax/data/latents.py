"""Latent data sets: a data set encoded once by an autoencoder, cached as chunks of .npy files.

    directory/spec.json                  what the chunks were encoded with (data, autoencoder, sizes)
    directory/chunk_00000.latents.npy    float32 [n, h, w, c] unscaled latents of examples
                                         [k * chunk_size, k * chunk_size + n), in the split's order
    directory/chunk_00000.labels.npy     int32 [n] (labelled data sets)

`LatentSource` reads them memory-mapped as the random-access source of the in-memory grain
pipeline (`batching.array_batches`), scaling the latents by the autoencoder's scaling factor as
it gathers a batch.
"""

import dataclasses
import os

import jax
import numpy as np

from consistency_jax.data.batching import DataInfo, Example
from consistency_jax.errors import ConfigError
from consistency_jax.networks.autoencoder import Autoencoder

SPEC_FILE = "spec.json"


def chunk_path(directory: str, index: int, array: str) -> str:
    """The file of chunk `index`'s `array` ('latents' or 'labels')."""
    return os.path.join(directory, f"chunk_{index:05d}.{array}.npy")


def chunk_bounds(num_examples: int, chunk_size: int) -> list[tuple[int, int]]:
    """[lo, hi) of each chunk of a data set of `num_examples`."""
    return [(lo, min(lo + chunk_size, num_examples)) for lo in range(0, num_examples, chunk_size)]


def latent_info(info: DataInfo, ae: Autoencoder | None, data_name: str) -> DataInfo:
    """The DataInfo the network of a latent run sees: `info` (the images) with the shape of their
    latents (`info` itself for a pixel run, `ae` None). ConfigError where `ae` cannot encode them."""
    if ae is None:
        return info
    if len(info.shape) != 3:
        raise ConfigError(
            f"config.autoencoder encodes images; {data_name!r} holds vectors of shape {info.shape}: "
            "set config.autoencoder.kind='none'."
        )
    h, w, c = info.shape
    if h % ae.downsample or w % ae.downsample:
        raise ConfigError(
            f"{data_name!r} images are {h}x{w}; the autoencoder downsamples by {ae.downsample} and "
            f"needs sides that divide by it: set config.data.image_size to a multiple of {ae.downsample}."
        )
    try:
        shape = jax.eval_shape(ae.encode, jax.ShapeDtypeStruct((1, h, w, c), np.float32)).shape[1:]
    except (TypeError, ValueError) as e:
        reason = str(e).splitlines()[0]
        raise ConfigError(
            f"The autoencoder of config.autoencoder cannot encode the {h}x{w}x{c} images of {data_name!r} "
            f"({reason}): use an autoencoder trained on this data (its image channels)."
        ) from None
    expected = (h // ae.downsample, w // ae.downsample, ae.latent_channels)
    if tuple(shape) != expected:
        raise ConfigError(
            f"The autoencoder of config.autoencoder encodes {h}x{w}x{c} images to latents of shape "
            f"{tuple(shape)}, not the {expected} its latent_channels={ae.latent_channels} and "
            f"downsample={ae.downsample} say."
        )
    return dataclasses.replace(info, shape=expected)


class LatentSource:
    """The cached chunks in `directory`, memory-mapped: source[index] (an int or an index array)
    is {"x": the scaled latents (latent * scaling_factor), "label" where the data is labelled}."""

    def __init__(self, directory: str, num_chunks: int, scaling_factor: float, labelled: bool):
        self._latents = [np.load(chunk_path(directory, k, "latents"), mmap_mode="r") for k in range(num_chunks)]
        self._labels = [np.load(chunk_path(directory, k, "labels")) for k in range(num_chunks)] if labelled else None
        self._starts = np.cumsum([0] + [len(a) for a in self._latents])
        self._scale = np.float32(scaling_factor)
        self.shape = tuple(self._latents[0].shape[1:])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def _gather(self, arrays: list[np.ndarray], index: np.ndarray) -> np.ndarray:
        chunk = np.searchsorted(self._starts, index, side="right") - 1
        out = np.empty((len(index), *arrays[0].shape[1:]), arrays[0].dtype)
        for k in np.unique(chunk):
            hits = chunk == k
            out[hits] = arrays[k][index[hits] - self._starts[k]]
        return out

    def __getitem__(self, index: int | np.ndarray) -> Example:
        flat = np.atleast_1d(np.asarray(index))
        example = {"x": self._gather(self._latents, flat) * self._scale}
        if self._labels is not None:
            example["label"] = self._gather(self._labels, flat).astype(np.int32)
        return {k: v[0] for k, v in example.items()} if np.ndim(index) == 0 else example


def channel_std(source: LatentSource, batch_size: int = 4096) -> np.ndarray:
    """The per-channel standard deviation of the (scaled) latents of `source`, over all examples
    and positions."""
    total, total_sq, count = 0.0, 0.0, 0
    for lo in range(0, len(source), batch_size):
        x = source[np.arange(lo, min(lo + batch_size, len(source)))]["x"].astype(np.float64)
        total, total_sq = total + x.sum(axis=(0, 1, 2)), total_sq + (x**2).sum(axis=(0, 1, 2))
        count += x.shape[0] * x.shape[1] * x.shape[2]
    mean = total / count
    return np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
