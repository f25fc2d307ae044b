"""JAX's persistent compilation cache: a restarted or resumed run loads its compiled steps from disk."""

import os

import jax
from absl import flags


def default_cache_dir() -> str:
    """$JAX_COMPILATION_CACHE_DIR, else $XDG_CACHE_HOME (or ~/.cache)/consistency_jax/xla."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return os.environ["JAX_COMPILATION_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "consistency_jax", "xla")


def enable_compilation_cache(path: str, min_compile_seconds: float = 1.0) -> None:
    """Keep every compiled program that took at least `min_compile_seconds` in `path` ('' : off).

    Before the first compilation: JAX decides once per process whether the cache is used.
    """
    if not path:
        return
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_seconds)


def define_flag() -> None:
    """--compilation_cache, for every entry point."""
    flags.DEFINE_string(
        "compilation_cache", default_cache_dir(),
        "Directory of JAX's persistent compilation cache, so a restarted run does not compile "
        "again ('' turns it off).",
    )
