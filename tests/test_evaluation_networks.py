"""Parity of the Flax FID Inception, LPIPS and resize with pytorch-fid, lpips and torch, on random
weights saved by torch and loaded by our torch-free reader."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from consistency_jax.evaluation import inception, lpips
from consistency_jax.evaluation.resize import resize_bilinear

TOLERANCE = 1e-4  # max |ours - torch| / max |torch|; measured ~1e-6


def _relative_error(ours, reference) -> float:
    return float(np.abs(np.asarray(ours) - reference).max() / np.abs(reference).max())


@pytest.mark.parametrize(
    "in_size, out_size", [((32, 32), (299, 299)), ((8, 8), (299, 299)), ((512, 384), (299, 299)), ((16, 16), (8, 8)), ((32, 32), (224, 224))]
)
def test_resize_matches_torch_bilinear(in_size, out_size):
    torch = pytest.importorskip("torch", reason="needs torch (requirements-test.txt)")
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


@pytest.fixture(scope="module")
def random_fid_inception(tmp_path_factory):
    """pytorch-fid's InceptionV3([pool3]) with random weights and batch-norm statistics, the fc of
    its fid_inception_v3() net, and that net's state_dict saved by torch."""
    torch = pytest.importorskip("torch", reason="needs torch (requirements-test.txt)")
    pytest.importorskip("torchvision", reason="needs torchvision (requirements-test.txt)")
    pfi = pytest.importorskip("pytorch_fid.inception", reason="needs pytorch-fid (requirements-test.txt)")
    built = []
    with pytest.MonkeyPatch.context() as patch:  # random init instead of downloading the weights
        patch.setattr(pfi, "load_state_dict_from_url", lambda *args, **kwargs: None)
        patch.setattr(pfi.torchvision.models.inception.Inception3, "load_state_dict", lambda self, state: None)
        make = pfi.fid_inception_v3
        patch.setattr(pfi, "fid_inception_v3", lambda: built.append(make()) or built[-1])
        model = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
    net = built[0]
    torch.manual_seed(0)
    calibration = torch.rand(2, 3, 32, 32)
    batch_norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in batch_norms:
        bn.momentum = 1.0  # running statistics := one batch's, so activations stay O(1)
    model.train()
    with torch.no_grad():
        model(calibration)
        for bn in batch_norms:  # then make every statistic and affine parameter non-trivial
            bn.running_var.mul_(torch.empty_like(bn.running_var).uniform_(0.5, 2))
            bn.running_mean.add_(0.1 * torch.randn_like(bn.running_mean))
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    model.eval()
    path = tmp_path_factory.mktemp("inception") / "pt_inception_random.pth"
    torch.save(net.state_dict(), path)
    return model, net.fc, path


def test_fid_inception_matches_pytorch_fid(random_fid_inception):
    import torch

    model, fc, path = random_fid_inception
    images = np.random.default_rng(2).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    with torch.no_grad():  # pytorch-fid's pipeline: [0, 1] NCHW floats, resized inside the model
        pool3 = model(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)[0][:, :, 0, 0]
        logits = fc(pool3)
    features, our_logits = inception.load_fid_inception(path)(jnp.asarray(images))
    assert features.shape == (2, 2048) and our_logits.shape == (2, 1008)
    assert features.dtype == jnp.float32
    assert _relative_error(features, pool3.numpy()) < TOLERANCE
    assert _relative_error(our_logits, logits.numpy()) < TOLERANCE


@pytest.fixture(scope="module")
def random_lpips(tmp_path_factory):
    """lpips.LPIPS('vgg') with a random trunk and random positive heads, saved in torchvision's
    vgg16 key layout and in the (legacy-format) layout of lpips' v0.1 vgg.pth."""
    torch = pytest.importorskip("torch", reason="needs torch (requirements-test.txt)")
    lp = pytest.importorskip("lpips", reason="needs lpips (requirements-test.txt)")
    torch.manual_seed(0)
    with warnings.catch_warnings():  # lpips 0.1.4 still passes torchvision's old `pretrained`
        warnings.simplefilter("ignore", UserWarning)
        model = lp.LPIPS(net="vgg", pretrained=False, pnet_rand=True, verbose=False).eval()
    with torch.no_grad():
        for lin in model.lins:
            lin.model[1].weight.uniform_(0, 1)
    trunk = torch.nn.Sequential(*[layer for s in range(1, 6) for layer in getattr(model.net, f"slice{s}")])
    folder = tmp_path_factory.mktemp("lpips")
    torch.save({f"features.{k}": v for k, v in trunk.state_dict().items()}, folder / "vgg16.pth")
    heads = {k: v for k, v in model.state_dict().items() if k.startswith("lin")}
    torch.save(heads, folder / "vgg.pth", _use_new_zipfile_serialization=False)
    return model, lpips.load_lpips(folder / "vgg16.pth", folder / "vgg.pth"), folder


@pytest.mark.parametrize("size", [224, 32])
def test_lpips_matches_the_lpips_package(random_lpips, size):
    import torch

    model, ours, _ = random_lpips
    rng = np.random.default_rng(size)
    x = rng.uniform(-1, 1, (2, size, size, 3)).astype(np.float32)
    y = np.clip(x + 0.3 * rng.standard_normal(x.shape), -1, 1).astype(np.float32)
    tx, ty = (torch.from_numpy(a).permute(0, 3, 1, 2) for a in (x, y))
    if size != 224:
        tx, ty = (torch.nn.functional.interpolate(a, size=(224, 224), mode="bilinear", align_corners=False) for a in (tx, ty))
    with torch.no_grad():
        expected = model(tx, ty).flatten().numpy()
    assert _relative_error(ours(jnp.asarray(x), jnp.asarray(y)), expected) < TOLERANCE


def test_lpips_is_zero_on_equal_images_and_differentiable(random_lpips):
    _, ours, _ = random_lpips
    x = jnp.asarray(np.random.default_rng(3).uniform(-1, 1, (2, 32, 32, 3)), jnp.float32)
    np.testing.assert_allclose(ours(x, x), 0.0, atol=1e-6)
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
            variables["params"][f"lin{k}"]["kernel"][0, 0, :, 0], reference[f"lin{k}.model.1.weight"][0, :, 0, 0].numpy()
        )
