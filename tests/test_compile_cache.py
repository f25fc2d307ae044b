"""The persistent compilation cache: a second process loads what the first compiled."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAM = """
import sys
import jax, jax.numpy as jnp
from consistency_jax.training.compile_cache import enable_compilation_cache
enable_compilation_cache(sys.argv[1], min_compile_seconds=0.0)
hits = []
jax.monitoring.register_event_listener(
    lambda event, **kw: hits.append(event) if event == "/jax/compilation_cache/cache_hits" else None)
f = jax.jit(lambda x: jnp.sin(x) @ jnp.cos(x).T)
print(float(f(jnp.ones((16, 16))).sum()), len(hits), jax.config.jax_compilation_cache_dir)
"""


def _run(cache: str) -> tuple[str, int, str]:
    """The program's result, its cache hits, and the cache directory JAX was left with."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM, cache], cwd=ROOT, capture_output=True, text=True,
        timeout=300, env=dict(env, JAX_PLATFORMS="cpu"),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    value, hits, directory = out.stdout.split()
    return value, int(hits), directory


def test_second_process_hits_the_cache(tmp_path):
    cache = str(tmp_path / "xla")
    first_value, first_hits, directory = _run(cache)
    entries = os.listdir(cache)
    assert first_hits == 0 and entries and directory == cache
    second_value, second_hits, _ = _run(cache)
    assert second_hits >= 1 and second_value == first_value
    assert sorted(os.listdir(cache)) == sorted(entries)  # nothing compiled anew


def test_empty_path_leaves_the_cache_off(tmp_path):
    _, hits, directory = _run("")
    assert hits == 0 and directory == "None"  # JAX's cache was never pointed anywhere
