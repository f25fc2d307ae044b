"""The input pipeline: batches, determinism, sharding, resumable state, flips, TFDS, errors."""

import itertools
from unittest import mock

import grain
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow_datasets as tfds

from consistency_jax.config.schema import get_config
from consistency_jax.data import DatasetUnavailableError, build_dataset, data_info, images
from consistency_jax.data.batching import ArraySource, array_batches
from consistency_jax.data.toy import toy_points


def data_cfg(**overrides) -> ml_collections.ConfigDict:
    cfg = get_config().data
    cfg.update(overrides)
    return cfg


def take(it, n: int) -> list[dict[str, np.ndarray]]:
    return list(itertools.islice(it, n))


def assert_same_batches(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


def test_toy_batches():
    cfg = data_cfg(name="moons2d", num_points=1000, batch_size=100)
    it, info = build_dataset(cfg, seed=3)
    assert info == data_info(cfg)
    assert (info.shape, info.num_classes, info.num_examples) == ((2,), 0, 1000)
    batch = next(it)
    assert batch.keys() == {"x"} and batch["x"].shape == (100, 2) and batch["x"].dtype == np.float32
    source = {tuple(p) for p in toy_points("moons2d", 1000, 3)}
    assert {tuple(p) for p in batch["x"]} <= source


@pytest.mark.parametrize("image_size", [0, 16])
def test_digits_batches(image_size):
    cfg = data_cfg(name="digits", image_size=image_size, batch_size=600)
    it, info = build_dataset(cfg, seed=0)
    side = image_size or 8
    assert info == data_info(cfg)
    assert (info.shape, info.num_classes, info.num_examples) == ((side, side, 1), 10, 1797)
    batch = next(it)
    x, label = batch["x"], batch["label"]
    assert x.shape == (600, side, side, 1) and x.dtype == np.float32
    assert x.min() == -1.0 and x.max() == 1.0
    assert label.shape == (600,) and label.dtype == np.int32
    assert set(np.unique(label)) == set(range(10))


@pytest.mark.parametrize("name", ["gmm2d", "digits"])
def test_same_seed_same_batches(name):
    cfg = data_cfg(name=name, num_points=500, batch_size=50, random_flip=True)
    first = take(build_dataset(cfg, seed=7)[0], 3)
    assert_same_batches(first, take(build_dataset(cfg, seed=7)[0], 3))
    assert not np.array_equal(first[0]["x"], next(build_dataset(cfg, seed=8)[0])["x"])


@pytest.mark.parametrize("process_count", [2, 3])
def test_processes_read_disjoint_shards(process_count):
    cfg = data_cfg(name="ring2d", num_points=600, batch_size=60)
    steps = 600 // 60  # one epoch of global batches
    per_process = [
        take(build_dataset(cfg, seed=1, process_index=p, process_count=process_count)[0], steps)
        for p in range(process_count)
    ]
    assert all(len(batches) == steps for batches in per_process)
    examples = [tuple(p) for batches in per_process for b in batches for p in b["x"]]
    assert all(len(b["x"]) == 60 // process_count for batches in per_process for b in batches)
    assert len(examples) == len(set(examples)) == 600


@pytest.mark.parametrize(
    "overrides", [dict(name="moons2d", num_points=1000), dict(name="digits", random_flip=True)]
)
def test_global_batch_is_the_same_on_any_process_count(overrides):
    cfg = data_cfg(batch_size=240, **overrides)
    steps = 9  # past an epoch boundary inside a batch (1797 digits = 7.5 global batches)
    single = take(build_dataset(cfg, seed=4)[0], steps)
    for process_count in (2, 3, 4):
        shares = [
            take(build_dataset(cfg, seed=4, process_index=p, process_count=process_count)[0], steps)
            for p in range(process_count)
        ]
        for step in range(steps):
            assert all(len(share[step]["x"]) == 240 // process_count for share in shares)
            merged = {k: np.concatenate([share[step][k] for share in shares]) for k in single[step]}
            assert_same_batches([merged], [single[step]])


def test_each_epoch_is_a_new_permutation_with_new_draws():
    """The stream runs through every example once per epoch, reshuffled and re-augmented each
    epoch, also when an epoch is not a whole number of batches."""
    n, batch_size = 250, 40
    ds = array_batches(
        ArraySource({"i": np.arange(n)}),
        prepare=None,
        augment=lambda batch, u: {**batch, "u": u},  # records the draws
        seed=0,
        batch_size=batch_size,
        process_index=0,
        process_count=1,
    )
    batches = take(iter(ds), -(-3 * n // batch_size))
    order = np.concatenate([b["i"] for b in batches])[: 3 * n].reshape(3, n)
    draws = np.concatenate([b["u"] for b in batches])[: 3 * n].reshape(3, n)
    for epoch in range(3):
        np.testing.assert_array_equal(np.sort(order[epoch]), np.arange(n))
        draws[epoch] = draws[epoch][np.argsort(order[epoch])]  # by example
    for a, b in itertools.combinations(range(3), 2):
        assert not np.array_equal(order[a], order[b])
        assert 0.35 < np.mean((draws[a] < 0.5) == (draws[b] < 0.5)) < 0.65  # independent flips
    assert np.all((0 <= draws) & (draws < 1))


@pytest.mark.parametrize("process_index, process_count", [(0, 1), (1, 2)])
@pytest.mark.parametrize(
    "overrides",
    [dict(name="gmm2d", num_points=300), dict(name="digits", image_size=12, random_flip=True)],
)
def test_restored_iterator_continues_exactly(overrides, process_index, process_count, tmp_path):
    cfg = data_cfg(batch_size=64, **overrides)
    share = {"process_index": process_index, "process_count": process_count}
    it, _ = build_dataset(cfg, seed=5, **share)
    take(it, 7)  # past an epoch boundary for the toy set
    state = it.get_state()
    assert state == {"next_index": 7}  # the position is the step
    with ocp.CheckpointManager(tmp_path) as manager:  # as checkpoint.save stores it
        manager.save(7, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
        manager.wait_until_finished()
    expected = take(it, 8)
    fresh, _ = build_dataset(cfg, seed=5, **share)
    fresh.set_state(state)
    assert_same_batches(take(fresh, 8), expected)
    restored, _ = build_dataset(cfg, seed=5, **share)
    with ocp.CheckpointManager(tmp_path) as manager:
        restore = ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(restored))
        manager.restore(7, args=restore)
    assert_same_batches(take(restored, 8), expected)


def test_random_flip_mirrors_some_images():
    cfg = data_cfg(name="digits", batch_size=200)
    plain = next(build_dataset(cfg, seed=2)[0])["x"]
    cfg.random_flip = True
    flipped = next(build_dataset(cfg, seed=2)[0])["x"]  # same order: the flip has its own seed
    mirrored = np.array([np.array_equal(f, p[:, ::-1]) for f, p in zip(flipped, plain)])
    unchanged = np.array([np.array_equal(f, p) for f, p in zip(flipped, plain)])
    assert np.all(mirrored | unchanged)
    assert 50 < np.sum(mirrored & ~unchanged) < 150


def test_random_flip_of_a_batch_flips_each_image_as_alone():
    """One flip serves both paths: a batch with a draw per image, or one image with its draw."""
    x = np.random.default_rng(0).random((6, 4, 5, 3)).astype(np.float32)
    u = np.array([0.1, 0.7, 0.4, 0.9, 0.5, 0.0])
    flipped = images.random_flip({"x": x}, u)["x"]
    for image, draw, batched in zip(x, u, flipped):
        np.testing.assert_array_equal(batched, image[:, ::-1] if draw < 0.5 else image)
        np.testing.assert_array_equal(images.random_flip({"x": image}, draw)["x"], batched)


@pytest.fixture
def mock_tfds():
    """tfds serves random examples from code; mock_data leaves builders unprepared, so say so."""
    with (
        tfds.testing.mock_data(num_examples=40),
        mock.patch.object(tfds.core.DatasetBuilder, "is_prepared", return_value=True),
    ):
        yield


@pytest.mark.parametrize("image_size", [0, 16])
def test_tfds_batches(mock_tfds, image_size):
    cfg = data_cfg(name="cifar10", image_size=image_size, batch_size=8, random_flip=True)
    it, info = build_dataset(cfg, seed=0)
    side = image_size or 32
    assert info == data_info(cfg)
    assert (info.shape, info.num_classes, info.num_examples) == ((side, side, 3), 10, 40)
    batch = next(it)
    assert batch.keys() == {"x", "label"}
    assert batch["x"].shape == (8, side, side, 3) and batch["x"].dtype == np.float32
    assert -1.0 <= batch["x"].min() and batch["x"].max() <= 1.0
    label = batch["label"]
    assert label.dtype == np.int32 and np.all((0 <= label) & (label < 10))


def test_unprepared_tfds_data_set_names_the_fix(tmp_path):
    cfg = data_cfg(name="cifar10", tfds_data_dir=str(tmp_path))
    for fn in (lambda: data_info(cfg), lambda: build_dataset(cfg, seed=0)):
        with pytest.raises(DatasetUnavailableError) as e:
            fn()
        message = str(e.value)
        assert "'cifar10'" in message and str(tmp_path / "cifar10") in message
        assert "TensorFlow" in message and "pip install tensorflow-cpu" in message
        assert "copy a prepared cifar10" in message and "tfds_data_dir" in message


@pytest.fixture
def tensorflow_installed():
    """Pretend TensorFlow is installed, so preparation gets past its first check."""
    with mock.patch.object(images, "_tensorflow_installed", return_value=True):
        yield


def test_unreachable_download_host_fails_fast(tmp_path, tensorflow_installed):
    unreachable = mock.patch.object(
        images.socket, "create_connection", side_effect=OSError("Network is unreachable")
    )
    prepare = mock.patch.object(tfds.core.DatasetBuilder, "download_and_prepare")
    with unreachable, prepare as download_and_prepare:
        with pytest.raises(DatasetUnavailableError, match="cannot reach www.cs.toronto.edu:443"):
            data_info(data_cfg(name="cifar10", tfds_data_dir=str(tmp_path)))
    download_and_prepare.assert_not_called()


def test_failed_preparation_names_the_fix(tmp_path, tensorflow_installed):
    reachable = mock.patch.object(images.socket, "create_connection")
    offline = mock.patch.object(
        tfds.core.DatasetBuilder, "download_and_prepare", side_effect=ConnectionError("offline")
    )
    with reachable, offline:
        with pytest.raises(DatasetUnavailableError, match="preparing failed .ConnectionError"):
            data_info(data_cfg(name="cifar10", tfds_data_dir=str(tmp_path)))


def test_unknown_data_set():
    with pytest.raises(DatasetUnavailableError, match="Unknown data set 'no_such_set'"):
        data_info(data_cfg(name="no_such_set"))


def test_batch_must_divide_over_processes():
    with pytest.raises(ValueError, match="batch_size=256 .* multiple of 3"):
        build_dataset(data_cfg(), seed=0, process_index=0, process_count=3)


def test_conditional_needs_labels():
    with pytest.raises(ValueError, match="has no labels"):
        data_info(data_cfg(name="gmm2d", conditional=True))
