"""Checkpoint integrity in process: the array checksums catch every single-bit flip, and a
non-finite loss right after a resume names corrupt input as a suspect."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from consistency_jax.training import checksum
from consistency_jax.training.log import MetricsLog, NonFiniteLossError


def test_every_single_bit_flip_changes_its_arrays_checksum():
    tree = {"w": jnp.linspace(-1, 1, 6).reshape(2, 3), "h": jnp.ones(3, jnp.bfloat16),
            "n": jnp.arange(2, dtype=jnp.int32), "key": jax.random.key(3)}
    saved = checksum.checksums(tree)
    for name in ("w", "h", "n"):
        for byte in range(tree[name].size * tree[name].dtype.itemsize):
            for bit in range(8):
                flipped = np.array(tree[name])
                flipped.reshape(-1).view(np.uint8)[byte] ^= 1 << bit
                changed = checksum.checksums(tree | {name: jnp.asarray(flipped)})
                assert checksum.mismatches(saved, changed) == [f"['{name}']"], (name, byte, bit)
    other_key = checksum.checksums(tree | {"key": jax.random.key(4)})
    assert checksum.mismatches(saved, other_key) == ["['key']"]


class _Manager:
    directory = "run/checkpoints"

    def latest_step(self) -> int:
        return 100


@pytest.mark.parametrize("first_step,suspect", [(100, True), (0, False)])
def test_a_nan_right_after_a_resume_names_corrupt_input(tmp_path, first_step, suspect):
    log = MetricsLog(str(tmp_path), 200, "stop", _Manager())
    log.add(first_step, {"finite": jnp.bool_(False), "loss": jnp.float32(np.nan)})
    with pytest.raises(NonFiniteLossError) as error:
        log.flush()
    assert ("after resuming from step 100" in str(error.value)) == suspect
    assert ("may be corrupt" in str(error.value)) == suspect
