"""The torch-free state_dict reader and the weight cache: formats, verification, no network."""

import dataclasses
import hashlib

import numpy as np
import pytest

from consistency_jax.networks.pretrained import inception, lpips, weights
from consistency_jax.networks.pretrained.torch_checkpoint import flax_variables, load_torch_state_dict

UNREACHABLE = "http://127.0.0.1:9/weights.pth"  # the discard port: connection refused at once


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_state_dict_reader_matches_torch_load(tmp_path, legacy):
    torch = pytest.importorskip(
        "torch", reason="needs torch to write the checkpoint (requirements-test.txt)"
    )
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(6, 5, generator=generator)
    state = {
        "conv.weight": torch.randn(4, 3, 3, 2, generator=generator).transpose(
            2, 3
        ),  # non-contiguous
        "bn.running_var": torch.rand(7, generator=generator).double(),
        "bn.num_batches_tracked": torch.tensor(12),
        "view": base[2:4],  # a tensor sharing storage at an offset
        "base": base,
        "half": torch.randn(3, generator=generator).half(),
        "mask": torch.tensor([True, False]),
    }
    path = tmp_path / "state.pth"
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    loaded = load_torch_state_dict(path)
    assert list(loaded) == list(state)
    for key, tensor in state.items():
        assert loaded[key].shape == tuple(tensor.shape), key
        np.testing.assert_array_equal(loaded[key], tensor.numpy(), err_msg=key)


def test_state_dict_reader_reads_the_python2_legacy_lpips_heads():
    heads = lpips._installed_lpips_heads()
    if heads is None:
        pytest.skip("the lpips package (requirements-test.txt) is not installed")
    loaded = load_torch_state_dict(heads)
    assert {k: v.shape for k, v in loaded.items()} == {
        f"lin{k}.model.1.weight": (1, c, 1, 1) for k, c in enumerate([64, 128, 256, 512, 512])
    }
    torch = pytest.importorskip("torch")
    for key, tensor in torch.load(heads, map_location="cpu").items():
        np.testing.assert_array_equal(loaded[key], tensor.numpy())


def test_state_dict_reader_refuses_other_pickled_objects(tmp_path):
    import pickle

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        for obj in (0x1950A86A20F9469CFC6C, 1001, {}):
            pickle.dump(obj, f)
        pickle.dump(print, f)
    with pytest.raises(pickle.UnpicklingError, match="builtins.print is not allowed"):
        load_torch_state_dict(path)


def test_flax_variables_layouts():
    rng = np.random.default_rng(0)
    state = {
        "a.conv.weight": rng.standard_normal((8, 3, 5, 3)),
        "a.bn.weight": rng.standard_normal(8),
        "a.bn.bias": rng.standard_normal(8),
        "a.bn.running_mean": rng.standard_normal(8),
        "a.bn.running_var": rng.standard_normal(8),
        "a.bn.num_batches_tracked": np.array(3),
        "fc.weight": rng.standard_normal((10, 8)),
    }
    variables = flax_variables(state)
    np.testing.assert_array_equal(
        variables["params"]["a"]["conv"]["kernel"], state["a.conv.weight"].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(variables["params"]["a"]["bn"]["scale"], state["a.bn.weight"])
    np.testing.assert_array_equal(
        variables["batch_stats"]["a"]["bn"]["var"], state["a.bn.running_var"]
    )
    np.testing.assert_array_equal(variables["params"]["fc"]["kernel"], state["fc.weight"].T)


def test_missing_weights_without_network_raise_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path / "cache"))
    offline = dataclasses.replace(inception.FID_INCEPTION_WEIGHTS, url=UNREACHABLE)
    monkeypatch.setattr(inception, "FID_INCEPTION_WEIGHTS", offline)
    with pytest.raises(weights.WeightsUnavailableError) as error:
        inception.load_fid_inception()
    message = str(error.value)
    assert "pt_inception-2015-12-05-6726825d.pth" in message
    assert str(tmp_path / "cache" / "pt_inception-2015-12-05-6726825d.pth") in message
    assert error.value.__cause__ is None and error.value.__suppress_context__
    assert not any(p.is_file() for p in tmp_path.rglob("*"))  # nothing that could pass for weights


def test_missing_lpips_weights_without_network_raise_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(
        lpips, "VGG16_WEIGHTS", dataclasses.replace(lpips.VGG16_WEIGHTS, url=UNREACHABLE)
    )
    with pytest.raises(
        weights.WeightsUnavailableError, match=f"copy it to {tmp_path / 'vgg16-397923af.pth'}"
    ):
        lpips.load_lpips()
    with pytest.raises(weights.WeightsUnavailableError, match="No file at /nonexistent/vgg.pth"):
        lpips.load_lpips(vgg_path="/nonexistent/vgg.pth")


def _file_weights(tmp_path, content: bytes, sha256: str) -> weights.WeightsFile:
    source = tmp_path / "published.pth"
    source.write_bytes(content)
    return weights.WeightsFile("test weights", "w-1234.pth", source.as_uri(), sha256)


def test_download_is_verified_and_leaves_nothing_behind_on_mismatch(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path / "cache"))
    corrupt = _file_weights(tmp_path, b"not the weights", sha256="1234")
    with pytest.raises(weights.WeightsUnavailableError, match="does not start with 1234"):
        weights.fetch_weights(corrupt)
    assert list((tmp_path / "cache").iterdir()) == []


def test_download_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path / "cache"))
    content = b"weights"
    published = _file_weights(tmp_path, content, hashlib.sha256(content).hexdigest()[:8])
    path = weights.fetch_weights(published)
    assert path == tmp_path / "cache" / "w-1234.pth" and path.read_bytes() == content
    (tmp_path / "published.pth").unlink()  # a second call must not download again
    assert weights.fetch_weights(published) == path
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["w-1234.pth"]
