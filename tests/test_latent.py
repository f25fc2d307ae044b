"""Latent runs: the digits autoencoder and its scaling, the cached latent data set, a latent run's
decoded samples and eval, and the latent configs' bad input."""

import dataclasses
import json
import os
import re
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import run_utils

from configs import digits_edm, digits_edm_cond, digits_latent_lcm
from configs.digits import latent
from consistency_jax.core import sampling
from consistency_jax.core.parametrization import Parametrization, denoiser
from consistency_jax.data import build_dataset, data_info, example_reader
from consistency_jax.data.batching import DataInfo
from consistency_jax.data.latents import SPEC_FILE, chunk_path, latent_info
from consistency_jax.errors import ConfigError
from consistency_jax.evaluation import samples
from consistency_jax.jobs import latents, train
from consistency_jax.networks import network_fn
from consistency_jax.networks.autoencoder import Autoencoder, ConvAutoencoder, conv_autoencoder, scale, unscale

# A tiny autoencoder run: 8 channels, 40 steps (it only has to be a trained autoencoder).
AE_RUN = {
    "network.autoencoder.channels": 8,
    "train.num_steps": 40,
    "train.log_every": 20,
    "train.ckpt_every": 40,
    "optim.decay_steps": 40,
    "sample.num_samples": 64,
    "sample.batch_size": 64,
}


@pytest.fixture(scope="module")
def autoencoder(tmp_path_factory) -> str:
    """The workdir of a finished tiny digits autoencoder run."""
    workdir = str(tmp_path_factory.mktemp("ae") / "run")
    run_utils.run(run_utils.launch_args("digits_autoencoder", workdir, AE_RUN), workdir + ".log")
    return workdir


def latent_config(autoencoder: str):
    config = latent(digits_edm.get_config(), autoencoder)
    config.autoencoder.encode_batch_size = 1797  # the whole data set in one call (one compile)
    return config


@pytest.fixture(scope="module")
def ae(autoencoder) -> Autoencoder:
    """The tiny run's autoencoder, loaded once (its jitted encoder and decoder compile once)."""
    return latents.load_autoencoder(latent_config(autoencoder))


def test_scaling_is_exact_and_the_stored_statistics_are_the_autoencoders(autoencoder, ae):
    config = latent_config(autoencoder)
    images = example_reader(config.data)(np.arange(data_info(config.data).num_examples))["x"]
    z = np.asarray(ae.encode(images))
    assert z.shape == (len(images), 4, 4, 2)
    # encode -> scale -> unscale -> decode is decode(encode): the scaling is exact up to rounding
    np.testing.assert_allclose(unscale(scale(z, ae), ae), z, rtol=1e-6, atol=0)
    np.testing.assert_allclose(ae.decode(unscale(scale(z, ae), ae)), ae.decode(z), rtol=0, atol=1e-5)
    with open(os.path.join(autoencoder, latents.STATS_FILE)) as f:
        stats = json.load(f)
    # the scaling factor stored at training end: 1 / the std of the latents of the whole split
    assert ae.scaling_factor == pytest.approx(1 / z.std(), rel=1e-4)
    np.testing.assert_allclose(stats["latent_channel_std"], z.std(axis=(0, 1, 2)), rtol=1e-4)
    recon = np.asarray(ae.decode(z))
    assert stats["reconstruction_mse"] == pytest.approx(np.mean((recon - images) ** 2), rel=1e-4)
    # a scaling factor named in the config replaces the autoencoder's own
    assert latents.trained_autoencoder(autoencoder, 0.5).scaling_factor == 0.5


