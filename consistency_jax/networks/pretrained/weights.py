"""Pretrained weight files: find them in the cache folder, else download once and verify them."""

import dataclasses
import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path

CACHE_ENV = "CONSISTENCY_JAX_CACHE"
DOWNLOAD_TIMEOUT_S = 60


class WeightsUnavailableError(FileNotFoundError):
    """A weight file is neither where it was asked for, nor in the cache, nor downloadable."""


@dataclasses.dataclass(frozen=True)
class WeightsFile:
    """A published weight file. `sha256` is its digest or, as torch.hub names files
    `<name>-<first hex digits of sha256>.pth`, a prefix of it."""

    description: str
    filename: str
    url: str
    sha256: str


def cache_dir() -> Path:
    """`$CONSISTENCY_JAX_CACHE`, else ~/.cache/consistency_jax."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "consistency_jax")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(weights: WeightsFile, target: Path) -> None:
    """Download to a temporary file beside `target`, verify, then rename: never a partial file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{weights.filename}.", suffix=".part")
    try:
        with (
            os.fdopen(fd, "wb") as f,
            urllib.request.urlopen(weights.url, timeout=DOWNLOAD_TIMEOUT_S) as response,
        ):
            for block in iter(lambda: response.read(1 << 20), b""):
                f.write(block)
        digest = _sha256(Path(tmp))
        if not digest.startswith(weights.sha256):
            raise ValueError(f"sha256 {digest} does not start with {weights.sha256}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def fetch_weights(weights: WeightsFile, path: str | os.PathLike | None = None) -> Path:
    """The local path of `weights`: `path` if given, else the cache folder's copy, downloaded there
    on first use. Raises `WeightsUnavailableError` saying which file to put where."""
    if path is not None:
        if not Path(path).is_file():
            raise WeightsUnavailableError(
                f"No file at {path}, given as {weights.filename} ({weights.description})."
            )
        return Path(path)
    target = cache_dir() / weights.filename
    if target.is_file():
        return target
    try:
        _download(weights, target)
    except (OSError, ValueError) as error:
        raise WeightsUnavailableError(
            f"{weights.filename} ({weights.description}) is not in the cache folder "
            f"{target.parent} and could not be downloaded from {weights.url} ({error}). Download "
            f"that file where there is network access and copy it to {target} (or set {CACHE_ENV} "
            f"to the folder that holds it, or pass its path explicitly); its sha256 starts with "
            f"{weights.sha256}."
        ) from None
    return target
