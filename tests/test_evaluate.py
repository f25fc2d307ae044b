"""--mode=eval on a tiny digits run: figures, files, resume, redraw, reference path, no weights."""

import dataclasses
import json
import math
import os
import shutil
from unittest import mock

import numpy as np
import pytest
import run_utils
import tensorflow_datasets as tfds

from consistency_jax.config.schema import get_config
from consistency_jax.data import images
from consistency_jax.errors import ConfigError
from consistency_jax.evaluation import extract_features, feature_statistics, frechet_distance
from consistency_jax.evaluation import run as evaluate
from consistency_jax.evaluation import samples as generate
from consistency_jax.jobs import train
from consistency_jax.networks.pretrained import WeightsUnavailableError, inception, load_digits_features
from consistency_jax.training import checkpoint

UNREACHABLE = "http://127.0.0.1:9/weights.pth"  # the discard port: connection refused at once
SAMPLERS = ["onestep", "2step"]
BATCH, SHARD, NUM = 25, 50, 190  # per sampler 4 shards of 2 batches, the last shard of 40
STEPS = 2
DRAW_BATCH = evaluate.draw_batch


class Killed(Exception):
    """Stands for the eval process being killed."""


def tiny_config():
    c = get_config()
    c.data.name = "digits"
    c.data.batch_size = 32
    c.network.name = "ddpmpp"
    c.network.unet.update(model_channels=16, channel_mult=(1,), num_blocks=1, attn_resolutions=())
    c.objective.name = "ict"
    c.train.update(num_steps=STEPS, log_every=STEPS, ckpt_every=STEPS)
    c.sample.update(num_samples=BATCH, batch_size=BATCH)
    c.eval.update(num_samples=NUM, batch_size=BATCH, shard_size=SHARD, feature_batch_size=100)
    return c


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-step iCT digits run. Each sampler is compiled once for the module: make_sampler's jitted
    function is reused by name and batch size (its config and model are the same in every call)."""
    make, compiled = generate.make_sampler, {}

    def make_once(config, model, name, shape, autoencoder=None):
        key = (name, config.sample.batch_size)
        if key not in compiled:
            compiled[key] = make(config, model, name, shape, autoencoder)
        return compiled[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(generate, "make_sampler", make_once)
        workdir = tmp_path_factory.mktemp("run")
        train.train(tiny_config(), str(workdir))
        yield workdir


def _copy(run, dest) -> str:
    shutil.copytree(run, dest)
    return str(dest)


@pytest.fixture(scope="module")
def evaluated(run, tmp_path_factory):
    """(workdir, results) of one uninterrupted eval of a copy of the run."""
    workdir = _copy(run, tmp_path_factory.mktemp("evaluated") / "run")
    return workdir, evaluate.evaluate(tiny_config(), workdir)


def _count_draws(monkeypatch, kill_after: int | None = None) -> list:
    """Record evaluate.draw_batch calls; raise Killed instead of the call after `kill_after`."""
    calls = []

    def counted(*args):
        if len(calls) == kill_after:
            raise Killed
        calls.append(args[3])  # the batch index
        return DRAW_BATCH(*args)

    monkeypatch.setattr(evaluate, "draw_batch", counted)
    return calls


def _shards(workdir: str, sampler: str) -> dict[str, int]:
    """{file name: mtime_ns} of a sampler's eval directory."""
    directory = os.path.join(workdir, "eval", sampler)
    return {n: os.stat(os.path.join(directory, n)).st_mtime_ns for n in os.listdir(directory)}


