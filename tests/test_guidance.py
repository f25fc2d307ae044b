"""Classifier-free guidance and LCM: the guided denoiser of a two-class Gaussian mixture against
its closed form, the guided teacher step of the loss against the sampler's, labels in every
sampler and in the saved files, the w-embedding, and the bad inputs."""

import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import digits_edm_cond, digits_lcm, toy_cd, toy_edm
from consistency_jax.config import checks
from consistency_jax.core import guidance, losses, ode, sampling, schedules
from consistency_jax.core.arrays import per_sample
from consistency_jax.core.parametrization import Parametrization, denoiser
from consistency_jax.data import data_info
from consistency_jax.errors import ConfigError
from consistency_jax.evaluation import run as evaluate
from consistency_jax.evaluation import samples
from consistency_jax.jobs import teacher as teacher_job
from consistency_jax.jobs import train
from consistency_jax.networks import network_fn
from consistency_jax.networks.mlp import MLP
from consistency_jax.training.objectives import make_objective, teacher_denoiser

EPS, TMAX, RHO = 0.002, 80.0, 7.0
MU = np.array([[-1.0, 0.5], [1.0, -0.5]], np.float32)  # the two class means
S = 0.3  # each class is N(mu_c, S^2 I), the classes equally likely


def cond_denoiser(c: int):
    """E[x | x_sigma, c] = mu_c + S^2 / (S^2 + sigma^2) (x_sigma - mu_c)."""
    return lambda x, sigma: MU[c] + S**2 / (S**2 + per_sample(sigma, x) ** 2) * (x - MU[c])


def posterior(x, sigma):
    """p(c | x_sigma) of both classes, [B, 2]: x_sigma | c ~ N(mu_c, (S^2 + sigma^2) I)."""
    logp = -jnp.sum((x[:, None, :] - MU[None]) ** 2, axis=-1) / (2 * (S**2 + per_sample(sigma, x) ** 2))
    return jax.nn.softmax(logp, axis=1)


def uncond_denoiser(x, sigma):
    """E[x | x_sigma] = sum_c p(c | x_sigma) E[x | x_sigma, c]."""
    p = posterior(x, sigma)
    return sum(p[:, c : c + 1] * cond_denoiser(c)(x, sigma) for c in range(2))


@pytest.mark.parametrize("w", [0.0, 0.5, 2.5, 4.0])
def test_guided_denoiser_of_a_two_class_mixture_is_its_closed_form(w):
    """D_w(x, c) = D_c + (w - 1) p(c' | x) sigma^2 / (S^2 + sigma^2) (mu_c - mu_c'): guidance
    pushes away from the other class, in proportion to its posterior."""
    x = jax.random.normal(jax.random.key(0), (64, 2)) * 1.5
    for sigma in (0.1, 0.7, 3.0):
        for c in range(2):
            guided = guidance.guided_denoiser(cond_denoiser(c), uncond_denoiser, w)(x, sigma)
            other = posterior(x, sigma)[:, 1 - c : 2 - c]
            closed = cond_denoiser(c)(x, sigma) + (w - 1) * other * sigma**2 / (S**2 + sigma**2) * (MU[c] - MU[1 - c])
            np.testing.assert_allclose(guided, closed, rtol=1e-5, atol=1e-5)


def test_per_example_w_guides_each_example_at_its_own_scale():
    x = jax.random.normal(jax.random.key(1), (8, 2))
    w = jnp.linspace(0.0, 5.0, 8)
    both = guidance.guided_denoiser(cond_denoiser(0), uncond_denoiser, w)(x, 0.5)
    for i in range(8):
        one = guidance.guided_denoiser(cond_denoiser(0), uncond_denoiser, float(w[i]) + 1e-9)(x, 0.5)
        np.testing.assert_allclose(both[i], one[i], rtol=1e-5, atol=1e-6)


