"""sCT and sCD through the real train loop on the 2-D mixture and the digits: a teacher, then both
students started from it, sampled in one and two steps as every consistency run is; and the
loss-weighting head the adaptive weighting trains."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import run_utils

from consistency_jax.config import schema
from consistency_jax.core.parametrization import Parametrization, denoiser, trigflow_network
from consistency_jax.data import data_info
from consistency_jax.evaluation import samples
from consistency_jax.jobs import train
from consistency_jax.jobs.teacher import load_teacher
from consistency_jax.networks import build_network, logvar_fn, network_fn

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def toy_runs(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("scm"))
    train.train(run_utils.config("toy_edm"), os.path.join(workdir, "edm"))
    states = {}
    for name in ("sct", "scd"):
        config = run_utils.config(f"toy_{name}", {
            "objective.teacher_workdir": os.path.join(workdir, "edm"),
            "objective.tangent_warmup_steps": 4,
        })
        states[name] = (config, train.train(config, os.path.join(workdir, name)))
    return workdir, states


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sct", "scd"])
def test_sct_and_scd_train_and_sample_in_one_and_two_steps(toy_runs, name):
    workdir, states = toy_runs
    config, state = states[name]
    assert int(state.step) == config.train.num_steps
    assert samples.sampler_names(config) == ["onestep", "2step"]
    assert [samples.nfe(config, s) for s in ("onestep", "2step")] == [1, 2]
    for sampler in ("onestep", "2step"):
        x = np.load(os.path.join(workdir, name, "samples", f"{sampler}.npz"))["samples"]
        assert x.dtype == np.float32 and x.shape == (64, 2) and np.all(np.isfinite(x))
    with open(os.path.join(workdir, name, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    assert all(np.isfinite(r["loss"]) for r in records if "loss" in r)
    # the tangent's warm-up r = min(1, step / 4) reaches 1
    assert [r["tangent_warmup"] for r in records if "tangent_warmup" in r][-1] == 1.0
    # the loss-weighting head is in the state and has moved from its zero start
    head = state.params["logvar"]
    assert float(jnp.max(jnp.abs(head["Dense_0"]["kernel"]))) > 0


@pytest.mark.slow
def test_a_student_started_from_the_teacher_is_the_teacher_in_trigflow_time(toy_runs):
    """At step 0 an sCD student (scm_network='edm') is its EDM teacher converted: its one-step
    consistency function at t is the teacher's denoiser at sigma_d tan t, on x_t = cos t x_sigma."""
    workdir, states = toy_runs
    config, _ = states["scd"]
    teacher = load_teacher(config, data_info(config.data))
    edm = denoiser(network_fn(teacher.model, teacher.params), Parametrization("edm", 0.5, 0.0))
    student = build_network(config.network)
    head = student.init(jax.random.key(1), jnp.zeros((1, 2)), jnp.zeros(1))["params"]["logvar"]
    params = dict(teacher.params) | {"logvar": head}  # the head plays no part in F
    trig = denoiser(trigflow_network(network_fn(student, params), "edm", 0.5),
                    Parametrization("trigflow", 0.5, 0.0))
    x = jax.random.normal(jax.random.key(0), (16, 2))
    for t in (0.2, 1.1, 1.5):
        sigma = 0.5 * np.tan(t)
        np.testing.assert_allclose(trig(np.cos(t) * x, t), edm(x, sigma), atol=1e-4 * max(1, sigma))


def test_logvar_head_is_optional_and_named():
    cfg = schema.get_config().network
    x = jnp.zeros((3, 2))
    plain = build_network(cfg)
    params = plain.init(jax.random.key(0), x, jnp.zeros(3))["params"]
    assert "logvar" not in params
    with pytest.raises(ValueError, match="network.logvar_head=True"):
        logvar_fn(plain, params)
    cfg.logvar_head = True
    model = build_network(cfg)
    params = model.init(jax.random.key(0), x, jnp.zeros(3))["params"]
    np.testing.assert_array_equal(logvar_fn(model, params)(jnp.array([0.1, 1.0, 1.5])), 0.0)
    # the network's output does not depend on the head
    np.testing.assert_array_equal(model.apply({"params": params}, x, jnp.ones(3)),
                                  plain.apply({"params": {k: v for k, v in params.items()
                                                          if k != "logvar"}}, x, jnp.ones(3)))


