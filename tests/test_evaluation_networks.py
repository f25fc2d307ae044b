"""Parity of the Flax FID Inception, LPIPS and resize with pytorch-fid, lpips and torch, on random
weights saved by torch and loaded by our torch-free reader."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from consistency_jax.networks.pretrained import inception, lpips, weights
from consistency_jax.networks.pretrained.resize import resize_bilinear

NEEDS_TORCH = "needs torch (requirements-test.txt)"
TOLERANCE = 1e-4  # max |ours - torch| / max |torch|; measured ~1e-6


def _relative_error(ours, reference) -> float:
    return float(np.abs(np.asarray(ours) - reference).max() / np.abs(reference).max())


@pytest.mark.parametrize(
    "in_size, out_size",
    [
        ((32, 32), (299, 299)),
        ((8, 8), (299, 299)),
        ((512, 384), (299, 299)),
        ((16, 16), (8, 8)),
        ((32, 32), (224, 224)),
    ],
)
def test_resize_matches_torch_bilinear(in_size, out_size):
    torch = pytest.importorskip("torch", reason=NEEDS_TORCH)
    x = np.random.default_rng(0).uniform(0, 1, (2, *in_size, 3)).astype(np.float32)
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(x).permute(0, 3, 1, 2), size=out_size, mode="bilinear", align_corners=False
    )
    ours = resize_bilinear(jnp.asarray(x), out_size)
    np.testing.assert_allclose(ours, expected.permute(0, 2, 3, 1).numpy(), atol=1e-6)


def test_resize_equals_jax_image_resize_when_upsampling():
    x = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 3)), jnp.float32)
    expected = jax.image.resize(x, (2, 224, 224, 3), "bilinear")
    np.testing.assert_allclose(resize_bilinear(x, (224, 224)), expected, atol=1e-6)


def _pytorch_fid_inception(state_dict=None):
    """pytorch-fid's InceptionV3([pool3]) and the fid_inception_v3() net inside it (for its fc),
    loaded with `state_dict` instead of the downloaded weights, or left at random init."""
    pytest.importorskip("torch", reason=NEEDS_TORCH)
    pytest.importorskip("torchvision", reason="needs torchvision (requirements-test.txt)")
    pfi = pytest.importorskip(
        "pytorch_fid.inception", reason="needs pytorch-fid (requirements-test.txt)"
    )
    built = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pfi, "load_state_dict_from_url", lambda *args, **kwargs: state_dict)
        if state_dict is None:
            patch.setattr(
                pfi.torchvision.models.inception.Inception3,
                "load_state_dict",
                lambda self, sd: None,
            )
        make = pfi.fid_inception_v3
        patch.setattr(pfi, "fid_inception_v3", lambda: built.append(make()) or built[-1])
        model = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
    return model.eval(), built[0]


def _pytorch_fid_outputs(model, net, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import torch

    with torch.no_grad():  # pytorch-fid's pipeline: [0, 1] NCHW floats, resized inside the model
        pool3 = model(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)[0][:, :, 0, 0]
        return pool3.numpy(), net.fc(pool3).numpy()


def _cached_weights(weights_file: weights.WeightsFile):
    path = weights.cache_dir() / weights_file.filename
    if not path.is_file():
        pytest.skip(f"real-weight check: {weights_file.filename} is not in {path.parent}")
    return path


@pytest.fixture(scope="module")
def random_fid_inception(tmp_path_factory):
    """pytorch-fid's Inception with random weights and batch-norm statistics, and its state_dict
    saved by torch."""
    torch = pytest.importorskip("torch", reason=NEEDS_TORCH)
    torch.manual_seed(0)
    model, net = _pytorch_fid_inception()
    batch_norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in batch_norms:
        bn.momentum = 1.0  # running statistics := one batch's, so activations stay O(1)
    model.train()
    with torch.no_grad():
        model(torch.rand(2, 3, 32, 32))
        for bn in batch_norms:  # then make every statistic and affine parameter non-trivial
            bn.running_var.mul_(torch.empty_like(bn.running_var).uniform_(0.5, 2))
            bn.running_mean.add_(0.1 * torch.randn_like(bn.running_mean))
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    model.eval()
    path = tmp_path_factory.mktemp("inception") / "pt_inception_random.pth"
    torch.save(net.state_dict(), path)
    return model, net, path


def test_fid_inception_matches_pytorch_fid(random_fid_inception):
    model, net, path = random_fid_inception
    images = np.random.default_rng(2).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    pool3, logits = _pytorch_fid_outputs(model, net, images)
    features, our_logits = inception.load_fid_inception(path)(jnp.asarray(images))
    assert features.shape == (2, 2048) and our_logits.shape == (2, 1008)
    assert features.dtype == jnp.float32
    assert _relative_error(features, pool3) < TOLERANCE
    assert _relative_error(our_logits, logits) < TOLERANCE


def test_fid_inception_with_the_real_weights_matches_pytorch_fid():
    path = _cached_weights(inception.FID_INCEPTION_WEIGHTS)
    torch = pytest.importorskip("torch", reason=NEEDS_TORCH)
    model, net = _pytorch_fid_inception(torch.load(path, map_location="cpu"))
    images = np.random.default_rng(3).integers(0, 256, (2, 48, 40, 3), dtype=np.uint8)
    pool3, logits = _pytorch_fid_outputs(model, net, images)
    features, our_logits = inception.load_fid_inception()(jnp.asarray(images))
    assert _relative_error(features, pool3) < TOLERANCE
    assert _relative_error(our_logits, logits) < TOLERANCE


def _lpips_package_model(**kwargs):
    pytest.importorskip("torch", reason=NEEDS_TORCH)
    lp = pytest.importorskip("lpips", reason="needs lpips (requirements-test.txt)")
    with warnings.catch_warnings():  # lpips 0.1.4 still passes torchvision's old `pretrained`
        warnings.simplefilter("ignore", UserWarning)
        return lp.LPIPS(net="vgg", pnet_rand=True, verbose=False, **kwargs).eval()


def _lpips_trunk(model):
    """The lpips package's VGG slices as one Sequential, keyed as torchvision's vgg16().features."""
    import torch

    return torch.nn.Sequential(
        *[layer for s in range(1, 6) for layer in getattr(model.net, f"slice{s}")]
    )


def _lpips_package_distance(model, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """lpips on NHWC [-1, 1] images, resized to 224 by torch as ours resizes them."""
    import torch

    tx, ty = (torch.from_numpy(a).permute(0, 3, 1, 2) for a in (x, y))
    if x.shape[1:3] != (224, 224):
        tx, ty = (
            torch.nn.functional.interpolate(
                a, size=(224, 224), mode="bilinear", align_corners=False
            )
            for a in (tx, ty)
        )
    with torch.no_grad():
        return model(tx, ty).flatten().numpy()


def _image_pair(seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (2, size, size, 3)).astype(np.float32)
    return x, np.clip(x + 0.3 * rng.standard_normal(x.shape), -1, 1).astype(np.float32)


@pytest.fixture(scope="module")
def random_lpips(tmp_path_factory):
    """lpips.LPIPS('vgg') with a random trunk and random positive heads, saved in torchvision's
    vgg16 key layout and in the (legacy-format) layout of lpips' v0.1 vgg.pth."""
    torch = pytest.importorskip("torch", reason=NEEDS_TORCH)
    torch.manual_seed(0)
    model = _lpips_package_model(pretrained=False)
    with torch.no_grad():
        for lin in model.lins:
            lin.model[1].weight.uniform_(0, 1)
    trunk = _lpips_trunk(model)
    folder = tmp_path_factory.mktemp("lpips")
    torch.save({f"features.{k}": v for k, v in trunk.state_dict().items()}, folder / "vgg16.pth")
    heads = {k: v for k, v in model.state_dict().items() if k.startswith("lin")}
    torch.save(heads, folder / "vgg.pth", _use_new_zipfile_serialization=False)
    return model, lpips.load_lpips(folder / "vgg16.pth", folder / "vgg.pth"), folder


