"""Data sets behind one grain pipeline: toy 2-D points, scikit-learn digits, any TFDS data set.

    it, info = build_dataset(cfg.data, seed=cfg.seed, process_index=jax.process_index(),
                             process_count=jax.process_count())
    batch = next(it)  # {"x": float32 [B, *info.shape], "label": int32 [B] if info.num_classes}
    state = it.get_state(); ...; it.set_state(state)  # resumes exactly
"""

import grain
import ml_collections

from consistency_jax.data import images, toy
from consistency_jax.data.images import DatasetUnavailableError
from consistency_jax.data.pipeline import ArraySource, DataInfo, local_batch_size, make_pipeline

__all__ = ["DataInfo", "DatasetUnavailableError", "build_dataset", "data_info"]


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
        raise ValueError(f"data.conditional=True, but {cfg.name!r} has no labels; set it False.")
    return info


def build_dataset(
    cfg: ml_collections.ConfigDict, *, seed: int, process_index: int = 0, process_count: int = 1
) -> tuple[grain.DatasetIterator, DataInfo]:
    """An endless iterator of this process's batches of `cfg.name`, and the data set's DataInfo.

    Each batch holds cfg.batch_size // process_count examples: "x" float32 (toy points as they
    are; images NHWC in [-1, 1]) and, for labelled data sets, "label" int32. `seed` (the same on
    every process) fixes the order and the flips.
    """
    info = data_info(cfg)
    batch_size = local_batch_size(cfg.batch_size, process_count)
    if cfg.name in toy.TOY_DATASETS:
        source = ArraySource({"x": toy.toy_points(cfg.name, cfg.num_points, seed)})
        preprocess, augment, num_threads = None, None, 1
    else:
        source, num_threads = images.image_source(cfg), images.num_threads(cfg.name)
        preprocess = images.preprocessor(cfg.image_size, labelled=info.num_classes > 0)
        augment = images.random_flip if cfg.random_flip else None
    ds = make_pipeline(
        source,
        preprocess=preprocess,
        augment=augment,
        seed=seed,
        batch_size=batch_size,
        process_index=process_index,
        process_count=process_count,
        num_threads=num_threads,
    )
    return iter(ds), info