def test_the_jvp_and_the_primal_pass_share_the_dropout_mask():
    """At F_theta = F_theta- the loss is ||g / (||g|| + c)||^2 / D exactly when both passes drop the
    same units; with dropout 0.5 another mask would add F_theta - F_theta- != 0."""
    from consistency_jax.core import losses
    from consistency_jax.training.objectives import make_objective

    config = schema.get_config()
    config.objective.name, config.objective.prior_weighting = "sct", False
    config.network.dropout = 0.5
    model = build_network(config.network)
    x = jax.random.normal(jax.random.key(0), (32, 2)) * 0.5
    params = model.init(jax.random.key(1), x, jnp.zeros(32))["params"]
    objective = make_objective(config, model, dim=2)
    key = jax.random.key(2)
    value, _ = objective.loss(params, None, objective.frozen_inputs(), {"x": x}, key, 10**6)
    k_t, k_noise, k_drop = jax.random.split(key, 3)
    t = losses.scm_time(k_t, 32, config.objective.p_mean, config.objective.p_std, 0.5)
    z = 0.5 * jax.random.normal(k_noise, x.shape)
    net = trigflow_network(network_fn(model, params, train=True, dropout_key=k_drop), "edm", 0.5)
    x_t, v = losses.trigflow_noisy(x, z, t), losses.sct_velocity(x, z, t)
    g = losses.scm_tangent(*losses.trigflow_jvp(net, x_t, t, v, 0.5), x_t, t, v, 1.0, 0.5)
    norm = jnp.linalg.norm(g, axis=1)
    np.testing.assert_allclose(value, jnp.mean((norm / (norm + 0.1)) ** 2) / 2, rtol=1e-5)


@pytest.mark.parametrize("preset", ["toy", "digits"])
def test_pipeline_stages_sct_and_scd_use_the_pipelines_teacher(tmp_path, preset):
    """sCD distils the teacher (first process, after it); sCT starts from it (second process,
    once it is trained); MeanFlow learns from the data alone (second process, from the start)."""
    from configs.presets import PRESETS
    from consistency_jax.jobs import end_to_end
    from consistency_jax.training.objectives import needs_teacher

    configs = end_to_end.stage_configs(PRESETS[preset], str(tmp_path), ("edm", "scd", "sct", "meanflow"))
    for stage in ("scd", "sct"):
        assert configs[stage].objective.teacher_workdir == os.path.join(str(tmp_path), "edm")
        assert end_to_end.uses_teacher(configs[stage])
    assert needs_teacher("scd") and not needs_teacher("sct")
    assert not end_to_end.uses_teacher(configs["meanflow"])


@pytest.mark.parametrize("name", ["sct", "meanflow"])
def test_bfloat16_networks_keep_the_jvp_losses_in_float32(name):
    """The network computes in bfloat16; t, the tangents' time parts and the loss stay float32."""
    from consistency_jax.training.objectives import make_objective

    config = schema.get_config()
    config.objective.name, config.network.compute_dtype = name, "bfloat16"
    config.network.logvar_head = name == "sct"
    model = build_network(config.network)
    x = jax.random.normal(jax.random.key(0), (32, 2)) * 0.5
    params = model.init(jax.random.key(1), x, jnp.zeros(32))["params"]
    objective = make_objective(config, model, dim=2)
    loss = lambda p: objective.loss(p, None, objective.frozen_inputs(), {"x": x}, jax.random.key(2), 5)[0]
    value, grads = jax.value_and_grad(loss)(params)
    assert value.dtype == jnp.float32 and np.isfinite(float(value))
    assert all(g.dtype == jnp.float32 and np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
