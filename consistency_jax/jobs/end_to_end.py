"""The whole pipeline on an embedded data set: teacher, CD from it, CT/iCT from data, then a table.

`run_pipeline(preset, workdir, stages)` trains each stage in WORKDIR/<stage> (resuming any that already
ran), compares every stage's samples with the data and with the teacher's 35-evaluation ODE
samples, and writes WORKDIR/results.json, WORKDIR/results.md and WORKDIR/samples.png.
"""

import concurrent.futures as concurrent_futures
import json
import multiprocessing
import os
from collections.abc import Callable

import ml_collections
import numpy as np
from absl import logging
from matplotlib.figure import Figure

from consistency_jax.data import build_dataset, data_info
from consistency_jax.evaluation import run as evaluate
from consistency_jax.evaluation import samples, sliced_wasserstein
from consistency_jax.jobs import latents, train
from consistency_jax.training import checkpoint, compile_cache
from consistency_jax.training.objectives import needs_teacher, starts_from_teacher


def stage_configs(
    preset: dict[str, Callable[[], ml_collections.ConfigDict]], workdir: str, stages: tuple[str, ...]
) -> dict[str, ml_collections.ConfigDict]:
    """Each stage's config from `preset` (stage -> get_config, e.g. configs/presets.py), CD, LCM
    and the stages started from the teacher (ECT) pointed at this pipeline's teacher stage
    (`teacher_stage`) in workdir/<teacher>."""
    unknown = set(stages) - set(preset)
    if unknown:
        raise ValueError(f"Stages must come from {list(preset)}, got {stages}.")
    configs = {stage: preset[stage]() for stage in stages}
    if not teacher_stages(configs):
        raise ValueError(f"Stages must include a teacher (an EDM stage such as 'edm'), got {stages}.")
    latent = [s for s, c in configs.items() if is_latent(c)]
    if latent and not autoencoder_stages(configs):
        raise ValueError(f"The latent stages {latent} need the autoencoder stage ('autoencoder') in the stages.")
    for stage in latent:
        configs[stage].autoencoder.workdir = os.path.abspath(os.path.join(workdir, autoencoder_stages(configs)[0]))
    for stage, config in configs.items():
        if config.objective.name != "edm" and uses_teacher(config):
            config.objective.teacher_workdir = os.path.abspath(os.path.join(workdir, teacher_stage(configs, stage)))
    return configs


def is_latent(config: ml_collections.ConfigDict) -> bool:
    """Whether a stage works in an autoencoder's latent space."""
    return config.autoencoder.kind != "none"


def autoencoder_stages(configs: dict[str, ml_collections.ConfigDict]) -> list[str]:
    """The autoencoder stages: they train before everything else."""
    return [s for s, c in configs.items() if c.objective.name == "autoencoder"]


def teacher_stages(configs: dict[str, ml_collections.ConfigDict]) -> list[str]:
    """The EDM stages, in order: they train first."""
    return [s for s, c in configs.items() if c.objective.name == "edm"]


def teacher_stage(configs: dict[str, ml_collections.ConfigDict], stage: str) -> str:
    """The teacher of `stage`: the first EDM stage with its data.conditional and its space, pixels
    or latents (the teacher must share them, `load_teacher`), e.g. edm_cond for lcm, latent_edm for
    latent_cd; the stage itself for a teacher."""
    if configs[stage].objective.name == "edm":
        return stage
    conditional, latent = configs[stage].data.conditional, is_latent(configs[stage])
    match = [
        s for s in teacher_stages(configs)
        if configs[s].data.conditional == conditional and is_latent(configs[s]) == latent
    ]
    if not match:
        kind = ("a conditional" if conditional else "an unconditional") + (" latent" if latent else "")
        raise ValueError(
            f"Stage {stage!r} needs {kind} teacher stage (e.g. 'edm_cond', 'edm', 'latent_edm') in the stages."
        )
    return match[0]


def uses_teacher(config: ml_collections.ConfigDict) -> bool:
    """Whether a stage needs the teacher trained first: to distil it, or to start from it."""
    return needs_teacher(config.objective.name) or starts_from_teacher(config)


def load_samples(workdir: str, stage: str, sampler: str) -> np.ndarray:
    return np.load(os.path.join(workdir, stage, "samples", f"{sampler}.npz"))["samples"]


