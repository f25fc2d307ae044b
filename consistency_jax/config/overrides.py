"""Command-line overrides (--config.KEY=VALUE): a misspelt key or a value of the wrong type, named
in one paragraph with the nearest valid keys, instead of ml_collections' traceback."""

import difflib
from collections.abc import Sequence

import ml_collections

PREFIX = "--config."
KINDS = {bool: "True or False", int: "an integer", float: "a number", str: "a string", tuple: "a tuple"}


def flat_keys(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, object]:
    """Every leaf of `config` as dotted key -> value."""
    out = {}
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            out |= flat_keys(value, f"{prefix}{key}.")
        else:
            out[prefix + key] = value
    return out


def overrides(argv: Sequence[str]) -> list[tuple[str, str]]:
    """(dotted key, value) of every --config.KEY=VALUE (or --config.KEY VALUE) in argv."""
    found = []
    for i, arg in enumerate(argv):
        if arg.startswith(PREFIX):
            key, sep, value = arg[len(PREFIX) :].partition("=")
            found.append((key, value if sep else (argv[i + 1] if i + 1 < len(argv) else "")))
    return found


def override_error(argv: Sequence[str], config: ml_collections.ConfigDict, error: Exception) -> str:
    """The message for the override of `argv` that the config rejected with `error`: its key if no
    such key exists (with the nearest ones), or its value and the key's type."""
    keys = flat_keys(config)
    for key, value in overrides(argv):
        if key not in keys:
            near = difflib.get_close_matches(key, list(keys), n=3, cutoff=0.6)
            if not near:  # a misspelt section: the keys of the section it most resembles
                section = key.split(".")[0]
                sections = sorted({k.split(".")[0] for k in keys})
                near = [
                    k for s in difflib.get_close_matches(section, sections, n=1, cutoff=0.5)
                    for k in keys if k.startswith(s + ".")
                ][:6]
            hint = f"Did you mean {', '.join('config.' + k for k in near)}? " if near else ""
            return (
                f"--config.{key}={value}: config.{key} is not a config key. {hint}Every key is "
                "documented in consistency_jax/config/schema.py."
            )
    for key, value in overrides(argv):
        if f"--config.{key}" in str(error):
            kind = KINDS.get(type(keys[key]), f"a {type(keys[key]).__name__}")
            return (
                f"--config.{key}={value}: config.{key} takes {kind} (it is {keys[key]!r} in this "
                f"config); {value!r} is not one. Every key is documented in "
                "consistency_jax/config/schema.py."
            )
    return str(error)