def test_the_latent_data_set_is_deterministic_cached_and_of_unit_std(autoencoder, ae, tmp_path):
    config = latent_config(autoencoder)
    images = data_info(config.data)
    source = latents.latent_dataset(config, ae, images, str(tmp_path / "a"))
    first = chunk_path(str(tmp_path / "a" / "latents"), 0, "latents")
    written = os.stat(first).st_mtime_ns
    again = latents.latent_dataset(config, ae, images, str(tmp_path / "a"))
    assert os.stat(first).st_mtime_ns == written  # read from the cache, not encoded again
    elsewhere = latents.latent_dataset(config, ae, images, str(tmp_path / "b"))
    everything = np.arange(images.num_examples)
    x = source[everything]["x"]
    np.testing.assert_array_equal(x, again[everything]["x"])
    np.testing.assert_array_equal(x, elsewhere[everything]["x"])
    np.testing.assert_array_equal(source[everything]["label"], example_reader(config.data)(everything)["label"])
    # the scaled latents of example i: scaling_factor * encode(image i)
    z = np.asarray(ae.encode(example_reader(config.data)(everything)["x"]))
    np.testing.assert_allclose(x, ae.scaling_factor * z, rtol=1e-6, atol=1e-7)
    # the scaling factor is 1 / the std of these very latents: their std after scaling is 1
    assert x.std() == pytest.approx(1.0, abs=1e-4)
    channel_std = x.std(axis=(0, 1, 2))
    print("per-channel std after scaling:", channel_std)
    assert np.all((channel_std > 0.3) & (channel_std < 1.7)), channel_std
    # batches through the grain pipeline: each a batch of distinct rows of the cache, in the
    # seed's order on every run
    it, info = build_dataset(config.data, seed=0, latents=source)
    assert info.shape == (4, 4, 2)
    rows = np.concatenate([next(it)["x"] for _ in range(images.num_examples // config.data.batch_size)])
    flat = x.reshape(len(x), -1)
    index = {r.tobytes(): i for i, r in enumerate(flat)}
    positions = [index[r.tobytes()] for r in rows.reshape(len(rows), -1)]
    assert len(set(positions)) == len(positions)  # the first epoch: no example twice
    it2, _ = build_dataset(config.data, seed=0, latents=again)
    np.testing.assert_array_equal(next(it2)["x"], rows[: config.data.batch_size])


@pytest.mark.slow
def test_a_latent_run_saves_and_evaluates_decoded_images(autoencoder, tmp_path):
    """A latent EDM teacher trained a few steps: its saved samples are uint8 8x8x1 images, the
    decoded sampler's latents; --mode=eval evaluates such images."""
    from consistency_jax.core import sampling
    from consistency_jax.evaluation.run import restore_ema_params
    from consistency_jax.evaluation.samples import to_uint8
    from consistency_jax.networks import build_network
    from consistency_jax.training.objectives import teacher_denoiser

    workdir = str(tmp_path / "run")
    values = run_utils.DIGITS | {
        "autoencoder.kind": "digits",
        "autoencoder.workdir": autoencoder,
        "model.sigma_data": 1.0,
        "train.num_steps": 4,
        "train.ckpt_every": 4,
        "sample.teacher_steps": 3,
        "eval.num_samples": 64,
        "eval.batch_size": 32,
        "eval.shard_size": 32,
    }
    run_utils.run(run_utils.launch_args("digits_edm", workdir, values), workdir + ".log")
    samples = np.load(os.path.join(workdir, "samples", "teacher_heun5.npz"))["samples"]
    assert samples.dtype == np.uint8 and samples.shape == (8, 8, 8, 1)
    # the saved samples are the decoded latents of the sampler
    config = run_utils.config("digits_edm", values)
    ae = latents.load_autoencoder(config)
    info = latent_info(data_info(config.data), ae, "digits")
    model = build_network(config.network)
    params, _ = restore_ema_params(config, workdir, model, info)
    # the teacher's Heun ODE from the same x_T in latent space, unclipped (latents are not in [-1, 1])
    m = config.model
    drawn = sampling.teacher_sample(
        teacher_denoiser(model, params, None, 1.0, m.sigma_data),
        jax.random.fold_in(jax.random.fold_in(jax.random.key(0), 2), 0),
        (8, *info.shape),
        sampling.teacher_sigmas(3, m.sigma_min, m.sigma_max, m.rho),
        "heun",
        clip=False,
    )
    assert drawn.shape == (8, 4, 4, 2)
    expected = to_uint8(np.asarray(ae.decode(unscale(drawn, ae))))
    difference = np.abs(expected.astype(int) - samples)  # equal up to a rounding of a few pixels
    assert difference.max() <= 1 and np.mean(difference) < 0.01
    run_utils.run(run_utils.launch_args("digits_edm", workdir, values, "--mode=eval"), workdir + ".eval.log")
    with open(os.path.join(workdir, "eval", "results.json")) as f:
        results = json.load(f)
    assert results["feature_net"] == "digits" and np.isfinite(results["samplers"]["teacher_heun5"]["fd_digits"])
    shard = np.load(os.path.join(workdir, "eval", "teacher_heun5", "shard_00000.npz"))["samples"]
    assert shard.dtype == np.uint8 and shard.shape == (32, 8, 8, 1)


# --- the decoder inside the jitted sampler ------------------------------------------------------------


class LatentNet(nn.Module):
    """A 1x1 conv of the latents plus 0.1 x its label (the null label -1 for None): parameters, and
    an output that depends on each row's label; it takes a w-embedding's scale and ignores it."""

    @nn.compact
    def __call__(self, x, c_noise, labels=None, guidance=None, *, train=False):
        label = jnp.full(x.shape[:1], -1.0) if labels is None else labels.astype(jnp.float32)
        return nn.Conv(x.shape[-1], (1, 1))(x) + 0.1 * label[:, None, None, None]


@pytest.fixture(scope="module")
def random_ae() -> Autoencoder:
    """A digits-sized ConvAutoencoder (8x8x1 images -> 4x4x2 latents) at random parameters."""
    model = ConvAutoencoder(channels=32, latent_channels=2, downsample=2)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 8, 8, 1)))["params"]
    rng = np.random.default_rng(0)  # random normal weights without compiling the initializer
    params = jax.tree.map(lambda a: (0.2 * rng.normal(size=a.shape)).astype(np.float32), shapes)
    return conv_autoencoder(model, params, 1, 1.7)


