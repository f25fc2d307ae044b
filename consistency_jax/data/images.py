"""Image data sets: scikit-learn's embedded digits, and TFDS data sets read as array_record.

Both yield records {"image": uint8 [H, W, C], "label": int}; `to_example` turns a record, or a
batch of them, into {"x": float32 [..., H, W, C] in [-1, 1], "label": int32}. The digits are held
in memory (resized once, batched whole); TFDS records are decoded and resized one at a time.
"""

import contextlib
import dataclasses
import importlib.util
import socket
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from PIL import Image

from consistency_jax.data import toy
from consistency_jax.data.batching import ArraySource, DataInfo, Example
from consistency_jax.errors import ConfigError

DIGITS = "digits"
_DIGITS_INFO = DataInfo(shape=(8, 8, 1), num_classes=10, num_examples=1797)
TFDS_READ_THREADS = 8  # threads decoding TFDS records (PIL releases the GIL while decoding)
_PROBE_TIMEOUT_S = 10  # connecting to a download host before preparing
_NETWORK_TIMEOUT_S = 60  # a stalled connection while preparing fails instead of hanging


class DatasetUnavailableError(RuntimeError):
    """The data set cannot be read here; the message names the data set, its directory, the fix."""


# --- preprocessing ------------------------------------------------------------------------------


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 [H, W, C] -> [size, size, C]: central square crop, then PIL bicubic (antialiased)."""
    h, w, c = image.shape
    if (h, w) == (size, size):
        return image
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = image[top : top + side, left : left + side]
    pil = Image.fromarray(square[..., 0] if c == 1 else square)
    out = np.asarray(pil.resize((size, size), Image.Resampling.BICUBIC))
    return out.reshape(size, size, c)


def to_unit_range(image: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return image.astype(np.float32) / 127.5 - 1.0


def to_example(record: dict[str, Any], labelled: bool) -> Example:
    """A record {"image": uint8, "label"} (or a batch of them) -> {"x": float32 in [-1, 1],
    "label": int32}."""
    example = {"x": to_unit_range(record["image"])}
    if labelled:
        example["label"] = np.asarray(record["label"], np.int32)
    return example


def tfds_preprocessor(image_size: int, labelled: bool) -> Callable[[dict[str, Any]], Example]:
    """The per-record map of TFDS records: resize to `image_size` (0 keeps the size), to_example."""

    def preprocess(record: dict[str, Any]) -> Example:
        image = resize(record["image"], image_size) if image_size else record["image"]
        return to_example({**record, "image": image}, labelled)

    return preprocess


def random_flip(example: Example, u: np.ndarray | float) -> Example:
    """Mirror left-right the images whose uniform draw `u` is below 1/2: one example [H, W, C]
    with a scalar `u`, or a batch [B, H, W, C] with `u` of shape [B]."""
    mirrored = np.reshape(np.asarray(u) < 0.5, np.shape(u) + (1, 1, 1))
    return {**example, "x": np.where(mirrored, example["x"][..., ::-1, :], example["x"])}


# --- digits ---------------------------------------------------------------------------------------


def digits_info(image_size: int) -> DataInfo:
    """DataInfo of scikit-learn's digits (1797 8x8 grayscale images, 10 classes)."""
    if not image_size:
        return _DIGITS_INFO
    return dataclasses.replace(_DIGITS_INFO, shape=(image_size, image_size, 1))


def digits_source(image_size: int) -> ArraySource:
    """The digits as records {"image": uint8 [S, S, 1] in 0..255, "label": int}, resized once."""
    from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)[..., None]
    if image_size:
        images = np.stack([resize(image, image_size) for image in images])
    return ArraySource({"image": images, "label": digits.target})


# --- TFDS -----------------------------------------------------------------------------------------


def _unavailable(name: str, data_dir: str, cause: str) -> DatasetUnavailableError:
    return DatasetUnavailableError(
        f"TFDS data set {name!r} is not prepared in {data_dir} and cannot be prepared here: "
        f"{cause}.\nFix: `pip install tensorflow-cpu` and run once with network access (this "
        f"prepares {data_dir} automatically); or copy a prepared {name} (its array_record files "
        f"and dataset_info.json) to {data_dir}; or set --config.data.tfds_data_dir to a directory "
        f"that already holds it."
    )


def _tensorflow_installed() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _check_reachable(name: str, data_dir: str, urls: Iterable[str]) -> None:
    """Fail in seconds, not after tfds's minutes of retries, when a download host is unreachable."""
    if urllib.request.getproxies():
        return  # behind a proxy, a direct connection proves nothing
    for host, port in {_host_port(url) for url in urls}:
        try:
            with socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S):
                pass
        except OSError as e:
            raise _unavailable(name, data_dir, f"cannot reach {host}:{port} ({e})") from e


def _host_port(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def _prepare(builder: tfds.core.DatasetBuilder, name: str) -> None:
    """Download and convert a TFDS data set, `name` as configured (e.g. imagenet_resized/64x64), to
    array_record (needs TensorFlow and network)."""
    data_dir = str(builder.data_dir)
    if not _tensorflow_installed():
        raise _unavailable(name, data_dir, "TensorFlow, needed once to prepare it, is missing")
    logging.info(
        "Preparing TFDS data set %s in %s: downloading it and converting it to array_record "
        "(runs once; needs network access).", name, data_dir
    )
    _check_reachable(name, data_dir, builder.url_infos or ())
    try:
        with _socket_timeout(_NETWORK_TIMEOUT_S):
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(try_download_gcs=False)
            )
    except Exception as e:  # any failure here means the same fix
        raise _unavailable(name, data_dir, f"preparing failed ({type(e).__name__}: {e})") from e


def tfds_source(name: str, split: str, data_dir: str) -> Any:
    """The random-access source of a TFDS split, preparing the data set the first time."""
    try:
        builder = tfds.builder(name, data_dir=data_dir or None, file_format="array_record")
    except tfds.core.DatasetNotFoundError:
        raise DatasetUnavailableError(
            f"Unknown data set {name!r}: not a toy set {sorted(toy.TOY_DATASETS)}, not {DIGITS!r}, "
            f"and not a TFDS data set (see tfds.list_builders()); fix --config.data.name."
        ) from None
    if not builder.is_prepared():
        _prepare(builder, name)
    return tfds.data_source(
        name,
        split=split,
        data_dir=data_dir or None,
        download=False,
        builder_kwargs=dict(file_format="array_record"),
    )


def tfds_info(name: str, split: str, data_dir: str, image_size: int) -> DataInfo:
    """DataInfo of a TFDS image data set (features "image" and, if labelled, "label")."""
    source = tfds_source(name, split, data_dir)
    features = source.dataset_info.features
    if "image" not in features:
        raise ConfigError(f"TFDS data set {name!r} has no 'image' feature; pick an image data set.")
    h, w, c = features["image"].shape
    if image_size:
        h = w = image_size
    elif h is None or w is None:
        raise ConfigError(f"{name!r} images vary in size; set --config.data.image_size.")
    label = features["label"] if "label" in features else None
    num_classes = label.num_classes if isinstance(label, tfds.features.ClassLabel) else 0
    return DataInfo(shape=(h, w, c), num_classes=num_classes, num_examples=len(source))