def test_at_w_1_guided_sampling_is_conditional_sampling_bitwise():
    sigmas = sampling.teacher_sigmas(8, EPS, TMAX, RHO)
    key = jax.random.key(2)
    guided = guidance.guided_denoiser(cond_denoiser(1), uncond_denoiser, 1.0)
    for solver in ("heun", "euler", "stochastic"):
        churn = sampling.Churn(s_churn=10.0)
        a = sampling.teacher_sample(guided, key, (128, 2), sigmas, solver, churn=churn)
        b = sampling.teacher_sample(cond_denoiser(1), key, (128, 2), sigmas, solver, churn=churn)
        np.testing.assert_array_equal(a, b)
    # and w = 1 given per example (the loss's form) is the same to rounding
    per_example = guidance.guided_denoiser(cond_denoiser(1), uncond_denoiser, jnp.ones(128))
    a = sampling.teacher_sample(per_example, key, (128, 2), sigmas)
    b = sampling.teacher_sample(cond_denoiser(1), key, (128, 2), sigmas)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("skip,substeps", [(1, 1), (3, 1), (2, 2)])
def test_guided_teacher_step_of_the_loss_is_the_samplers_guided_ode_step(skip, substeps):
    """LCM's teacher step from grid point n + k to n, as the loss takes it, equals the sampler's
    ODE integration (ode.integrate) over the same sigmas with the same guided denoiser."""
    n_scales, grid = 13, (EPS, TMAX, RHO)
    w = jnp.full((16,), 3.0)
    teacher = guidance.guided_denoiser(cond_denoiser(0), uncond_denoiser, w)
    x = jax.random.normal(jax.random.key(3), (16, 2)) * 2.0
    for i in (0, 4, 12 - skip):
        idx = jnp.full((16,), float(i))
        ours = losses.teacher_ode_step(ode.heun_step, teacher, x, idx, n_scales, grid, substeps, skip)
        fine = (n_scales - 1) * substeps + 1
        sig = schedules.karras_sigma(jnp.arange(i * substeps, (i + skip) * substeps + 1, skip), fine, *grid)
        ref = ode.integrate(teacher, x, sig, "heun")
        np.testing.assert_allclose(ours, ref, rtol=2e-5, atol=2e-5)
        # the end point is t_n = grid point i + k of the N-point grid
        np.testing.assert_allclose(sig[-1], schedules.karras_sigma(i + skip, n_scales, *grid), rtol=1e-6)


def test_skip_pairs_are_k_grid_points_apart_and_cover_the_grid():
    n, k = 25, 2
    t_hi, t_lo, i = losses.skip_grid_pair(jax.random.key(4), n, k, (EPS, TMAX, RHO), 4096)
    assert int(i.min()) == 0 and int(i.max()) == n - 1 - k
    np.testing.assert_allclose(t_hi, schedules.karras_sigma(i, n, EPS, TMAX, RHO))
    np.testing.assert_allclose(t_lo, schedules.karras_sigma(i + k, n, EPS, TMAX, RHO))


def test_label_dropout_and_uniform_guidance():
    labels = jnp.arange(20_000) % 10
    dropped = guidance.drop_labels(jax.random.key(5), labels, 0.1, 10)
    changed = np.asarray(dropped != labels)
    assert np.all(np.asarray(dropped)[changed] == 10)
    assert changed.mean() == pytest.approx(0.1, abs=0.01)
    w = guidance.uniform_guidance(jax.random.key(6), 20_000, 1.0, 4.0)
    assert 1.0 <= float(w.min()) and float(w.max()) <= 4.0 and float(w.mean()) == pytest.approx(2.5, abs=0.03)


def test_balanced_and_listed_labels():
    labels = sampling.sample_labels(0, 1000, 10)
    np.testing.assert_array_equal(np.bincount(labels), np.full(10, 100))
    batches = np.concatenate([sampling.sample_labels(b * 64, 64, 10) for b in range(5)])
    np.testing.assert_array_equal(batches, sampling.sample_labels(0, 320, 10))
    np.testing.assert_array_equal(sampling.sample_labels(3, 4, 10, (2, 7)), [7, 2, 7, 2])