@pytest.mark.parametrize("size", [224, 32])
def test_lpips_matches_the_lpips_package(random_lpips, size):
    model, ours, _ = random_lpips
    x, y = _image_pair(size, size)
    assert (
        _relative_error(ours(jnp.asarray(x), jnp.asarray(y)), _lpips_package_distance(model, x, y))
        < TOLERANCE
    )


def test_lpips_with_the_real_weights_matches_the_lpips_package():
    vgg_path = _cached_weights(lpips.VGG16_WEIGHTS)
    model = _lpips_package_model()  # its own v0.1 heads
    import torch

    trunk = torch.load(vgg_path, map_location="cpu")
    _lpips_trunk(model).load_state_dict(
        {k.removeprefix("features."): v for k, v in trunk.items() if k.startswith("features.")}
    )
    x, y = _image_pair(4, 32)
    assert (
        _relative_error(
            lpips.load_lpips()(jnp.asarray(x), jnp.asarray(y)), _lpips_package_distance(model, x, y)
        )
        < TOLERANCE
    )


def test_lpips_is_zero_on_equal_images(random_lpips):
    _, ours, _ = random_lpips
    x = jnp.asarray(np.random.default_rng(3).uniform(-1, 1, (2, 32, 32, 3)), jnp.float32)
    np.testing.assert_allclose(ours(x, x), 0.0, atol=1e-6)


def test_unit_normalize_has_a_finite_gradient_at_zero_features():
    features = jnp.zeros((1, 2, 2, 4)).at[0, 0, 0].set(jnp.array([1.0, -2.0, 0.5, 0.0]))
    grad = jax.grad(lambda f: jnp.sum(lpips.unit_normalize(f) * jnp.arange(4.0)))(features)
    assert bool(jnp.isfinite(grad).all())
    norm = jnp.linalg.norm(features, axis=-1, keepdims=True)
    np.testing.assert_allclose(lpips.unit_normalize(features), features / (norm + 1e-10))


@pytest.mark.slow  # a backward pass through VGG16 at 224x224: ~10 s on two cores
def test_lpips_is_differentiable(random_lpips):
    _, ours, _ = random_lpips
    x = jnp.asarray(np.random.default_rng(3).uniform(-1, 1, (2, 32, 32, 3)), jnp.float32)
    grad = jax.grad(lambda a: ours(a, jnp.zeros_like(a)).sum())(x)
    assert bool(jnp.isfinite(grad).all()) and float(jnp.abs(grad).max()) > 0


def test_lpips_takes_the_v01_heads_of_an_installed_lpips_package(random_lpips):
    heads = lpips._installed_lpips_heads()
    if heads is None:
        pytest.skip("the lpips package (requirements-test.txt) is not installed")
    import torch

    _, _, folder = random_lpips
    reference = torch.load(heads, map_location="cpu")
    variables = lpips.lpips_variables(folder / "vgg16.pth", lin_path=None)
    for k in range(5):
        np.testing.assert_array_equal(
            variables["params"][f"lin{k}"]["kernel"][0, 0, :, 0],
            reference[f"lin{k}.model.1.weight"][0, :, 0, 0].numpy(),
        )