def reference_points(config: ml_collections.ConfigDict, num: int) -> np.ndarray:
    """`num` data points from the pipeline (a different seed from training's order)."""
    cfg = ml_collections.ConfigDict(config.data.to_dict())
    cfg.batch_size = min(num, data_info(cfg).num_examples)
    it, _ = build_dataset(cfg, seed=config.seed + 1)
    return np.asarray(next(it)["x"])


def vector_results(configs: dict, workdir: str) -> list[dict]:
    """Sliced W2 of each sampler's samples to the data and to the teacher's ODE samples."""
    first = teacher_stages(configs)[0]
    teacher_cfg = configs[first]
    teacher_name = samples.sampler_names(teacher_cfg)[0]
    teacher = load_samples(workdir, first, teacher_name)
    data = reference_points(teacher_cfg, len(teacher))
    floor = sliced_wasserstein(reference_points(teacher_cfg, 2 * len(teacher))[len(teacher):], data)
    rows = [{"stage": "data", "sampler": "second data sample", "nfe": 0, "sw_data": floor}]
    for stage, config in configs.items():
        for sampler in samples.sampler_names(config):
            x = load_samples(workdir, stage, sampler)
            row = {"stage": stage, "sampler": sampler, "nfe": samples.nfe(config, sampler),
                   "sw_data": sliced_wasserstein(x, data)}
            if stage != first:
                row["sw_teacher"] = sliced_wasserstein(x, teacher)
                # same seed, same x_T: the distance to the teacher's ODE solution from that x_T
                row["rmse_teacher_paired"] = float(np.sqrt(np.mean(np.sum((x - teacher) ** 2, axis=1))))
            rows.append(row)
    return rows


def image_results(configs: dict, evaluations: dict[str, dict]) -> list[dict]:
    """Each stage's --mode=eval figures under their names (on the digits: fd_digits, kd_digits,
    is_digits; class_accuracy for conditional stages) and the ratio of its Frechet distance to its
    teacher's ODE samples' (<frechet name>_vs_teacher; at the same guidance scale w where the
    teacher has it)."""
    rows = []
    for stage, config in configs.items():
        for sampler, figs in evaluations[stage]["samplers"].items():
            fd, score, kd = evaluate.FIGURE_NAMES[evaluations[stage]["feature_net"]]
            row = {"stage": stage, "sampler": sampler, "nfe": samples.nfe(config, sampler),
                   fd: figs[fd], kd: figs[kd], score: figs[score]}
            if figs.get("class_accuracy") is not None:
                row["class_accuracy"] = figs["class_accuracy"]
            rows.append(row)
    for row in rows:
        fd = evaluate.frechet_key(evaluations[row["stage"]]["feature_net"])
        teacher = teacher_stage(configs, row["stage"])
        w = samples.sampler_spec(configs[row["stage"]], row["sampler"])[1]
        candidates = [r for r in rows if r["stage"] == teacher]
        same_w = [r for r in candidates if samples.sampler_spec(configs[teacher], r["sampler"])[1] == w]
        row[f"{fd}_vs_teacher"] = row[fd] / (same_w or candidates)[0][fd]
    return rows


def results_table(rows: list[dict]) -> str:
    """A Markdown table of the rows (columns: every key any row has)."""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def plot_all(configs: dict, workdir: str, path: str) -> None:
    """All samplers' samples (and the data) in one figure: scatter plots or image grids."""
    sets = {"data": reference_points(configs[teacher_stages(configs)[0]], 2000)}
    for stage, config in configs.items():
        for sampler in samples.sampler_names(config):
            sets[f"{stage} {sampler}"] = load_samples(workdir, stage, sampler)[:2000]
    if sets["data"].ndim == 2:
        samples.plot_points(path, sets)
        return
    sets["data"] = samples.to_uint8(sets["data"])
    fig = Figure(figsize=(3 * len(sets), 3.3))
    axes = fig.subplots(1, len(sets), squeeze=False)
    for ax, (title, images) in zip(axes[0], sets.items()):
        ax.imshow(samples.image_grid(images[:64]).squeeze(), cmap="gray")
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


_worker_stage = ""  # the stage a spawned worker is serving; its log lines carry it


