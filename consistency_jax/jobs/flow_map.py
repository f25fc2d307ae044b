"""The flow-map error of a trained consistency run against its teacher
(`consistency_jax.evaluation.flow_map`):

    python -m consistency_jax.jobs.flow_map --workdir=RUN [--sigmas=80,2,0.5,0.1] [--num=1000]

reads RUN's config.json and latest checkpoint and its teacher (config.objective.teacher_workdir) and
prints one JSON line {"sigma": [...], "rms": [...], ...}. CM students (CD, CT, iCT, ECT) and sCM's
(sCT, sCD, through x_t = cos t x_sigma at t = arctan(sigma / sigma_d)), unconditional, in pixel or
vector space. Bad input: the message alone, exit status 2.
"""

import json
import os
import sys
from collections.abc import Sequence

import jax
import numpy as np
from absl import app, flags

from consistency_jax.config.schema import load_config
from consistency_jax.core import sampling
from consistency_jax.data import data_info
from consistency_jax.errors import ConfigError
from consistency_jax.evaluation.flow_map import check_sigmas, flow_map_error, sigma_consistency_fn
from consistency_jax.evaluation.run import restore_ema_params
from consistency_jax.jobs.teacher import load_teacher
from consistency_jax.jobs.user_errors import USER_ERRORS
from consistency_jax.networks import build_network
from consistency_jax.training import checkpoint
from consistency_jax.training.objectives import teacher_denoiser

FINE_STEPS = 256  # the teacher's Heun grid: Karras sigmas, then 0
STUDENTS = ("cd", "ct", "ict", "ect", "sct", "scd")


def student_config(workdir: str):
    """The config.json of the run in `workdir`: an unconditional pixel- or vector-space student
    with a teacher; ConfigError naming what is not."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise ConfigError(f"No run in {workdir!r} (no config.json): pass the workdir of a trained run.")
    config = load_config(path)
    if config.objective.name not in STUDENTS:
        raise ConfigError(
            f"{workdir!r} holds a {config.objective.name!r} run; this needs one of {', '.join(STUDENTS)}."
        )
    if config.data.conditional or config.autoencoder.kind != "none":
        raise ConfigError(
            f"{workdir!r} holds a conditional or latent run; the flow-map error is for unconditional "
            "pixel- or vector-space runs."
        )
    if not config.objective.teacher_workdir:
        raise ConfigError(f"{workdir!r} names no teacher (objective.teacher_workdir): it has no flow map to match.")
    return config


def run_flow_map(workdir: str, sigmas: Sequence[float], num: int, seed: int = 0) -> dict:
    """`flow_map_error` of the run in `workdir` against its teacher (`load_teacher`, its checks), on
    `num` trajectories; the noise levels are checked before the student's checkpoint is read."""
    config = student_config(workdir)
    info = data_info(config.data)
    teacher = load_teacher(config, info)
    m = teacher.config.model
    grid = np.asarray(sampling.teacher_sigmas(FINE_STEPS, m.sigma_min, m.sigma_max, m.rho))
    check_sigmas(sigmas, grid)
    model = build_network(config.network, 0)
    params, _ = restore_ema_params(config, workdir, model, info)
    denoise = teacher_denoiser(teacher.model, teacher.params, None, 1.0, m.sigma_data, m.scm_network)
    x_T = m.sigma_max * jax.random.normal(jax.random.key(seed), (num, *info.shape))
    rms = flow_map_error(sigma_consistency_fn(config, model, params), denoise, x_T, grid, sigmas)
    teacher_dir = config.objective.teacher_workdir
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
    except (*USER_ERRORS, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
