"""Read an openai/consistency_models_cifar10 ("jcm") checkpoint and map its NCSN++ onto our
NCSN++ (`SongUNet` with encoder_type 'residual'), without torch.

A jcm checkpoint is one `flax.serialization.to_bytes` msgpack of its train state (jcm/checkpoints.py):
`State{step, lr, ema_rate, params, params_ema, model_state, opt_state, rng_state}`, with
`target_params` too where the loss kept a target network (jcm/models/utils.py). The network is
score_sde's `NCSNpp` (jcm/models/ncsnpp.py), a compact Flax module whose layers carry Flax's
automatic names in the order the forward pass creates them: `GaussianFourierProjection_0`,
`Dense_0/1` (the embedding MLP), `Conv_0` (input), `ResnetBlockBigGANpp_k`, `AttnBlockpp_k`,
`Downsample_k` (the progressive 'residual' input path), `GroupNorm_0` and `Conv_1` (output).

Its layers compute what ours do (both descend from score_sde's NCSN++): BigGAN blocks with FIR
[1, 3, 3, 1] resampling and skip_rescale 1/sqrt(2), single-head attention over separate q/k/v
1x1 layers (`NIN`), GroupNorm min(C/4, 32) with eps 1e-6, an output head without progressive
skips. Only the layout differs: q/k/v become our interleaved `qkv` 1x1 conv, and `NIN` matrices
our 1x1 kernels.
"""

import re
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
from flax import serialization

from consistency_jax.errors import ConfigError
from consistency_jax.networks.pretrained.edm_pickle import is_pickle

# jcm's trees of parameters in a saved state: the EMA ones sample (jcm/sampling.py onestep sampler)
PARAM_TREES = ("params_ema", "params")


class JCMCheckpointError(ConfigError):
    """A jcm checkpoint that cannot be imported: not a flax msgpack state, another network,
    an unknown, missing or mis-shaped tensor."""


def is_msgpack(head: bytes) -> bool:
    """Whether a file starting with `head` is a flax msgpack state (a map), not a pickle
    (whose protocol 2+ header b'\\x80' + version also starts with a msgpack map byte)."""
    if not head or is_pickle(head):
        return False
    return 0x80 <= head[0] <= 0x8F or head[0] in (0xDE, 0xDF)


def load_jcm_params(path: str, tree: str = "params_ema") -> dict:
    """The parameter tree `tree` ('params_ema' or 'params') of the jcm checkpoint at `path`,
    as nested dicts of float32 arrays under score_sde's names."""
    if tree not in PARAM_TREES:
        raise JCMCheckpointError(f"Unknown parameter tree {tree!r}; a jcm checkpoint holds {PARAM_TREES}.")
    with open(path, "rb") as f:
        blob = f.read()
    try:
        state = serialization.msgpack_restore(blob)
    except Exception as e:  # msgpack raises its own classes (ExtraData, FormatError, ...)
        raise JCMCheckpointError(f"{path} is not a flax msgpack checkpoint ({type(e).__name__}: {e}).") from None
    if not isinstance(state, dict) or tree not in state:
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise JCMCheckpointError(f"{path} is not a jcm train state: it has no {tree!r} (its top level: {keys}).")
    if jax.tree.leaves(state.get("model_state") or {}):  # jcm's NCSN++: {} (no batch statistics)
        raise JCMCheckpointError(
            f"{path}: the network keeps state beside its parameters ({sorted(state['model_state'])}); "
            "jcm's NCSN++ keeps none, so this is another architecture."
        )
    params = state[tree]
    _check_architecture(path, params)
    try:
        return jax.tree.map(lambda a: np.asarray(a, np.float32), params)
    except (TypeError, ValueError) as e:
        raise JCMCheckpointError(f"{path}: its {tree!r} holds a value that is not an array ({e}).") from None


_NCSNPP_MODULES = {
    "GaussianFourierProjection",
    "Dense",
    "Conv",
    "GroupNorm",
    "ResnetBlockBigGANpp",
    "AttnBlockpp",
    "Downsample",
}


def _check_architecture(path: str, params: Any) -> None:
    """Refuse a tree that is not score_sde's NCSN++ with BigGAN blocks, a Fourier embedding and
    the progressive 'residual' input (jcm configs/cifar10_ve_cd.py), naming what it holds."""
    if not isinstance(params, dict):
        raise JCMCheckpointError(f"{path}: its parameters are a {type(params).__name__}, not a tree of modules.")
    kinds = {re.sub(r"_\d+$", "", name) for name in params}
    need = {"GaussianFourierProjection", "ResnetBlockBigGANpp", "Downsample"}
    if kinds - _NCSNPP_MODULES or need - kinds:
        raise JCMCheckpointError(
            f"{path} holds a network of {sorted(kinds)}; only score_sde's NCSN++ (ResnetBlockBigGANpp "
            "blocks, GaussianFourierProjection, progressive_input 'residual' Downsample, progressive "
            "'none') as jcm's CIFAR-10 configs build it can be imported."
        )


