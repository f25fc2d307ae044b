"""The one grain pipeline every data set goes through.

source -> shuffle -> preprocess -> augment -> repeat -> shard by process -> batch -> iterator.
The iterator's state (`get_state`/`set_state`, or orbax via `grain.checkpoint`) is one integer, so
a resumed run sees exactly the batches an uninterrupted run would.
"""

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import grain
import numpy as np

Example = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """What the rest of the code needs to know about a data set."""

    shape: tuple[int, ...]  # one example's shape: (2,) for toy, (H, W, C) for images
    num_classes: int  # 0 when the data set has no labels
    num_examples: int


class ArraySource:
    """A random-access source over equally long in-memory arrays: record i is {key: array[i]}."""

    def __init__(self, arrays: Mapping[str, np.ndarray]):
        lengths = {len(a) for a in arrays.values()}
        if len(lengths) != 1:
            raise ValueError(f"Arrays must have one common length, got {lengths}.")
        self._arrays = dict(arrays)
        self._len = lengths.pop()

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> Example:
        return {k: a[index] for k, a in self._arrays.items()}


def local_batch_size(global_batch_size: int, process_count: int) -> int:
    """The per-process share of the global batch; it must divide evenly."""
    if global_batch_size % process_count:
        raise ValueError(
            f"data.batch_size={global_batch_size} is not divisible by the process count "
            f"{process_count}; set --config.data.batch_size to a multiple of {process_count}."
        )
    return global_batch_size // process_count


def make_pipeline(
    source: Any,
    *,
    preprocess: Callable[[Any], Example] | None,
    augment: Callable[[Example, np.random.Generator], Example] | None,
    seed: int,
    batch_size: int,
    process_index: int,
    process_count: int,
    num_threads: int,
) -> grain.IterDataset:
    """An endless stream of `batch_size` batches of this process's shard of `source`.

    `seed` must be the same on every process: all processes shuffle identically and take the
    disjoint strided shard `[process_index::process_count]` of the shuffled, repeated stream, so
    each step's global batch holds distinct examples. `preprocess` maps each record (None: keep
    it); `augment` also gets a generator seeded by `seed`, the example's position and the epoch,
    so each epoch is reshuffled and re-augmented, reproducibly.
    `num_threads` threads prepare batches ahead (one suffices for in-memory sources: it overlaps
    with the train step, which releases the GIL; more would only contend for it).
    """
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} must be in [0, {process_count}).")
    if len(source) < batch_size * process_count:
        raise ValueError(
            f"The data set has {len(source)} examples, fewer than one global batch "
            f"({batch_size * process_count}); lower data.batch_size."
        )
    ds = grain.MapDataset.source(source).seed(seed).shuffle()
    if preprocess is not None:
        ds = ds.map(preprocess)
    if augment is not None:
        ds = ds.random_map(augment)
    ds = ds.repeat()[process_index::process_count].batch(batch_size, drop_remainder=True)
    read_options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=2 * num_threads)
    return ds.to_iter_dataset(read_options)
