"""Execution switches that must not change the model: bfloat16 compute and rematerialisation."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from consistency_jax.networks import apply_network
from consistency_jax.networks.mlp import MLP
from tests.test_unet import ARCHS, FAST_COMPILE, _inputs, _random_params, _small

SHAPE = (4, 8, 8, 1)


def _loss_and_grads(model, params, x, c_noise, labels):
    """Mean square of F and its float32-parameter gradients, through apply_network."""

    def loss(p):
        out = apply_network(model, p, x, c_noise, labels, train=False, rngs={})
        return jnp.mean(out**2), out

    fn = jax.value_and_grad(loss, has_aux=True)
    (value, out), grads = jax.jit(fn).lower(params).compile(compiler_options=FAST_COMPILE)(params)
    return value, out, grads


def _cosine(a, b) -> float:
    a, b = (jnp.concatenate([v.ravel() for v in jax.tree.leaves(t)]) for t in (a, b))
    return float(jnp.dot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_bfloat16_matches_float32_to_its_precision(arch):
    f32 = _small(arch)
    bf16 = dataclasses.replace(f32, dtype=jnp.bfloat16)
    params = _random_params(f32, SHAPE, False)
    inputs = _inputs(SHAPE, False)
    loss32, out32, grads32 = _loss_and_grads(f32, params, *inputs)
    loss16, out16, grads16 = _loss_and_grads(bf16, params, *inputs)
    assert out16.dtype == jnp.float32  # the parametrization and loss stay float32
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads16))
    rel = float(jnp.linalg.norm(out16 - out32) / jnp.linalg.norm(out32))
    # bfloat16 keeps 8 significant bits (2^-8 = 0.4%); a few dozen layers accumulate ~1%
    assert 1e-4 < rel < 3e-2, rel  # > 1e-4: it really computed in bfloat16
    assert abs(float(loss16 / loss32) - 1) < 3e-2
    assert _cosine(grads16, grads32) > 0.999


def test_bfloat16_mlp_keeps_the_noise_embedding_in_float32():
    """c_noise = ln(sigma)/4 reaches the embedding in float32: in bfloat16, sigmas 1% apart
    would share an embedding."""
    model = MLP(hidden=32, depth=2, emb_dim=32)
    x = jnp.ones((2, 2))
    c_noise = jnp.array([0.25 * np.log(10.0), 0.25 * np.log(10.1)], jnp.float32)
    params = model.init(jax.random.key(0), x, c_noise)["params"]
    emb_layer = lambda m: m.apply(
        {"params": jax.tree.map(lambda p: p.astype(m.dtype), params)}, x.astype(m.dtype), c_noise,
        capture_intermediates=lambda mdl, _: mdl.name == "PositionalEmbedding_0",
    )[1]["intermediates"]["PositionalEmbedding_0"]["__call__"][0]
    emb = emb_layer(dataclasses.replace(model, dtype=jnp.bfloat16))
    assert emb.dtype == jnp.float32
    np.testing.assert_allclose(emb, emb_layer(model), rtol=1e-6)
    assert float(jnp.max(jnp.abs(emb[0] - emb[1]))) > 1e-3


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_remat_changes_memory_not_results(arch):
    plain = _small(arch)
    remat = dataclasses.replace(plain, remat=True)
    params = _random_params(plain, SHAPE, False)
    shapes = jax.eval_shape(remat.init, jax.random.key(0), *_inputs(SHAPE, False))["params"]
    assert jax.tree.structure(shapes) == jax.tree.structure(params)  # same checkpoints
    loss_a, out_a, grads_a = _loss_and_grads(plain, params, *_inputs(SHAPE, False))
    loss_b, out_b, grads_b = _loss_and_grads(remat, params, *_inputs(SHAPE, False))
    np.testing.assert_allclose(out_b, out_a, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(grads_a), jax.tree.leaves(grads_b)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_bfloat16_training_follows_the_float32_loss_curve():
    """The same 120 Adam steps of EDM denoising on the digits from the same init and noise, in
    float32 and in bfloat16: the loss curves agree (windowed means within 3%)."""
    from configs.digits_edm import get_config
    from consistency_jax.data import build_dataset
    from consistency_jax.networks import build_network
    from consistency_jax.training.objectives import make_objective
    from consistency_jax.training.state import create_train_state, init_params, make_optimizer
    from consistency_jax.training.step import make_train_step

    def curve(dtype: str) -> np.ndarray:
        c = get_config()
        c.network.compute_dtype = dtype
        c.network.unet.model_channels = 8
        c.network.unet.channel_mult = (1,)  # resampling and attention in bfloat16: tests above
        c.network.unet.attn_resolutions = ()
        c.data.batch_size = 32
        model = build_network(c.network)
        objective = make_objective(c, model, None, 64)
        optimizer = make_optimizer(c.optim)
        key = jax.random.key(0)
        params = init_params(model, key, jnp.zeros((1, 8, 8, 1)), 0)
        state = create_train_state(params, optimizer, objective)
        step = make_train_step(objective, optimizer, c.train.ema_rate, None)
        it, _ = build_dataset(c.data, seed=0)
        losses = []
        for k in range(120):
            state, metrics = step(state, next(it), jax.random.fold_in(key, k))
            losses.append(metrics["loss"])
        return np.asarray(jax.device_get(losses))

    f32, bf16 = curve("float32"), curve("bfloat16")
    assert not np.array_equal(f32, bf16)  # really two different computations
    windows = lambda c: c.reshape(4, 30).mean(axis=1)
    assert windows(f32)[-1] < 0.8 * windows(f32)[0]  # it learned something
    np.testing.assert_allclose(windows(bf16), windows(f32), rtol=3e-2)


def test_optimizer_state_and_parameters_stay_float32_in_bfloat16():
    model = MLP(hidden=16, depth=1, emb_dim=16, dtype=jnp.bfloat16)
    x, c_noise = jnp.ones((2, 3)), jnp.zeros((2,))
    params = model.init(jax.random.key(0), x, c_noise)["params"]
    grads = jax.grad(
        lambda p: jnp.sum(apply_network(model, p, x, c_noise, None, train=False, rngs={}))
    )(params)
    opt_state = optax.adam(1e-3).init(params)
    assert {p.dtype for p in jax.tree.leaves((params, grads, opt_state)) if p.ndim} == {
        jnp.dtype(jnp.float32)
    }


@pytest.mark.slow
def test_bfloat16_train_step_matches_float32_on_the_same_batch():
    """One EDM train step (loss, gradients, Adam update, EMA) in bfloat16 and in float32 from the
    same parameters, batch and key: loss and gradient norm agree to bfloat16's precision, and the
    state stays float32. The device check runs this on the accelerator."""
    from configs.digits_edm import get_config
    from consistency_jax.networks import build_network
    from consistency_jax.training.objectives import make_objective
    from consistency_jax.training.state import create_train_state, init_params, make_optimizer
    from consistency_jax.training.step import make_train_step

    def step(dtype: str):
        c = get_config()
        c.network.compute_dtype = dtype
        c.network.unet.model_channels = 8
        c.network.unet.channel_mult = (1, 2)
        c.network.unet.attn_resolutions = (4,)
        model = build_network(c.network)
        objective = make_objective(c, model, None, 64)
        optimizer = make_optimizer(c.optim)
        params = init_params(model, jax.random.key(0), jnp.zeros((1, 8, 8, 1)), 0)
        state = create_train_state(params, optimizer, objective)
        x = jax.random.uniform(jax.random.key(1), (16, 8, 8, 1), minval=-1.0, maxval=1.0)
        batch = {"x": x, "label": jnp.arange(16, dtype=jnp.int32) % 10}
        train_step = jax.jit(make_train_step(objective, optimizer, c.train.ema_rate, None))
        return train_step(state, batch, jax.random.key(2))

    state32, m32 = step("float32")
    state16, m16 = step("bfloat16")
    loss32, loss16 = float(m32["loss"]), float(m16["loss"])
    assert loss16 != loss32  # really two different computations
    assert abs(loss16 / loss32 - 1) < 3e-2, (loss16, loss32)
    assert abs(float(m16["grad_norm"] / m32["grad_norm"]) - 1) < 3e-2
    assert float(m16["finite"]) == 1.0
    leaves = jax.tree.leaves(state16.params)
    assert all(p.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(p))) for p in leaves)