def _init_worker(cache_dir: str) -> None:
    """A spawned worker's logging, as absl's app.run sets it up in the first process, each line
    tagged with the stage it serves; and its compilation cache."""

    def tag(record) -> bool:
        record.msg = f"[{_worker_stage}] {record.msg}"
        return True

    logging.use_absl_handler()
    logging.set_verbosity(logging.INFO)
    checkpoint.hide_orbax_info()
    logging.get_absl_handler().addFilter(tag)
    compile_cache.enable_compilation_cache(cache_dir)


def _run_stage(
    config: ml_collections.ConfigDict, workdir: str, stage: str, train_it: bool, evaluate_it: bool
) -> dict | None:
    """Train and/or evaluate one stage in a worker (JAX does not survive a fork, hence spawned)."""
    global _worker_stage
    _worker_stage = stage
    if train_it:
        train.train(config, workdir)
    return evaluate_stage(config, workdir) if evaluate_it else None


def evaluate_stage(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """`evaluate.evaluate` of a stage, a latent one with its autoencoder."""
    return evaluate.evaluate(config, workdir, autoencoder=latents.load_autoencoder(config))


def run_stages(
    configs: dict[str, ml_collections.ConfigDict], workdir: str, concurrent: bool, cache_dir: str,
    evaluate_stages: bool = False,
) -> dict[str, dict]:
    """The teachers (EDM stages), then the stages that use them; with `concurrent`, the stages that learn from
    data alone (CT, iCT) train meanwhile in a second process (two small-network runs use a CPU's
    cores better than one), which then trains the stages started from the teacher (ECT) while
    the first distils it (CD). With `evaluate_stages`, each stage is also evaluated
    (`evaluate.evaluate`; stage -> its results is returned), the second process scoring its own
    stages and then the teacher (the 35-evaluation ODE, the longest evaluation) while the first
    trains CD."""
    autoencoders, teachers = autoencoder_stages(configs), teacher_stages(configs)
    later = [s for s in configs if s not in teachers and s not in autoencoders]
    # the second process takes every stage that does not distil the teacher
    second = [s for s in later if not needs_teacher(configs[s].objective.name)] if concurrent else []
    # from the start; latent stages once the autoencoder (the first stage) is trained
    background = [s for s in second if not uses_teacher(configs[s]) and not is_latent(configs[s])]
    after_teacher = [s for s in second if s not in background]  # once the teachers are trained
    in_order = [*autoencoders, *teachers, *[s for s in later if s not in second]]
    path = lambda stage: os.path.join(workdir, stage)
    pool = None
    if second:
        spawn = multiprocessing.get_context("spawn")
        pool = concurrent_futures.ProcessPoolExecutor(
            1, mp_context=spawn, initializer=_init_worker, initargs=(cache_dir,)
        )
    futures = {
        s: pool.submit(_run_stage, configs[s], path(s), s, True, evaluate_stages) for s in background
    }
    evaluations = {}
    try:
        for stage in in_order:
            logging.info("=== stage %s ===", stage)
            train.train(configs[stage], path(stage))
            if stage in teachers and pool:
                if stage == teachers[-1]:
                    for s in after_teacher:
                        futures[s] = pool.submit(_run_stage, configs[s], path(s), s, True, evaluate_stages)
                if evaluate_stages:
                    futures[stage] = pool.submit(_run_stage, configs[stage], path(stage), stage, False, True)
            elif evaluate_stages:
                evaluations[stage] = evaluate_stage(configs[stage], path(stage))
        for stage, future in futures.items():
            evaluations[stage] = future.result()  # a failure in the second process is raised here
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    return evaluations


def run_pipeline(
    preset: dict[str, Callable[[], ml_collections.ConfigDict]], workdir: str, stages: tuple[str, ...],
    concurrent: bool = False, cache_dir: str = "",
) -> list[dict]:
    """Train every stage (teacher first), then write results.json, results.md and samples.png;
    the rows of the table."""
    configs = stage_configs(preset, workdir, stages)
    for config in configs.values():
        data_info(config.data)  # every data set is there before any training starts
    is_vector = len(data_info(configs[teacher_stages(configs)[0]].data).shape) == 1
    evaluations = run_stages(configs, workdir, concurrent, cache_dir, evaluate_stages=not is_vector)
    rows = vector_results(configs, workdir) if is_vector else image_results(configs, evaluations)
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(rows, f, indent=2)
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write(results_table(rows))
    plot_all(configs, workdir, os.path.join(workdir, "samples.png"))
    return rows
