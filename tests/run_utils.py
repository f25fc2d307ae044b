"""Helpers of the scale-out tests: small configs, runs in subprocesses with their own JAX (device
count, compile flags), SIGTERM on cue, state comparison.

Subprocesses compile at XLA's lowest backend optimisation (several times faster for these small
programs) and share a persistent compilation cache, so runs of one config compile once.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import jax
import ml_collections
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
CACHE = os.path.join(tempfile.gettempdir(), "consistency_jax_test_compilation_cache")

# Any toy config shrunk to seconds: a small MLP, batch 64, logs every step.
SMALL = {
    "network.mlp.hidden": 32,
    "network.mlp.depth": 2,
    "network.mlp.emb_dim": 16,
    "data.batch_size": 64,
    "data.num_points": 4096,
    "train.num_steps": 8,
    "train.log_every": 1,
    "train.ckpt_every": 4,
    "sample.num_samples": 64,
    "sample.batch_size": 64,
    "sample.teacher_steps": 4,
    "parallel.fsdp_min_size": 64,
}
# A tiny EDM teacher on the 8x8 digits: DDPM++ at width 16, one resolution, one block (it
# compiles in seconds; the U-Net's other sizes have tests of their own in tests/test_unet.py).
DIGITS = {
    "data.name": "digits",
    "data.batch_size": 8,
    "network.name": "ddpmpp",
    "network.unet.model_channels": 16,
    "network.unet.channel_mult": (1,),
    "network.unet.num_blocks": 1,
    "network.unet.attn_resolutions": (),
    "sample.num_samples": 8,
    "sample.batch_size": 8,
}


def override(config: ml_collections.ConfigDict, values: dict) -> ml_collections.ConfigDict:
    """`config` with dotted keys set ({'train.num_steps': 4})."""
    for dotted, value in values.items():
        *sections, name = dotted.split(".")
        node = config
        for s in sections:
            node = node[s]
        node[name] = value
    return config


def config(name: str, values: dict | None = None) -> ml_collections.ConfigDict:
    """configs/<name>.py with SMALL and then `values` applied."""
    module = __import__(f"configs.{name}", fromlist=["get_config"])
    return override(module.get_config(), SMALL | (values or {}))


def launch_args(name: str, workdir: str, values: dict | None = None, *more: str) -> list[str]:
    """Arguments of `python launch.py` training `config(name, values)` in `workdir`."""
    overrides = [f"--config.{k}={v}" for k, v in (SMALL | (values or {})).items()]
    return ["launch.py", f"--config=configs/{name}.py", f"--workdir={workdir}", *overrides, *more]


def env(devices: int = 1, **extra: str | None) -> dict[str, str]:
    """A subprocess's environment: CPU JAX with `devices` devices, fast compiles, the repo
    importable, and `extra` (a None value removes the variable)."""
    xla = f"{FAST_COMPILE} --xla_force_host_platform_device_count={devices}"
    ours = {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": xla, "JAX_COMPILATION_CACHE_DIR": CACHE, "PYTHONPATH": ROOT}
    return {k: v for k, v in (os.environ | ours | extra).items() if v is not None}


def start(args: list[str], log: str, devices: int = 1, **extra_env: str | None) -> subprocess.Popen:
    """Start `python args...` in the repo root, its output going to the file `log`."""
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=env(devices, **extra_env), stdout=out,
            stderr=subprocess.STDOUT,
        )


def finish(proc: subprocess.Popen, log: str, expect: int = 0, timeout: float = 600) -> str:
    """Wait for `proc` and return its output; fail, showing it, unless it exited with `expect`."""
    try:
        proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with open(log) as f:
        output = f.read()
    assert proc.returncode == expect, f"exit {proc.returncode}, not {expect}:\n{output[-6000:]}"
    return output


def run(args: list[str], log: str, devices: int = 1, expect: int = 0, **extra_env: str | None) -> str:
    return finish(start(args, log, devices, **extra_env), log, expect)


def logged_steps(workdir: str) -> dict[int, dict]:
    """metrics.jsonl as {step: record}; a later record of a step replaces an earlier one."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return {r["step"]: r for r in map(json.loads, f.read().splitlines()) if r}


def tensorboard_events(workdir: str) -> tuple[dict[str, dict[int, float]], dict[str, list[int]]]:
    """The run's TensorBoard events as TensorBoard shows them: ({scalar tag: {step: value}},
    {image tag: [steps]}), the files read in name order, a session start with a purge step
    dropping the earlier events at steps >= it. A second value of a tag at one step fails."""
    from tensorboardX.proto.event_pb2 import Event, SessionLog

    scalars, images = {}, {}
    directory = os.path.join(workdir, "tensorboard")
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name), "rb") as f:
            data = f.read()
        at = 0
        while at < len(data):  # TFRecords: length (8), its CRC (4), the event, its CRC (4)
            length = int.from_bytes(data[at : at + 8], "little")
            event = Event.FromString(data[at + 12 : at + 12 + length])
            at += 16 + length
            if event.session_log.status == SessionLog.START:
                for values in (*scalars.values(), *images.values()):
                    for step in [s for s in values if s >= event.step]:
                        values.remove(step) if isinstance(values, list) else values.pop(step)
            for v in event.summary.value:
                seen = images.setdefault(v.tag, []) if v.HasField("image") else scalars.setdefault(v.tag, {})
                assert event.step not in seen, f"{v.tag}: a second value at step {event.step}"
                if isinstance(seen, list):
                    seen.append(event.step)
                else:
                    seen[event.step] = v.simple_value
    return scalars, images


def wait_until(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 300) -> None:
    """Return as soon as `ready()` holds (a run's progress, say), while `proc` runs."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"exited ({proc.returncode}) before it was ready"
        assert time.monotonic() < deadline, f"not ready after {timeout} s"
        time.sleep(0.02)


def terminate_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 300) -> None:
    """Send SIGTERM to `proc` as soon as `ready()` holds (a run's progress, say)."""
    wait_until(proc, ready, timeout)
    proc.send_signal(signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def flat(tree) -> dict[str, np.ndarray]:
    """A pytree as {path: host array} (None leaves dropped), for saving and comparing."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(p): np.asarray(jax.device_get(v)) for p, v in leaves}


def max_difference(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """The largest absolute difference over all arrays of two `flat` trees with the same keys."""
    assert a.keys() == b.keys()
    return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) for k in a if a[k].size)


def restore_state(config: ml_collections.ConfigDict, workdir: str, step: int | None = None) -> dict:
    """The train state saved in `workdir` (at `step`, default the latest), as a `flat` dict."""
    from consistency_jax.data import data_info
    from consistency_jax.networks import build_network
    from consistency_jax.training import checkpoint
    from consistency_jax.training.state import abstract_state

    info = data_info(config.data)
    model = build_network(config.network, info.num_classes if config.data.conditional else 0)
    manager = checkpoint.make_manager(workdir)
    try:
        return flat(checkpoint.restore(manager, abstract_state(config, model, info), step=step))
    finally:
        manager.close()
