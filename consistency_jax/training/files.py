"""Files a run writes: whole or not at all, and one message when the disk refuses them."""

import contextlib
import os
from collections.abc import Callable
from typing import BinaryIO


class WriteError(OSError):
    """A file of the run could not be written (disk full, quota, permissions, read-only)."""


def write_error(what: str, path: str, error: BaseException) -> WriteError:
    """The one message for a failed write of `what` to `path`, whatever the phase."""
    return WriteError(
        f"Writing {what} to {path} failed: {error}. Free space on its disk (or make it "
        "writable), then rerun the same command: it resumes from the last complete checkpoint."
    )


def write_atomic(path: str, write: Callable[[BinaryIO], None], what: str) -> None:
    """`write(file)` into a temporary file beside `path`, flushed to disk, then renamed onto it:
    `path` is whole or as it was. On failure the temporary file is removed and WriteError raised."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise write_error(what, path, e) from e


def append_line(path: str, line: str, what: str) -> None:
    """Append one line to `path` (a log); a failure raises WriteError. A line cut short by a full
    disk is dropped when the log is next rewritten (MetricsLog on resume)."""
    try:
        with open(path, "a") as f:
            f.write(line + "\n")
    except OSError as e:
        raise write_error(what, path, e) from e