def test_lcm_sigmas_are_evenly_spaced_grid_points():
    n = 25
    for steps, idx in ((1, [0]), (2, [0, 12]), (4, [0, 6, 12, 18])):
        expected = [float(schedules.karras_sigma(i, n, EPS, TMAX, RHO)) for i in idx]
        assert sampling.lcm_sigmas(steps, n, EPS, TMAX, RHO) == pytest.approx(expected)


# --- labels reach the network in every sampler ----------------------------------------------------


class LabelNet(nn.Module):
    """Returns its label embedding: the label (the null label -1 for None), broadcast."""

    guidance_embedding: bool = False

    @nn.compact
    def __call__(self, x, c_noise, labels=None, guidance=None, *, train=False):
        value = jnp.full(x.shape[:1], -1.0) if labels is None else labels.astype(jnp.float32)
        if self.guidance_embedding:
            value = value + 0 * guidance
        return jnp.broadcast_to(value.reshape((-1,) + (1,) * (x.ndim - 1)), x.shape)


def _config(name: str, **sample):
    c = toy_edm.get_config()
    c.objective.name = name
    c.sample.batch_size = 8
    c.network.guidance_embedding = name == "lcm"
    for k, v in sample.items():
        c.sample[k] = v
    return c


@pytest.mark.parametrize("name,guide", [
    ("edm", (1.0,)), ("edm", (1.0, 2.0)), ("cd", (1.0,)), ("ict", (1.0,)), ("lcm", (1.0, 3.0)),
    ("sct", (1.0,)), ("meanflow", (1.0,)),
])
def test_labels_reach_the_network_in_every_sampler(name, guide):
    """Samples drawn with labels a and b from the same key differ exactly in the rows where the
    labels differ: the network saw each row's label (LabelNet returns it)."""
    config = _config(name, guidance=guide)
    for sampler in samples.sampler_names(config):
        fn = samples.make_sampler(config, LabelNet(name == "lcm"), sampler, (2,))
        a = np.asarray(jnp.arange(8) % 3)
        b = a.copy()
        b[[1, 4]] += 1
        xa, xb = (np.asarray(fn({}, jax.random.key(7), jnp.asarray(labels))) for labels in (a, b))
        differs = np.any(xa != xb, axis=1)
        np.testing.assert_array_equal(differs, a != b, err_msg=sampler)


def test_saved_labels_are_the_labels_sampled(tmp_path):
    config = digits_edm_cond.get_config()
    config.sample.teacher_steps = 3
    config.sample.num_samples, config.sample.batch_size = 30, 20
    config.sample.labels = (3, 7, 9)
    config.sample.guidance = (2.0,)  # one guided sampler
    info = data_info(config.data)
    paths = samples.write_samples(config, str(tmp_path), LabelNet(), {}, info)
    assert os.path.exists(tmp_path / "samples" / "classes.png")
    key = jax.random.fold_in(jax.random.key(config.seed), 2)
    for name, path in paths.items():
        with np.load(path) as saved:
            labels, images = saved["labels"], saved["samples"]
        np.testing.assert_array_equal(labels, np.tile([3, 7, 9], 10))
        fn = samples.make_sampler(config, LabelNet(), name, info.shape)
        # batch b of 20 is drawn with fold_in(key, b); each row depends on its own label only
        padded = np.resize(labels, 40)
        drawn = [fn({}, jax.random.fold_in(key, b), jnp.asarray(padded[b * 20 : b * 20 + 20])) for b in range(2)]
        np.testing.assert_array_equal(images, samples.to_uint8(np.concatenate(drawn))[:30])