def _latent_config(name: str, **sample):
    config = latent(__import__(f"configs.digits_{name}", fromlist=["get_config"]).get_config())
    config.sample.batch_size = 8
    config.sample.update(sample)
    return config


def test_the_decoder_params_are_an_argument_of_the_compiled_sampler_not_constants(random_ae):
    """The lowered latent sampler holds the autoencoder's parameters as inputs: its program text
    is far smaller than their bytes (as constants they would be written out in it whole), and its
    samples are decode(unscale(the one-step consistency sample))."""
    config = _latent_config("cd")
    net = LatentNet()
    params = net.init(jax.random.key(1), jnp.zeros((1, 4, 4, 2)), jnp.zeros(1))["params"]
    sampler = samples.make_sampler(config, net, "onestep", (4, 4, 2), random_ae)
    args = (samples.sampler_params(params, random_ae), jax.random.key(2), None)
    ae_bytes = sum(a.nbytes for a in jax.tree.leaves(random_ae.params))
    assert ae_bytes > 300_000
    assert len(sampler.lower(*args).as_text()) < ae_bytes / 4
    m = config.model
    cm = Parametrization("consistency", m.sigma_data, m.sigma_min)
    z = sampling.multistep_sample(
        denoiser(network_fn(net, params), cm), args[1], (8, 4, 4, 2), (m.sigma_max,), m.sigma_min
    )
    expected = random_ae.decode(unscale(z, random_ae))
    np.testing.assert_allclose(sampler(*args), expected, rtol=1e-5, atol=1e-5)


def _differing_rows(sampler, params, key) -> tuple[np.ndarray, np.ndarray]:
    """(rows where two label batches differ, rows where the sampler's images from them differ)."""
    a = np.arange(8) % 3
    b = a.copy()
    b[[1, 4]] += 1
    xa, xb = (np.asarray(sampler(params, key, jnp.asarray(labels))) for labels in (a, b))
    return a != b, np.any(xa != xb, axis=(1, 2, 3))


def test_a_conditional_latent_teacher_samples_each_rows_label_and_w0_is_unconditional(random_ae):
    """The conditional latent teacher's decoded images differ exactly in the rows whose labels
    differ (each row's label reaches the network); at w = 0 it is the unconditional sampler (the
    null label), whatever the labels."""
    config = _latent_config("edm_cond", teacher_steps=3, guidance=(0.0, 1.0))
    net = LatentNet()
    params = net.init(jax.random.key(1), jnp.zeros((1, 4, 4, 2)), jnp.zeros(1))["params"]
    args = samples.sampler_params(params, random_ae), jax.random.key(3)
    conditional = samples.make_sampler(config, net, "teacher_heun5_w1", (4, 4, 2), random_ae)
    labels_differ, images_differ = _differing_rows(conditional, *args)
    np.testing.assert_array_equal(images_differ, labels_differ)
    unguided = samples.make_sampler(config, net, "teacher_heun5_w0", (4, 4, 2), random_ae)
    w0 = unguided(*args, jnp.arange(8) % 3)
    np.testing.assert_array_equal(w0, unguided(*args, jnp.arange(8) % 5))
    np.testing.assert_array_equal(w0, conditional(*args, None))  # the null label's sampler


