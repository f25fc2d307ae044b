"""The persistent compilation cache: a second process loads what the first compiled."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAM = """
import sys
import jax, jax.numpy as jnp
from consistency_jax.compile_cache import enable_compilation_cache
enable_compilation_cache(sys.argv[1], min_compile_seconds=0.0)
hits = []
jax.monitoring.register_event_listener(
    lambda event, **kw: hits.append(event) if event == "/jax/compilation_cache/cache_hits" else None)
f = jax.jit(lambda x: jnp.sin(x) @ jnp.cos(x).T)
print(float(f(jnp.ones((16, 16))).sum()), len(hits))
"""


def _run(cache: str) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM, cache], cwd=ROOT, capture_output=True, text=True,
        timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    value, hits = out.stdout.split()
    return value, int(hits)


def test_second_process_hits_the_cache(tmp_path):
    cache = str(tmp_path / "xla")
    first_value, first_hits = _run(cache)
    entries = os.listdir(cache)
    assert first_hits == 0 and entries
    second_value, second_hits = _run(cache)
    assert second_hits >= 1 and second_value == first_value
    assert sorted(os.listdir(cache)) == sorted(entries)  # nothing compiled anew


def test_empty_path_leaves_the_cache_off(tmp_path):
    value, hits = _run("")
    assert hits == 0