def test_class_accuracy_and_per_class_frechet():
    logits = np.eye(3)[[0, 1, 2, 0, 1, 1]]
    assert evaluate.class_accuracy(logits, np.array([0, 1, 2, 0, 1, 2])) == pytest.approx(5 / 6)
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(400, 2)) + np.repeat([[0.0, 0.0], [3.0, 0.0]], 200, axis=0)
    labels = np.repeat([0, 1], 200)
    ref = evaluate.Reference(np.zeros(2), np.eye(2), feats, labels)
    figs = evaluate.class_figures(feats, np.eye(2)[labels], labels, ref, "fd_digits")
    assert figs["class_accuracy"] == 1.0
    assert figs["fd_digits_per_class"]["0"] == pytest.approx(0.0, abs=1e-6)
    # samples drawn for the wrong classes: each class's samples are the other's images
    swapped = evaluate.class_figures(feats, np.eye(2)[labels], 1 - labels, ref, "fd_digits")
    assert swapped["class_accuracy"] == 0.0 and swapped["fd_digits_per_class"]["0"] > 8.0


def test_a_w_embedding_starts_at_zero_so_a_student_from_its_teacher_is_the_teacher():
    x, c_noise, labels = jnp.ones((4, 2)), jnp.linspace(-1, 1, 4), jnp.array([0, 1, 2, 3])
    student = MLP(hidden=16, depth=1, emb_dim=8, num_classes=4, guidance_embedding=True)
    teacher = MLP(hidden=16, depth=1, emb_dim=8, num_classes=4)
    params = student.init(jax.random.key(0), x, c_noise, labels, guidance=jnp.ones(4))["params"]
    shared = {k: v for k, v in params.items() if k != "map_guidance"}
    ref = teacher.apply({"params": shared}, x, c_noise, labels)
    for w in (1.0, 2.5, 7.0):
        np.testing.assert_array_equal(student.apply({"params": params}, x, c_noise, labels, guidance=w), ref)
    with pytest.raises(ValueError, match="pass the guidance scale"):
        student.apply({"params": params}, x, c_noise, labels)
    with pytest.raises(ValueError, match="takes no guidance scale"):
        teacher.apply({"params": shared}, x, c_noise, labels, guidance=2.0)


# --- bad input ----------------------------------------------------------------------------------------


def test_guidance_on_an_unconditional_run_is_refused(tmp_path):
    config = toy_edm.get_config()
    config.sample.guidance = (1.0, 2.0)
    with pytest.raises(ConfigError, match="guidance needs a conditional run"):
        train.train(config, str(tmp_path / "run"))
    cd = toy_cd.get_config()
    cd.data.conditional, cd.sample.guidance = True, (2.0,)
    cd.objective.teacher_workdir = str(tmp_path / "edm")
    with pytest.raises(ConfigError, match="objective 'cd' takes no guidance scale"):
        checks.validate(cd)
    assert not (tmp_path / "run").exists()


def test_guidance_on_a_teacher_without_label_dropout_is_refused():
    config = digits_edm_cond.get_config()
    config.objective.label_dropout = 0.0
    with pytest.raises(ConfigError, match="without label dropout"):
        checks.validate(config)