def test_a_latent_lcm_student_samples_each_rows_label_at_every_step_count(random_ae):
    config = _latent_config("lcm", lcm_steps=(1, 2), guidance=(2.0,))
    net = LatentNet()
    params = net.init(jax.random.key(1), jnp.zeros((1, 4, 4, 2)), jnp.zeros(1))["params"]
    for name in samples.sampler_names(config):
        sampler = samples.make_sampler(config, net, name, (4, 4, 2), random_ae)
        labels_differ, images_differ = _differing_rows(
            sampler, samples.sampler_params(params, random_ae), jax.random.key(4)
        )
        np.testing.assert_array_equal(images_differ, labels_differ, err_msg=name)


# --- the latent cache: resumed, sharded over processes, rebuilt for another spec -------------------

CHUNK = 500  # 1797 digits -> chunks of 500, 500, 500, 297


@pytest.fixture()
def cache_config(tmp_path):
    """A latent config whose autoencoder's identity is tmp_path/ae/autoencoder.json (its encoder
    is the test's `random_ae`)."""
    (tmp_path / "ae").mkdir()
    (tmp_path / "ae" / latents.STATS_FILE).write_text(json.dumps({"scaling_factor": 1.7}))
    config = latent(digits_edm.get_config(), str(tmp_path / "ae"))
    config.autoencoder.encode_batch_size = 250
    return config


def _chunks(directory) -> dict[str, np.ndarray]:
    return {p.name: np.load(p) for p in sorted(directory.glob("chunk_*.npy"))}


def _encode(config, ae, directory, process_index=0, process_count=1) -> list[int]:
    info = data_info(config.data)
    return latents.encode_latents(config, ae, info, str(directory), process_index, process_count, chunk_size=CHUNK)


def test_an_interrupted_encode_resumes_at_its_missing_chunks_and_equals_an_uninterrupted_one(
    random_ae, cache_config, tmp_path
):
    assert _encode(cache_config, random_ae, tmp_path / "whole") == [0, 1, 2, 3]
    whole = _chunks(tmp_path / "whole")
    assert sorted(whole) == [f"chunk_{k:05d}.{a}.npy" for k in range(4) for a in ("labels", "latents")]
    # stopped after chunk 0 and the labels of chunk 1 (a chunk is whole once its latents are)
    cut = tmp_path / "cut"
    cut.mkdir()
    for name in (SPEC_FILE, "chunk_00000.labels.npy", "chunk_00000.latents.npy", "chunk_00001.labels.npy"):
        shutil.copy2(tmp_path / "whole" / name, cut / name)
    written = os.stat(cut / "chunk_00000.latents.npy").st_mtime_ns
    assert _encode(cache_config, random_ae, cut) == [1, 2, 3]
    assert os.stat(cut / "chunk_00000.latents.npy").st_mtime_ns == written  # kept, not encoded again
    resumed = _chunks(cut)
    assert sorted(resumed) == sorted(whole)
    for name, array in whole.items():
        np.testing.assert_array_equal(resumed[name], array, err_msg=name)
    assert _encode(cache_config, random_ae, cut) == []  # whole: nothing left to encode


def test_two_processes_encode_disjoint_chunks_whose_union_is_the_single_process_cache(
    random_ae, cache_config, tmp_path
):
    _encode(cache_config, random_ae, tmp_path / "one")
    shared = tmp_path / "two"
    assert _encode(cache_config, random_ae, shared, 0, 2) == [0, 2]
    first = set(_chunks(shared))
    assert first == {f"chunk_{k:05d}.{a}.npy" for k in (0, 2) for a in ("labels", "latents")}
    assert _encode(cache_config, random_ae, shared, 1, 2) == [1, 3]
    both, one = _chunks(shared), _chunks(tmp_path / "one")
    assert sorted(both) == sorted(one)
    for name, array in one.items():
        np.testing.assert_array_equal(both[name], array, err_msg=name)


