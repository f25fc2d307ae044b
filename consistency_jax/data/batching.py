"""The grain pipelines: batch-level for in-memory arrays, record-level for TFDS records.

Both cut one stream into global batches: the data set in a seeded order that is reshuffled every
epoch, repeated endlessly, global batch k holding stream positions [k * B, (k + 1) * B) and each
process its contiguous share of it, in process order. So each step's global batch is the same on
any number of processes, no example appears twice within an epoch, and the first epoch is every
example once. The iterator's state (`get_state`/`set_state`, or orbax via `grain.checkpoint`) is
one integer, the next step, so a resumed run sees exactly the batches an uninterrupted run would.

`augment(example, u)` (the image flip) gets one uniform draw in [0, 1) per example: record by
record from `seed`, the record's position and the epoch; batch by batch from `seed` and the step
for the whole global batch, of which each process takes its share. Either way the draws are
reproducible, follow from the resumable position, and are new every epoch.
"""

import dataclasses
import functools
import sys
from collections.abc import Callable, Mapping
from typing import Any

import grain
import numpy as np

Example = dict[str, np.ndarray]
Augment = Callable[[Example, Any], Example]  # (one example or a batch, uniform draws) -> same

_SHUFFLE, _AUGMENT = 0, 1  # tags that keep the in-memory path's two random streams apart


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """What the rest of the code needs to know about a data set."""

    shape: tuple[int, ...]  # one example's shape: (2,) for toy, (H, W, C) for images
    num_classes: int  # 0 when the data set has no labels
    num_examples: int


class ArraySource:
    """Equally long in-memory arrays: source[i] is {key: array[i]}, for an int or an index array."""

    def __init__(self, arrays: Mapping[str, np.ndarray]):
        lengths = {len(a) for a in arrays.values()}
        if len(lengths) != 1:
            raise ValueError(f"Arrays must have one common length, got {lengths}.")
        self._arrays = dict(arrays)
        self._len = lengths.pop()

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int | np.ndarray) -> Example:
        return {k: a[index] for k, a in self._arrays.items()}


def local_batch_size(global_batch_size: int, process_count: int) -> int:
    """The per-process share of the global batch; it must divide evenly."""
    if global_batch_size % process_count:
        raise ValueError(
            f"data.batch_size={global_batch_size} is not divisible by the process count "
            f"{process_count}; set --config.data.batch_size to a multiple of {process_count}."
        )
    return global_batch_size // process_count


def _check_share(
    num_examples: int, batch_size: int, process_index: int, process_count: int
) -> None:
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} must be in [0, {process_count}).")
    if num_examples < batch_size * process_count:
        raise ValueError(
            f"The data set has {num_examples} examples, fewer than one global batch "
            f"({batch_size * process_count}); lower data.batch_size."
        )


class _ArrayBatches:
    """step -> this process's share of that step's global batch of an in-memory ArraySource."""

    def __init__(
        self,
        source: ArraySource,
        prepare: Callable[[Example], Example] | None,
        augment: Augment | None,
        seed: int,
        batch_size: int,
        process_index: int,
        process_count: int,
    ):
        self._source, self._prepare, self._augment, self._seed = source, prepare, augment, seed
        self._batch_size, self._global_size = batch_size, batch_size * process_count
        self._offset = process_index * batch_size  # this share's place in a global batch
        # Consecutive steps share an epoch; a batch spans at most two.
        self._permutation = functools.lru_cache(maxsize=2)(self._epoch_permutation)

    def _epoch_permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng((self._seed, _SHUFFLE, epoch)).permutation(len(self._source))

    def __call__(self, step: int) -> Example:
        n = len(self._source)
        start = step * self._global_size + self._offset  # stream positions [start, stop)
        stop = start + self._batch_size
        epochs = range(start // n, (stop - 1) // n + 1)
        parts = [self._permutation(e)[max(start - e * n, 0) : stop - e * n] for e in epochs]
        batch = self._source[np.concatenate(parts)]
        if self._prepare is not None:
            batch = self._prepare(batch)
        if self._augment is not None:
            draws = np.random.default_rng((self._seed, _AUGMENT, step)).random(self._global_size)
            batch = self._augment(batch, draws[self._offset : self._offset + self._batch_size])
        return batch


def array_batches(
    source: ArraySource,
    *,
    prepare: Callable[[Example], Example] | None,
    augment: Augment | None,
    seed: int,
    batch_size: int,
    process_index: int,
    process_count: int,
) -> grain.IterDataset:
    """An endless stream of this process's `batch_size` batches of an in-memory `source`.

    Works a batch at a time: item k of the underlying MapDataset is step k's batch, gathered
    through the permutation of each epoch its stream positions fall in (np.random.default_rng
    of `seed` and the epoch; cached), then `prepare`d (a vectorised map of the gathered arrays;
    None keeps them) and `augment`ed with this process's share of the global batch's draws from
    a generator seeded by `seed` and k. `seed` must be the same on every process.
    """
    _check_share(len(source), batch_size, process_index, process_count)
    batches = _ArrayBatches(
        source, prepare, augment, seed, batch_size, process_index, process_count
    )
    ds = grain.MapDataset.range(sys.maxsize).map(batches)
    # One thread overlaps the gather with the train step (which releases the GIL).
    return ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=2))


def record_batches(
    source: Any,
    *,
    preprocess: Callable[[Any], Example],
    augment: Augment | None,
    seed: int,
    batch_size: int,
    process_index: int,
    process_count: int,
    num_threads: int,
) -> grain.IterDataset:
    """An endless stream of this process's `batch_size` batches of a random-access `source`.

    Works a record at a time, for sources that decode per record (TFDS): grain shuffles (per
    epoch), `preprocess`es each record, `augment`s it with a draw from a generator seeded by
    `seed`, the record's position and the epoch, then batches. The stream is cut into blocks of
    `batch_size` and each process takes every `process_count`-th block from `process_index` on.
    `seed` must be the same on every process; `num_threads` threads read and decode.
    """
    _check_share(len(source), batch_size, process_index, process_count)
    ds = grain.MapDataset.source(source).seed(seed).shuffle().map(preprocess)
    if augment is not None:
        ds = ds.random_map(lambda example, rng: augment(example, rng.random()))
    ds = ds.repeat().batch(batch_size, drop_remainder=True)[process_index::process_count]
    read_options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=2 * num_threads)
    return ds.to_iter_dataset(read_options)