def test_sample_labels_out_of_range_are_refused(tmp_path):
    config = digits_edm_cond.get_config()
    config.sample.labels = (1, 10)
    with pytest.raises(ConfigError, match=r"sample.labels=\(1, 10\): labels must be class indices in \[0, 10\)"):
        train.train(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()
    uncond = toy_edm.get_config()
    uncond.sample.labels = (0,)
    with pytest.raises(ConfigError, match="on an unconditional run"):
        checks.validate(uncond)


def test_an_lcm_student_of_a_teacher_without_label_dropout_is_refused(tmp_path):
    teacher = digits_edm_cond.get_config()
    teacher.objective.label_dropout = 0.0
    teacher.sample.guidance = (1.0,)
    os.makedirs(tmp_path / "teacher")
    (tmp_path / "teacher" / "config.json").write_text(teacher.to_json())
    config = digits_lcm.get_config()
    config.objective.teacher_workdir = str(tmp_path / "teacher")
    with pytest.raises(ConfigError, match="trained without label dropout"):
        train.train(config, str(tmp_path / "lcm"))
    assert not (tmp_path / "lcm").exists()
    with pytest.raises(ConfigError, match="trained without label dropout"):
        teacher_job.load_teacher(config, data_info(config.data))
    assert json.loads((tmp_path / "teacher" / "config.json").read_text())["objective"]["label_dropout"] == 0.0


@pytest.mark.parametrize("key,value,message", [
    ("objective.guidance_max", 0.5, "guidance_min=1.0 must be <= guidance_max=0.5"),
    ("network.guidance_embedding", False, "the student must know which w it distils"),
    ("objective.skip", 25, "objective.skip=25 must be <= objective.num_scales - 1 = 24"),
    ("sample.lcm_steps", (1, 30), "sample.lcm_steps=(1, 30) must list step counts"),
    ("data.conditional", False, "needs labels"),
])
def test_lcm_values_that_cannot_work(key, value, message):
    config = digits_lcm.get_config()
    section, name = key.split(".")
    config[section][name] = value
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        checks.validate(config)


def test_lcm_loss_is_cd_of_the_guided_teacher_at_the_drawn_w():
    """The objective's loss equals cd_loss with the teacher guided at each example's w (drawn
    from fold_in(key, 3)), its ODE step from grid point i to i + k, the student given w."""
    config = toy_cd.get_config()
    config.data.conditional = True
    config.network.guidance_embedding = True
    o = config.objective
    o.name, o.guidance_min, o.guidance_max, o.skip, o.num_scales, o.distance = "lcm", 1.0, 5.0, 3, 10, "l2"
    student = MLP(hidden=16, depth=1, emb_dim=8, num_classes=3, guidance_embedding=True)
    teacher = MLP(hidden=16, depth=1, emb_dim=8, num_classes=3)
    x, labels = jax.random.normal(jax.random.key(8), (16, 2)), jnp.arange(16) % 3
    t_params = teacher.init(jax.random.key(9), x, jnp.zeros(16), labels)["params"]
    params = student.init(jax.random.key(10), x, jnp.zeros(16), labels, guidance=jnp.ones(16))["params"]
    params = jax.tree.map(lambda p: p + 0.01, params)  # a w-embedding that is not zero
    objective = make_objective(config, student, teacher, 2)
    key = jax.random.key(11)
    value, _ = objective.loss(params, params, objective.frozen_inputs(t_params), {"x": x, "label": labels}, key, 0)
    k_idx, k_noise, _ = jax.random.split(key, 3)
    grid = (config.model.sigma_min, config.model.sigma_max, config.model.rho)
    t_hi, t_lo, i = losses.skip_grid_pair(k_idx, 10, 3, grid, 16)
    w = guidance.uniform_guidance(jax.random.fold_in(key, 3), 16, 1.0, 5.0)
    guided = teacher_denoiser(teacher, t_params, labels, w, config.model.sigma_data)
    x_hi = x + t_hi[:, None] * jax.random.normal(k_noise, x.shape)
    x_lo = losses.teacher_ode_step(ode.heun_step, guided, x_hi, i, 10, grid, 1, 3)
    # the teacher's step: Heun from t_hi = grid point i to t_lo = grid point i + 3, per example
    np.testing.assert_allclose(x_lo, ode.heun_step(guided, x_hi, t_hi, t_lo), rtol=1e-5, atol=1e-5)
    cm = Parametrization("consistency", config.model.sigma_data, config.model.sigma_min)
    f = denoiser(network_fn(student, params, labels, guidance=w), cm)
    expected = jnp.mean(losses.l2_distance(f(x_hi, t_hi), f(x_lo, t_lo)))  # toy_cd: uniform weighting
    assert float(value) == pytest.approx(float(expected), rel=1e-5)