def test_a_cache_of_another_autoencoder_is_rebuilt_even_when_the_rebuild_is_interrupted(
    random_ae, cache_config, tmp_path, monkeypatch
):
    """Retraining the autoencoder (another autoencoder.json) makes every chunk stale: they are
    encoded anew, and a rebuild stopped before its first chunk does not leave the old chunks to
    be read as the new autoencoder's."""
    directory = tmp_path / "cache"
    _encode(cache_config, random_ae, directory)
    retrained = dataclasses.replace(random_ae, params=jax.tree.map(lambda p: -p, random_ae.params))
    (tmp_path / "ae" / latents.STATS_FILE).write_text(json.dumps({"scaling_factor": 2.5}))

    def stopped(*_):
        raise InterruptedError("stopped before the first chunk")

    with monkeypatch.context() as patch:
        patch.setattr(latents, "_encode_chunks", stopped)
        with pytest.raises(InterruptedError):
            _encode(cache_config, retrained, directory)
    assert _encode(cache_config, retrained, directory) == [0, 1, 2, 3]
    images = example_reader(cache_config.data)(np.arange(1797))["x"]
    z = np.concatenate([np.load(directory / f"chunk_{k:05d}.latents.npy") for k in range(4)])
    np.testing.assert_allclose(z, retrained.encode(images), rtol=1e-5, atol=1e-6)
    # another chunk size: the old spec's chunks beyond the new count are gone too
    info = data_info(cache_config.data)
    assert latents.encode_latents(cache_config, retrained, info, str(directory), 0, 1, chunk_size=1000) == [0, 1]
    assert sorted(_chunks(directory)) == [f"chunk_{k:05d}.{a}.npy" for k in range(2) for a in ("labels", "latents")]


# --- bad input ------------------------------------------------------------------------------------


def test_an_autoencoder_that_cannot_encode_the_data_or_breaks_its_own_shape():
    digits = DataInfo(shape=(8, 8, 1), num_classes=10, num_examples=1797)
    rgb_only = Autoencoder(lambda p, x: x[:, ::2, ::2, :3] @ np.ones((3, 4)), lambda p, z: z, None, 1.0, 4, 2)
    with pytest.raises(ConfigError, match="cannot encode the 8x8x1 images of 'digits'"):
        latent_info(digits, rgb_only, "digits")
    three = Autoencoder(lambda p, x: jax.numpy.repeat(x[:, ::2, ::2], 3, axis=-1), lambda p, z: z, None, 1.0, 2, 2)
    with pytest.raises(ConfigError, match=re.escape("to latents of shape (4, 4, 3), not the (4, 4, 2)")):
        latent_info(digits, three, "digits")
    with pytest.raises(ConfigError, match="downsamples by 4 and needs sides that divide by it"):
        latent_info(DataInfo((10, 10, 1), 10, 1797), Autoencoder(None, None, None, 1.0, 2, 4), "digits")
    assert latent_info(digits, None, "digits") is digits  # a pixel run