def _lookup(params: dict, path: str) -> Any:
    """The node at `path` ('Conv_0/kernel') of the tree, or None."""
    node = params
    for key in path.split("/"):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def tensor_shape(params: dict, path: str) -> tuple[int, ...]:
    """The shape of the tensor at `path` ('Conv_0/kernel'); JCMCheckpointError if there is none."""
    node = _lookup(params, path)
    if node is None:
        raise JCMCheckpointError(f"The checkpoint lacks the tensor {path!r} that every jcm NCSN++ has.")
    return tuple(np.shape(node))


def _count(params: dict, kind: str) -> int:
    return sum(1 for name in params if re.fullmatch(rf"{kind}_\d+", name))


def network_settings(params: dict) -> dict:
    """config.network.unet keys read off the tree's shapes: model_channels, channel_mult,
    channel_mult_emb, num_blocks (attention positions are not in the shapes: see check_attention)."""
    nf = tensor_shape(params, "Conv_0/kernel")[-1]
    levels = _count(params, "Downsample") + 1
    blocks = _count(params, "ResnetBlockBigGANpp")  # levels * (2 num_blocks + 3): enc, down, mid, dec, up
    num_blocks, rest = divmod(blocks - 3 * levels, 2 * levels)
    if rest or num_blocks < 1:
        raise JCMCheckpointError(
            f"{blocks} ResnetBlockBigGANpp blocks at {levels} resolutions fit no NCSN++ "
            "(it has 2 num_blocks + 3 per resolution)."
        )
    first = lambda level: f"ResnetBlockBigGANpp_{level * (num_blocks + 1)}/Conv_0/kernel"  # a level's first block
    mult = [tensor_shape(params, first(level))[-1] // nf for level in range(levels)]
    emb = tensor_shape(params, "Dense_0/kernel")[-1] // nf
    return dict(
        model_channels=nf,
        channel_mult=tuple(int(m) for m in mult),
        channel_mult_emb=int(emb),
        num_blocks=int(num_blocks),
    )


def check_attention(params: dict, unet: Any, image_size: int) -> None:
    """The tree's AttnBlockpp count must be what unet.attn_resolutions gives: one per encoder
    block and one per decoder level at each such resolution, and one in the middle."""
    resolutions = [image_size >> level for level in range(len(unet.channel_mult))]
    levels = sum(1 for r in resolutions if r in unet.attn_resolutions)
    want, have = levels * (unet.num_blocks + 1) + 1, _count(params, "AttnBlockpp")
    if want != have:
        raise JCMCheckpointError(
            f"The checkpoint has {have} AttnBlockpp blocks; attention at {tuple(unet.attn_resolutions)} "
            f"of the {image_size}x{image_size} resolutions {resolutions} makes {want}: set "
            "config.network.unet.attn_resolutions to the checkpoint's (jcm: (16,) at 32x32)."
        )


def module_order(levels: int, num_blocks: int, size: int) -> Iterator[tuple[str, str]]:
    """(our module name, its kind) in the order jcm's NCSNpp creates the counterparts, kind one of
    'conv_in', 'block', 'aux', 'norm_out', 'conv_out' (our SongUNet's encoder, middle, decoder)."""
    for level in range(levels):
        tag = f"enc_{size >> level}x{size >> level}"
        if level == 0:
            yield f"{tag}_conv", "conv_in"
        else:
            yield f"{tag}_down", "block"
            yield f"{tag}_aux_residual", "aux"
        yield from ((f"{tag}_block{i}", "block") for i in range(num_blocks))
    for level in reversed(range(levels)):
        tag = f"dec_{size >> level}x{size >> level}"
        if level == levels - 1:
            yield from ((f"{tag}_in{i}", "block") for i in range(2))
        else:
            yield f"{tag}_up", "block"
        yield from ((f"{tag}_block{i}", "block") for i in range(num_blocks + 1))
    yield f"dec_{size}x{size}_aux_norm", "norm_out"
    yield f"dec_{size}x{size}_aux_conv", "conv_out"


class _Reader:
    """Takes tensors from the jcm tree by path, each checked against the shape we need."""

    def __init__(self, params: dict):
        self.params, self.used = params, set()

    def take(self, path: str, shape: tuple[int, ...]) -> np.ndarray:
        node = _lookup(self.params, path)
        if node is None or isinstance(node, dict):
            raise JCMCheckpointError(
                f"The checkpoint lacks the tensor {path!r} (shape {shape}) that this network needs."
            )
        value = np.asarray(node, np.float32)
        if value.shape != tuple(shape):
            raise JCMCheckpointError(
                f"The checkpoint's tensor {path!r} has shape {value.shape}; this network needs {tuple(shape)}."
            )
        self.used.add(path)
        return value

    def unused(self) -> list[str]:
        leaves = jax.tree_util.tree_flatten_with_path(self.params)[0]
        paths = ("/".join(str(k.key) for k in p) for p, _ in leaves)
        return sorted(p for p in paths if p not in self.used)


def _dense(r: _Reader, src: str, ours: dict) -> dict:
    """A Dense or Conv (kernel, bias) or GroupNorm (scale, bias): the same names and layout."""
    return {leaf: r.take(f"{src}/{leaf}", s.shape) for leaf, s in ours.items()}


def _attention(r: _Reader, src: str, ours: dict) -> dict:
    """AttnBlockpp (GroupNorm_0; NIN_0/1/2 = q, k, v; NIN_3 the output) -> our norm2, qkv, proj.
    Our qkv's output channels are laid out (C, 3): channel 3c + j is NIN_j's channel c."""
    c = ours["proj"]["bias"].shape[0]
    q, k, v = (r.take(f"{src}/NIN_{j}/W", (c, c)) for j in range(3))
    qb, kb, vb = (r.take(f"{src}/NIN_{j}/b", (c,)) for j in range(3))
    return {
        "norm2": _dense(r, f"{src}/GroupNorm_0", ours["norm2"]),
        "qkv": {
            "kernel": np.stack([q, k, v], -1).reshape(1, 1, c, 3 * c),
            "bias": np.stack([qb, kb, vb], -1).reshape(3 * c),
        },
        "proj": {"kernel": r.take(f"{src}/NIN_3/W", (c, c))[None, None], "bias": r.take(f"{src}/NIN_3/b", (c,))},
    }


_BLOCK = {
    "norm0": "GroupNorm_0",
    "conv0": "Conv_0",
    "affine": "Dense_0",
    "norm1": "GroupNorm_1",
    "conv1": "Conv_1",
    "skip": "Conv_2",
}  # ResnetBlockBigGANpp's layers, in creation order


def flax_params(params: dict, shapes: Any, unet: Any, size: int) -> dict:
    """Our NCSN++ parameter tree (shaped as `shapes`, e.g. jax.eval_shape of model.init's params,
    of the network config.network.unet `unet` makes for `size`x`size` images) from jcm's tree;
    JCMCheckpointError naming any tensor that is missing, unknown or mis-shaped."""
    r, out, counts = _Reader(params), {}, {"ResnetBlockBigGANpp": 0, "AttnBlockpp": 0, "Downsample": 0}

    def next_name(kind: str) -> str:
        counts[kind] += 1
        return f"{kind}_{counts[kind] - 1}"

    out["map_noise"] = {"freqs": r.take("GaussianFourierProjection_0/W", shapes["map_noise"]["freqs"].shape)}
    out["map_layer0"] = _dense(r, "Dense_0", shapes["map_layer0"])
    out["map_layer1"] = _dense(r, "Dense_1", shapes["map_layer1"])
    for name, kind in module_order(len(unet.channel_mult), unet.num_blocks, size):
        ours = shapes[name]
        if kind == "conv_in":
            out[name] = _dense(r, "Conv_0", ours)
        elif kind == "conv_out":
            out[name] = _dense(r, "Conv_1", ours)
        elif kind == "norm_out":
            out[name] = _dense(r, "GroupNorm_0", ours)
        elif kind == "aux":
            src = f"{next_name('Downsample')}/Conv2d_0"
            out[name] = {
                "kernel": r.take(f"{src}/weight", ours["kernel"].shape),
                "bias": r.take(f"{src}/bias", ours["bias"].shape),
            }
        else:
            src = next_name("ResnetBlockBigGANpp")
            out[name] = {k: _dense(r, f"{src}/{_BLOCK[k]}", ours[k]) for k in _BLOCK if k in ours}
            if "qkv" in ours:
                out[name] |= _attention(r, next_name("AttnBlockpp"), ours)
    missing = sorted(set(shapes) - set(out))
    if missing:
        raise JCMCheckpointError(f"This network has parts jcm's NCSN++ has not: {', '.join(missing)}.")
    unknown = r.unused()
    if unknown:
        raise JCMCheckpointError(
            f"The checkpoint holds tensors this NCSN++ has no place for: {', '.join(unknown[:8])}"
            + (f" and {len(unknown) - 8} more." if len(unknown) > 8 else ".")
        )
    return out