def _eval_records(workdir: str) -> list[dict]:
    path = os.path.join(workdir, evaluate.EVALS_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_eval_writes_finite_figures_shards_and_records(evaluated):
    workdir, results = evaluated
    header = (results["step"], results["feature_net"], results["num_samples"])
    assert header == (STEPS, "digits", NUM)
    assert list(results["samplers"]) == SAMPLERS
    for figures in results["samplers"].values():
        # named for the digits classifier: fid is Inception's alone
        assert set(figures) == {"fd_digits", "is_digits", "is_digits_std", "kd_digits", "kd_digits_std"}
        assert all(math.isfinite(v) for v in figures.values()), figures
        assert figures["fd_digits"] > 0 and 1 <= figures["is_digits"] <= 10
    with open(os.path.join(workdir, "eval", "results.json")) as f:
        assert json.load(f) == results
    [record] = _eval_records(workdir)
    assert record["step"] == STEPS and record["feature_net"] == "digits"
    assert record["2step/fd_digits"] == results["samplers"]["2step"]["fd_digits"]
    scalars, images = run_utils.tensorboard_events(workdir)
    assert scalars["eval/2step/fd_digits"] == {STEPS: pytest.approx(record["2step/fd_digits"])}
    # the training run's final sample grids, and the eval's
    assert images == {f"{kind}/{sampler}": [STEPS] for kind in ("samples", "eval") for sampler in SAMPLERS}
    assert {"train/loss", "train/grad_norm", "train/lr", "train/steps_per_sec"} <= set(scalars)
    for sampler in SAMPLERS:
        names = [f"shard_{k:05d}.npz" for k in range(4)]
        assert sorted(_shards(workdir, sampler)) == names + ["spec.json"]
        for name, size in zip(names, [SHARD] * 3 + [NUM - 3 * SHARD], strict=True):
            with np.load(os.path.join(workdir, "eval", sampler, name)) as data:
                assert data["samples"].dtype == np.uint8
                assert data["samples"].shape == (size, 8, 8, 1)


def test_killed_eval_resumes_at_the_first_missing_shard_with_identical_figures(
    run, evaluated, tmp_path, monkeypatch
):
    workdir = _copy(run, tmp_path / "run")
    calls = _count_draws(monkeypatch, kill_after=5)  # onestep shards 0, 1 and half of shard 2
    with pytest.raises(Killed):
        evaluate.evaluate(tiny_config(), workdir)
    before = _shards(workdir, "onestep")
    assert sorted(before) == ["shard_00000.npz", "shard_00001.npz", "spec.json"]  # no half shard
    assert not os.path.exists(os.path.join(workdir, "eval", "results.json"))
    assert not _eval_records(workdir)

    calls = _count_draws(monkeypatch)
    results = evaluate.evaluate(tiny_config(), workdir)
    assert calls == list(range(4, 8)) + list(range(8))  # onestep batches 4..7, every 2step batch
    assert {k: v for k, v in _shards(workdir, "onestep").items() if k in before} == before
    assert results["samplers"] == evaluated[1]["samplers"]

    calls = _count_draws(monkeypatch)
    assert evaluate.evaluate(tiny_config(), workdir)["samplers"] == results["samplers"]
    assert not calls  # every shard present: nothing drawn


def test_an_eval_under_other_settings_redraws_and_keeps_the_runs_figures(run, evaluated, tmp_path, monkeypatch):
    workdir = _copy(evaluated[0], tmp_path / "run")
    config = tiny_config()
    config.seed = 1
    calls = _count_draws(monkeypatch)
    results = evaluate.evaluate(config, workdir)
    assert len(calls) == len(SAMPLERS) * 8
    own, new = evaluated[1]["samplers"]["onestep"]["fd_digits"], results["samplers"]["onestep"]["fd_digits"]
    assert new != own
    # the run's own record kept, the other seed's beside it naming the override; TensorBoard
    # holds the run's own figure alone
    records = _eval_records(workdir)
    assert [(r["step"], r.get("overrides"), r["onestep/fd_digits"]) for r in records] == [
        (STEPS, None, own), (STEPS, {"seed": 1}, new)
    ]
    with open(os.path.join(workdir, "eval", "results.json")) as f:
        assert json.load(f)["overrides"] == {"seed": 1}
    scalars, _ = run_utils.tensorboard_events(workdir)
    assert scalars["eval/onestep/fd_digits"] == {STEPS: pytest.approx(own)}
    results = evaluate.evaluate(config, workdir)  # the same override again: its record replaced
    assert [r.get("overrides") for r in _eval_records(workdir)] == [None, {"seed": 1}]


def test_reference_statistics_of_the_training_split(tmp_path, monkeypatch):
    features_fn = load_digits_features()
    reference = evaluate.reference_statistics(tiny_config(), "digits", features_fn, str(tmp_path))
    source = images.digits_source(0)
    data = np.stack([source[i]["image"] for i in range(len(source))])
    features = extract_features([data], features_fn)[0]
    assert frechet_distance(*feature_statistics(features), reference.mu, reference.sigma) < 1e-6
    np.testing.assert_allclose(
        np.sort(reference.features, axis=0), np.sort(features, axis=0), rtol=1e-5, atol=1e-5
    )
    monkeypatch.setattr(evaluate, "build_dataset", mock.Mock(side_effect=AssertionError))
    cached = evaluate.reference_statistics(tiny_config(), "digits", features_fn, str(tmp_path))
    assert os.path.exists(tmp_path / "eval" / "reference_stats_digits.npz")
    np.testing.assert_array_equal(cached.sigma, reference.sigma)


def test_missing_inception_weights_fail_before_anything_is_written(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("CONSISTENCY_JAX_CACHE", str(cache))
    weights = dataclasses.replace(inception.FID_INCEPTION_WEIGHTS, url=UNREACHABLE)
    monkeypatch.setattr(inception, "FID_INCEPTION_WEIGHTS", weights)
    config = tiny_config()
    config.data.name = "cifar10"
    config.eval.feature_net = "inception"
    workdir = tmp_path / "run"
    with (
        tfds.testing.mock_data(num_examples=40),
        mock.patch.object(tfds.core.DatasetBuilder, "is_prepared", return_value=True),
        pytest.raises(WeightsUnavailableError, match=f"copy it to {cache}/pt_inception-2015-12-05"),
    ):
        evaluate.evaluate(config, str(workdir))
    assert not workdir.exists()
    assert not any(cache.iterdir())  # no partial download


@pytest.mark.parametrize(
    "name, data_name, shape, expected",
    [
        ("auto", "digits", (8, 8, 1), "digits"),
        ("auto", "mnist_16", (16, 16, 1), "digits"),
        ("auto", "cifar10", (32, 32, 3), "inception"),
        ("digits", "digits", (16, 16, 1), "digits"),
        ("auto", "mnist", (28, 28, 1), "no network"),
        ("inception", "digits", (8, 8, 1), "takes 3-channel"),
        ("digits", "cifar10", (32, 32, 3), "takes 1-channel"),
        ("fid", "cifar10", (32, 32, 3), "not known"),
        ("auto", "gmm2d", (2,), "evaluates image runs"),
    ],
)
def test_feature_net_name(name, data_name, shape, expected):
    if expected in evaluate.FEATURE_NETS:
        assert evaluate.feature_net_name(name, data_name, shape) == expected
    else:
        with pytest.raises(ConfigError, match=expected):
            evaluate.feature_net_name(name, data_name, shape)


def test_shards_must_hold_whole_batches():
    config = tiny_config()
    config.eval.shard_size = 60
    with pytest.raises(ConfigError, match="multiple of config.eval.batch_size"):
        evaluate.validate_eval(config, images.digits_info(0))


def test_eval_at_a_named_step_writes_beside_the_latest_eval(evaluated, tmp_path, monkeypatch):
    workdir = _copy(evaluated[0], tmp_path / "run")
    latest = {s: _shards(workdir, s) for s in SAMPLERS}
    with pytest.raises(checkpoint.CheckpointNotFoundError, match=rf"steps \[1\] .*keeps \[{STEPS}\]"):
        evaluate.evaluate(tiny_config(), workdir, step=1)
    results = evaluate.evaluate(tiny_config(), workdir, step=STEPS)
    # the same checkpoint and key as the latest eval: the same figures, in a directory of its own
    assert results["samplers"] == evaluated[1]["samplers"]
    step_dir = os.path.join(workdir, "eval", f"step_{STEPS:07d}")
    with open(os.path.join(step_dir, "results.json")) as f:
        assert json.load(f) == results
    assert sorted(os.listdir(step_dir)) == sorted(SAMPLERS + ["results.json"])
    assert {s: _shards(workdir, s) for s in SAMPLERS} == latest  # the latest eval's files untouched
    assert [r["step"] for r in _eval_records(workdir)] == [STEPS]  # evaluated again: one record
    scalars, _ = run_utils.tensorboard_events(workdir)  # and one value (a second one fails here)
    assert list(scalars["eval/onestep/fd_digits"]) == [STEPS]
    assert evaluate.steps_to_evaluate(workdir, "all") == [STEPS]
    assert evaluate.steps_to_evaluate(workdir, "latest") == [None]
    assert evaluate.steps_to_evaluate(workdir, str(STEPS)) == [STEPS]
    with pytest.raises(checkpoint.CheckpointNotFoundError, match=rf"steps \[1\].*keeps \[{STEPS}\]"):
        evaluate.steps_to_evaluate(workdir, f"1,{STEPS}")
    with pytest.raises(ConfigError, match="latest, all or checkpoint steps"):
        evaluate.steps_to_evaluate(workdir, "last")


def test_eval_overrides_name_the_keys_that_change_the_figures(tmp_path):
    config = tiny_config()
    (tmp_path / "config.json").write_text(config.to_json())
    assert evaluate.eval_overrides(config, str(tmp_path)) == {}
    config.model.sigma_max = 20.0
    config.sample.trigflow_steps = (1.0, 0.5)
    config.eval.feature_batch_size = 7  # sets the feature network's batches, not the figures
    config.sample.batch_size = 5  # replaced by eval.batch_size in an eval
    config.train.num_steps = 9  # training keys do not change an eval
    assert evaluate.eval_overrides(config, str(tmp_path)) == {
        "model.sigma_max": 20.0, "sample.trigflow_steps": [1.0, 0.5]
    }
    assert evaluate.eval_overrides(config, str(tmp_path / "converted")) == {}  # no config.json


def test_samples_under_overrides_go_to_a_file_of_their_own(tmp_path):
    config = tiny_config()
    (tmp_path / "config.json").write_text(config.to_json())
    under = lambda: evaluate.run_overrides(config, str(tmp_path), generate.SAMPLE_SECTIONS)
    assert under() == {} and generate.overrides_tag(under()) == ""  # the run's own files
    config.model.sigma_max = 20.0
    config.sample.trigflow_steps = (1.0, -0.5)
    config.sample.batch_size = 5  # every sample key counts: it sets the batches' keys
    config.eval.num_samples = 9  # eval and training keys do not change the samples
    config.train.num_steps = 9
    assert under() == {"model.sigma_max": 20.0, "sample.batch_size": 5, "sample.trigflow_steps": [1.0, -0.5]}
    assert generate.overrides_tag(under() | {"seed": 7}) == (
        "_model.sigma_max20.0_sample.batch_size5_sample.trigflow_steps1.0--0.5_seed7"
    )
    assert generate.overrides_tag({"sample.trigflow_steps": [1.0, 0.5]}) != generate.overrides_tag(
        {"sample.trigflow_steps": [1.0, -0.5]}
    )
    many = {f"sample.k{i}": i for i in range(20)}  # too long to spell: a hash, distinct per value
    assert generate.overrides_tag(many).startswith("_overrides") and len(generate.overrides_tag(many)) <= 30
    assert generate.overrides_tag(many) != generate.overrides_tag(many | {"sample.k0": -1})
