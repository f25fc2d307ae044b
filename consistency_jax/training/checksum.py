"""Checksums of a train state's arrays, saved with each checkpoint and verified when it is restored.

orbax writes array data without a checksum (zarr's crc32c covers only the shard index), so a
flipped bit on disk would load silently. Each array gets a 64-bit checksum of its bits, computed
on its own devices under jit whatever its sharding, in exact integer arithmetic, so a run saved
on 8 devices verifies on 1. With w_i the array's bits as uint32 words and i their flat index,
the two halves are, mod 2^32:
    sum_i w_i (2 i + 1)         any change to a single word changes it (2 i + 1 is odd)
    sum_i mix(w_i + i)          a nonlinear mix (murmur3's finalizer) against multi-word damage
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

_UNSIGNED = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}


def _words(x: jax.Array) -> jax.Array:
    """The bits of `x` as uint32 words (8-byte items as two words, smaller items one each)."""
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    if x.dtype.itemsize == 8:
        return jax.lax.bitcast_convert_type(x, jnp.uint32)
    return jax.lax.bitcast_convert_type(x, _UNSIGNED[x.dtype.itemsize]).astype(jnp.uint32)


def _flat_index(shape: tuple[int, ...]) -> jax.Array:
    """Row-major flat index of every element, as uint32, built without a reshape (sharding-friendly)."""
    index, stride = jnp.zeros(shape, jnp.uint32), 1
    for dim in reversed(range(len(shape))):
        index = index + jax.lax.broadcasted_iota(jnp.uint32, shape, dim) * jnp.uint32(stride % 2**32)
        stride *= shape[dim]
    return index


def _mix(h: jax.Array) -> jax.Array:
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _checksum(x: jax.Array) -> jax.Array:
    w = _words(x)
    i = _flat_index(w.shape)
    return jnp.stack([jnp.sum(w * (2 * i + 1), dtype=jnp.uint32), jnp.sum(_mix(w + i), dtype=jnp.uint32)])


def _replicated_like(x: jax.Array):
    sharding = getattr(x, "sharding", None)
    return NamedSharding(sharding.mesh, PartitionSpec()) if isinstance(sharding, NamedSharding) else None


@functools.cache
def _checksum_all(out_shardings: tuple):
    """One jitted function per layout of outputs (jit caches each input structure's compilation)."""
    return jax.jit(lambda xs: [_checksum(x) for x in xs], out_shardings=list(out_shardings))


def checksums(tree) -> dict[str, str]:
    """{path of each array leaf: its checksum as 16 hex digits}; every process gets the same."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    paths = [jax.tree_util.keystr(p) for p, _ in leaves]
    arrays = [x for _, x in leaves]
    sums = jax.device_get(_checksum_all(tuple(_replicated_like(x) for x in arrays))(arrays))
    return {p: "".join(f"{int(v):08x}" for v in np.asarray(s)) for p, s in zip(paths, sums)}


def mismatches(saved: dict[str, str], restored: dict[str, str]) -> list[str]:
    """Paths whose checksum differs, or that one side lacks."""
    return sorted(p for p in saved.keys() | restored.keys() if saved.get(p) != restored.get(p))