def test_a_student_whose_teacher_is_in_another_space_stops_before_compute(autoencoder, tmp_path):
    teacher = tmp_path / "pixel_teacher"
    teacher.mkdir()
    (teacher / "config.json").write_text(digits_edm.get_config().to_json())
    config = latent(__import__("configs.digits_cd", fromlist=["get_config"]).get_config(), autoencoder)
    config.objective.teacher_workdir = str(teacher)
    with pytest.raises(ConfigError, match="was trained on images .* this run is on the latents of"):
        train.train(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "teacher,message",
    [
        ("pixel", "was trained on images (config.autoencoder.kind='none'), this run is on the latents of"),
        ("unconditional", "trained with data.conditional=False, this run has True: it distils a conditional teacher"),
        ("no_dropout", "trained without label dropout"),
    ],
)
def test_a_latent_lcm_whose_teacher_is_pixel_space_or_unconditional_stops_before_compute(
    autoencoder, tmp_path, teacher, message
):
    """A latent LCM student refuses a pixel-space teacher, an unconditional latent one and a
    conditional latent one without label dropout, naming the fix, before anything is written."""
    teacher_config = {
        "pixel": digits_edm_cond.get_config(),
        "unconditional": latent(digits_edm.get_config(), autoencoder),
        "no_dropout": latent(digits_edm_cond.get_config(), autoencoder),
    }[teacher]
    if teacher == "no_dropout":
        teacher_config.objective.label_dropout = 0.0
    (tmp_path / "teacher").mkdir()
    (tmp_path / "teacher" / "config.json").write_text(teacher_config.to_json())
    config = latent(digits_latent_lcm.get_config(), autoencoder)
    config.objective.teacher_workdir = str(tmp_path / "teacher")
    with pytest.raises(ConfigError, match=re.escape(message)) as error:
        train.train(config, str(tmp_path / "run"))
    assert "teacher_workdir" in str(error.value) or "label_dropout" in str(error.value)  # the fix
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "values,message",
    [
        ({"autoencoder.kind": "digits"}, "is a latent run without an autoencoder"),
        ({"autoencoder.kind": "digits", "autoencoder.workdir": "/no/such/run"}, "No autoencoder run in '/no/such/run'"),
        ({"autoencoder.kind": "vq"}, "config.autoencoder.kind='vq' is not known"),
        (
            {"autoencoder.kind": "digits", "autoencoder.workdir": "x", "data.random_flip": True},
            "random_flip=True on a latent run",
        ),
        ({"objective.name": "autoencoder"}, "an autoencoder run sets both to 'autoencoder'"),
    ],
)
def test_latent_configs_that_cannot_work(tmp_path, values, message):
    config = run_utils.override(digits_edm.get_config(), values)
    with pytest.raises(ConfigError, match=re.escape(message)):
        train.train(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_a_latent_run_names_an_unfinished_autoencoder_run(autoencoder, tmp_path):
    unfinished = tmp_path / "ae"
    unfinished.mkdir()
    with open(os.path.join(autoencoder, "config.json")) as f:
        (unfinished / "config.json").write_text(f.read())
    with pytest.raises(ConfigError, match="has not finished"):
        train.train(latent_config(str(unfinished)), str(tmp_path / "run"))
    with pytest.raises(ConfigError, match="not an autoencoder"):
        (unfinished / "config.json").write_text(digits_edm.get_config().to_json())
        train.train(latent_config(str(unfinished)), str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_the_pipeline_points_latent_stages_at_its_autoencoder_and_latent_teacher(tmp_path):
    from configs.presets import PRESETS
    from consistency_jax.jobs import end_to_end

    stages = ("edm", "cd", "autoencoder", "latent_edm", "latent_cd", "latent_ict")
    configs = end_to_end.stage_configs(PRESETS["digits"], str(tmp_path), stages)
    for stage in ("latent_edm", "latent_cd", "latent_ict"):
        assert configs[stage].autoencoder.workdir == str(tmp_path / "autoencoder")
    assert configs["latent_cd"].objective.teacher_workdir == str(tmp_path / "latent_edm")
    assert configs["cd"].objective.teacher_workdir == str(tmp_path / "edm")
    assert end_to_end.autoencoder_stages(configs) == ["autoencoder"]
    with pytest.raises(ValueError, match="need the autoencoder stage"):
        end_to_end.stage_configs(PRESETS["digits"], str(tmp_path), ("latent_edm", "latent_cd"))
    with pytest.raises(ValueError, match="needs an unconditional latent teacher stage"):
        end_to_end.stage_configs(PRESETS["digits"], str(tmp_path), ("edm", "autoencoder", "latent_cd"))


def test_the_pipeline_points_the_latent_lcm_at_the_conditional_latent_teacher(tmp_path):
    from configs.presets import PRESETS
    from consistency_jax.jobs import end_to_end

    stages = ("edm_cond", "lcm", "autoencoder", "latent_edm", "latent_edm_cond", "latent_lcm")
    configs = end_to_end.stage_configs(PRESETS["digits"], str(tmp_path), stages)
    assert configs["latent_lcm"].objective.teacher_workdir == str(tmp_path / "latent_edm_cond")
    assert configs["lcm"].objective.teacher_workdir == str(tmp_path / "edm_cond")
    for stage in ("latent_edm", "latent_edm_cond", "latent_lcm"):
        assert configs[stage].autoencoder.workdir == str(tmp_path / "autoencoder")
    assert configs["latent_edm_cond"].objective.label_dropout > 0 and configs["latent_lcm"].data.conditional
    assert end_to_end.teacher_stages(configs) == ["edm_cond", "latent_edm", "latent_edm_cond"]
    with pytest.raises(ValueError, match="needs a conditional latent teacher stage"):
        end_to_end.stage_configs(
            PRESETS["digits"], str(tmp_path), ("edm_cond", "autoencoder", "latent_edm", "latent_lcm")
        )
