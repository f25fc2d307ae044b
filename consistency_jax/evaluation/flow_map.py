"""How far a consistency model's f is from its teacher's flow map, noise level by noise level.

A consistency function maps every point x_sigma of a PF-ODE trajectory to the trajectory's end x_0
(CM Sec. 3). `flow_map_error` follows the teacher's ODE from x_T on a fine grid and measures, at
each requested sigma, the RMS (per element) of f(x_sigma, sigma) - x_0: where along the trajectory
a student is wrong, which the distance of its one-step samples to the data does not say.

    python -m consistency_jax.evaluation.flow_map --workdir=RUN [--sigmas=80,2,0.5,0.1] [--num=1000]

reads RUN's config.json and latest checkpoint and its teacher (config.objective.teacher_workdir) and
prints one JSON line {"sigma": [...], "rms": [...], ...}. CM students (CD, CT, iCT, ECT) and sCM's
(sCT, sCD, through x_t = cos t x_sigma at t = arctan(sigma / sigma_d)) unguided and unconditional.
"""

import json
import os
import sys
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from consistency_jax.config.schema import load_config
from consistency_jax.core import ode, sampling
from consistency_jax.core.arrays import per_sample
from consistency_jax.core.parametrization import trigflow_time
from consistency_jax.data import data_info
from consistency_jax.errors import ConfigError
from consistency_jax.evaluation.samples import consistency_function, is_trigflow
from consistency_jax.networks import build_network
from consistency_jax.training import checkpoint
from consistency_jax.training.objectives import teacher_denoiser
from consistency_jax.training.state import state_shapes

FINE_STEPS = 256  # the teacher's Heun grid: Karras sigmas, then 0
STUDENTS = ("cd", "ct", "ict", "ect", "sct", "scd")


def check_sigmas(sigmas: Sequence[float], grid: np.ndarray) -> None:
    """The noise levels must decrease within the teacher's grid (0, grid[0]]."""
    top = float(grid[0])
    if not sigmas or list(sigmas) != sorted(sigmas, reverse=True) or not 0 < min(sigmas) <= max(sigmas) <= top:
        raise ValueError(f"sigmas {list(sigmas)} must be decreasing noise levels in (0, {top:g}], the teacher's range.")


def flow_map_error(
    f: ode.Denoiser, teacher: ode.Denoiser, x_T: jax.Array, grid: jax.Array, sigmas: Sequence[float]
) -> np.ndarray:
    """RMS of f(x_sigma, sigma) - x_0 at each of `sigmas` (decreasing, inside the grid), x_sigma the
    teacher's Heun solution from x_T = x at grid[0] (a decreasing grid ending at 0) and x_0 its end.
    Each sigma is a point of the solve: the grid's points above it, then it."""
    check_sigmas(sigmas, grid)
    grid = np.asarray(grid, np.float64)
    x, start, states = x_T, grid[0], []
    for s in sigmas:
        segment = np.concatenate([[start], grid[(grid < start) & (grid > s)], [s]])
        x = ode.integrate(teacher, x, segment) if s < start else x
        states.append(x)
        start = s
    x0 = ode.integrate(teacher, x, np.concatenate([[start], grid[grid < start]]))
    errors = [f(x_s, jnp.full(x_s.shape[:1], s, jnp.float32)) - x0 for x_s, s in zip(states, sigmas)]
    return np.array([float(jnp.sqrt(jnp.mean(e**2))) for e in errors])


def sigma_consistency_fn(config, model, params) -> ode.Denoiser:
    """A run's consistency function in EDM's sigma units, f(x_sigma, sigma) -> x_0: an sCM run's
    f(cos t x_sigma, t) at t = arctan(sigma / sigma_d) (sCM App. B.2)."""
    f = consistency_function(config, model, params)
    if not is_trigflow(config):
        return f
    t = lambda sigma: trigflow_time(sigma, config.model.sigma_data)
    return lambda x, sigma: f(per_sample(jnp.cos(t(sigma)), x) * x, t(sigma))


def _run_config(workdir: str, objectives: Sequence[str]):
    """The config.json of the unconditional run in `workdir`, of one of `objectives`; ConfigError if not."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise ConfigError(f"No run in {workdir!r} (no config.json): pass the workdir of a trained run.")
    config = load_config(path)
    if config.objective.name not in objectives:
        raise ConfigError(
            f"{workdir!r} holds a {config.objective.name!r} run; this needs one of {', '.join(objectives)}."
        )
    if config.data.conditional or config.autoencoder.kind != "none":
        raise ConfigError(
            f"{workdir!r} holds a conditional or latent run; the flow-map error is for unconditional "
            "pixel- or vector-space runs."
        )
    return config


def _ema_params(config, workdir: str):
    """(model, EMA params of the latest checkpoint) of the run in `workdir`."""
    model = build_network(config.network, 0)
    manager = checkpoint.make_manager(workdir)
    try:
        return model, checkpoint.restore(manager, state_shapes(config, model, data_info(config.data))).ema_params
    finally:
        manager.close()


def run_flow_map(workdir: str, sigmas: Sequence[float], num: int, seed: int = 0) -> dict:
    """`flow_map_error` of the run in `workdir` against its teacher, on `num` trajectories; every
    input is checked before any checkpoint is read."""
    config = _run_config(workdir, STUDENTS)
    teacher_dir = config.objective.teacher_workdir
    if not teacher_dir:
        raise ConfigError(f"{workdir!r} names no teacher (objective.teacher_workdir): it has no flow map to match.")
    tconfig = _run_config(teacher_dir, ("edm",))
    m = tconfig.model
    grid = np.asarray(sampling.teacher_sigmas(FINE_STEPS, m.sigma_min, m.sigma_max, m.rho))
    check_sigmas(sigmas, grid)
    tmodel, tparams = _ema_params(tconfig, teacher_dir)
    model, params = _ema_params(config, workdir)
    teacher = teacher_denoiser(tmodel, tparams, None, 1.0, m.sigma_data, m.scm_network)
    x_T = m.sigma_max * jax.random.normal(jax.random.key(seed), (num, *data_info(config.data).shape))
    rms = flow_map_error(sigma_consistency_fn(config, model, params), teacher, x_T, grid, sigmas)
    return {"workdir": workdir, "teacher": teacher_dir, "num": num, "sigma": list(sigmas), "rms": rms.tolist()}


flags.DEFINE_string("workdir", None, "A trained consistency run (CD, CT, iCT, ECT, sCT, sCD).")
flags.DEFINE_list("sigmas", ["80", "2", "0.5", "0.1"], "Noise levels in (0, the teacher's sigma_max].")
flags.DEFINE_integer("num", 1000, "Trajectories (x_T drawn with --seed).")
flags.DEFINE_integer("seed", 0, "The seed of x_T.")


def main(argv) -> None:
    del argv
    try:
        checkpoint.hide_orbax_info()
        sigmas = sorted((float(s) for s in flags.FLAGS.sigmas), reverse=True)
        if flags.FLAGS.workdir is None:
            raise ConfigError("--workdir must be given: a trained consistency run.")
        print(json.dumps(run_flow_map(flags.FLAGS.workdir, sigmas, flags.FLAGS.num, flags.FLAGS.seed)))
    except (ConfigError, ValueError, checkpoint.CheckpointNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
