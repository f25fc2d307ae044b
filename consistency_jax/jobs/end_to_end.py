"""The whole pipeline on an embedded data set: teacher, CD from it, CT/iCT from data, then a table.

`run_pipeline(preset, workdir, stages)` trains each stage in WORKDIR/<stage> (resuming any that already
ran), compares every stage's samples with the data and with the teacher's 35-evaluation ODE
samples, and writes WORKDIR/results.json, WORKDIR/results.md and WORKDIR/samples.png.

With several training seeds (`seeds=(0, 1, 2)`), the teachers and the autoencoder train once (the
shared stages, `shared_stages`); every other stage trains once per seed K (config.seed = K: its
initialisation, data order, noise and sampling key), seed 0 in WORKDIR/<stage>, seed K in
WORKDIR/seed<K>/<stage>. results.json then holds every seed's rows (a 'seed' key) and results.md
the mean and range over the seeds (`seed_summary`) above them.
"""

import concurrent.futures as concurrent_futures
import copy
import json
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable

import ml_collections
import numpy as np
from absl import logging
from matplotlib.figure import Figure

from consistency_jax.data import build_dataset, data_info
from consistency_jax.errors import ConfigError
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
        raise ConfigError(f"Stages must come from {list(preset)}, got {stages}.")
    configs = {stage: preset[stage]() for stage in stages}
    if not teacher_stages(configs):
        raise ConfigError(f"Stages must include a teacher (an EDM stage such as 'edm'), got {stages}.")
    latent = [s for s, c in configs.items() if is_latent(c)]
    if latent and not autoencoder_stages(configs):
        raise ConfigError(f"The latent stages {latent} need the autoencoder stage ('autoencoder') in the stages.")
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
    latent_cd, latent_edm_cond for latent_lcm; the stage itself for a teacher."""
    if configs[stage].objective.name == "edm":
        return stage
    conditional, latent = configs[stage].data.conditional, is_latent(configs[stage])
    match = [
        s for s in teacher_stages(configs)
        if configs[s].data.conditional == conditional and is_latent(configs[s]) == latent
    ]
    if not match:
        kind = ("a conditional" if conditional else "an unconditional") + (" latent" if latent else "")
        raise ConfigError(
            f"Stage {stage!r} needs {kind} teacher stage (e.g. 'edm_cond', 'edm', 'latent_edm', "
            "'latent_edm_cond') in the stages."
        )
    return match[0]


def uses_teacher(config: ml_collections.ConfigDict) -> bool:
    """Whether a stage needs the teacher trained first: to distil it, or to start from it."""
    return needs_teacher(config.objective.name) or starts_from_teacher(config)


def shared_stages(configs: dict[str, ml_collections.ConfigDict]) -> list[str]:
    """The stages every training seed shares, trained once: the autoencoders and the teachers."""
    return [*autoencoder_stages(configs), *teacher_stages(configs)]


def with_seed(configs: dict[str, ml_collections.ConfigDict], seed: int) -> dict[str, ml_collections.ConfigDict]:
    """Copies of `configs` with config.seed = `seed` for every stage but the shared ones."""
    shared = shared_stages(configs)
    seeded = {stage: copy.deepcopy(config) for stage, config in configs.items()}
    for stage, config in seeded.items():
        if stage not in shared:
            config.seed = seed
    return seeded


def stage_dir(configs: dict[str, ml_collections.ConfigDict], workdir: str, stage: str, seed: int = 0) -> str:
    """Where `stage` runs: workdir/<stage>, or workdir/seed<K>/<stage> for a training seed K != 0
    of a stage that is not shared."""
    if seed == 0 or stage in shared_stages(configs):
        return os.path.join(workdir, stage)
    return os.path.join(workdir, f"seed{seed}", stage)


def load_samples(stage_workdir: str, sampler: str) -> np.ndarray:
    return np.load(os.path.join(stage_workdir, "samples", f"{sampler}.npz"))["samples"]


def reference_points(config: ml_collections.ConfigDict, num: int) -> np.ndarray:
    """`num` data points from the pipeline (a different seed from training's order)."""
    cfg = ml_collections.ConfigDict(config.data.to_dict())
    cfg.batch_size = min(num, data_info(cfg).num_examples)
    it, _ = build_dataset(cfg, seed=config.seed + 1)
    return np.asarray(next(it)["x"])


def vector_results(configs: dict, workdir: str, seed: int = 0) -> list[dict]:
    """Sliced W2 of each sampler's samples to the data and to the teacher's ODE samples (the runs
    of training seed `seed`)."""
    first = teacher_stages(configs)[0]
    teacher_cfg = configs[first]
    teacher_name = samples.sampler_names(teacher_cfg)[0]
    teacher = load_samples(stage_dir(configs, workdir, first), teacher_name)
    data = reference_points(teacher_cfg, len(teacher))
    floor = sliced_wasserstein(reference_points(teacher_cfg, 2 * len(teacher))[len(teacher):], data)
    rows = [{"stage": "data", "sampler": "second data sample", "nfe": 0, "sw_data": floor}]
    for stage, config in configs.items():
        for sampler in samples.sampler_names(config):
            x = load_samples(stage_dir(configs, workdir, stage, seed), sampler)
            row = {"stage": stage, "sampler": sampler, "nfe": samples.nfe(config, sampler),
                   "sw_data": sliced_wasserstein(x, data)}
            if stage != first:
                row["sw_teacher"] = sliced_wasserstein(x, teacher)
                if config.seed == teacher_cfg.seed:
                    # same sampling seed, same x_T: the distance to the teacher's ODE solution from
                    # that x_T (another training seed draws other x_T, so it has no such distance)
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


def seed_summary(rows: list[dict]) -> list[dict]:
    """One row per (stage, sampler) of the per-seed `rows`: 'seeds' (which), and for each figure
    its mean over them and its range (<figure>_range: [min, max])."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["stage"], row["sampler"]), []).append(row)
    summary = []
    for (stage, sampler), group in groups.items():
        out = {"stage": stage, "sampler": sampler, "nfe": group[0]["nfe"], "seeds": [r["seed"] for r in group]}
        for key in dict.fromkeys(k for r in group for k in r if k not in out and k != "seed"):
            values = [r[key] for r in group if key in r]
            out[key] = float(np.mean(values))
            out[f"{key}_range"] = [float(min(values)), float(max(values))]
        summary.append(out)
    return summary


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list):  # a range [min, max], or the seeds
        if all(isinstance(v, float) for v in value):
            return f"[{', '.join(map(_cell, value))}]"
        return ",".join(map(str, value))
    return str(value)


def results_table(rows: list[dict]) -> str:
    """A Markdown table of the rows (columns: every key any row has)."""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def plot_all(configs: dict, workdir: str, path: str, seed: int = 0) -> None:
    """All samplers' samples (and the data) in one figure: scatter plots or image grids (the runs
    of training seed `seed`)."""
    sets = {"data": reference_points(configs[teacher_stages(configs)[0]], 2000)}
    for stage, config in configs.items():
        for sampler in samples.sampler_names(config):
            sets[f"{stage} {sampler}"] = load_samples(stage_dir(configs, workdir, stage, seed), sampler)[:2000]
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
_worker_busy = False  # whether a stage is running in this worker
_worker_preempted: checkpoint.Preempted | None = None  # set once a stage in this worker stopped on a signal


def _stop_with_parent(parent: int, poll_s: float = 0.5) -> None:
    """Once `parent` (the pipeline) has exited without stopping this worker (killed, or SIGTERM
    outside a training loop), send this worker SIGTERM, as a scheduler would: a stage in
    training saves a checkpoint and stops, an idle worker or an evaluation (resumable) ends
    at once. Then exit once no stage runs: a worker of a dead pool would otherwise wait for
    work forever, holding its stage's lock."""
    while os.getppid() == parent:
        time.sleep(poll_s)
    logging.warning("The pipeline process %d is gone: stopping this worker.", parent)
    os.kill(os.getpid(), signal.SIGTERM)
    while _worker_busy:
        time.sleep(poll_s)
    os._exit(128 + signal.SIGTERM)


def _init_worker(cache_dir: str) -> None:
    """A spawned worker's logging, as absl's app.run sets it up in the first process, each line
    tagged with the stage it serves; its compilation cache; and a watch on the pipeline
    process (`_stop_with_parent`)."""

    def tag(record) -> bool:
        record.msg = f"[{_worker_stage}] {record.msg}"
        return True

    logging.use_absl_handler()
    logging.set_verbosity(logging.INFO)
    checkpoint.hide_orbax_info()
    logging.get_absl_handler().addFilter(tag)
    compile_cache.enable_compilation_cache(cache_dir)
    threading.Thread(target=_stop_with_parent, args=(os.getppid(),), daemon=True).start()


def _run_stage(
    config: ml_collections.ConfigDict, workdir: str, stage: str, train_it: bool, evaluate_it: bool
) -> dict | None:
    """Train and/or evaluate one stage in a worker (JAX does not survive a fork, hence spawned).
    Once a stage stopped on a signal (checkpoint.Preempted), the stages queued after it are not
    started: each raises the same Preempted (a rerun resumes them all)."""
    global _worker_stage, _worker_busy, _worker_preempted
    if _worker_preempted is not None:
        raise _worker_preempted
    _worker_stage, _worker_busy = stage, True
    try:
        if train_it:
            train.train(config, workdir)
        return evaluate_stage(config, workdir) if evaluate_it else None
    except checkpoint.Preempted as e:
        _worker_preempted = e
        raise
    finally:
        _worker_busy = False


def evaluate_stage(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """`evaluate.evaluate` of a stage, a latent one with its autoencoder."""
    return evaluate.evaluate(config, workdir, autoencoder=latents.load_autoencoder(config))


def run_stages(
    configs: dict[str, ml_collections.ConfigDict], workdir: str, concurrent: bool, cache_dir: str,
    evaluate_stages: bool = False, seed: int = 0, evaluated: dict[str, dict] | None = None,
) -> dict[str, dict]:
    """The teachers (EDM stages), then the stages that use them; with `concurrent`, the stages that learn from
    data alone (CT, iCT) train meanwhile in a second process (two small-network runs use a CPU's
    cores better than one), which then trains the stages started from the teacher (ECT) while
    the first distils it (CD). With `evaluate_stages`, each stage is also evaluated
    (`evaluate.evaluate`; stage -> its results is returned), the second process scoring its own
    stages and then the teacher (the 35-evaluation ODE, the longest evaluation) while the first
    trains CD. The stages of training seed `seed` run in `stage_dir`'s directories; those in
    `evaluated` (stage -> its results) are not evaluated again."""
    evaluated = evaluated or {}
    autoencoders, teachers = autoencoder_stages(configs), teacher_stages(configs)
    later = [s for s in configs if s not in teachers and s not in autoencoders]
    # the second process takes every stage that does not distil the teacher
    second = [s for s in later if not needs_teacher(configs[s].objective.name)] if concurrent else []
    # from the start; latent stages once the autoencoder (the first stage) is trained
    background = [s for s in second if not uses_teacher(configs[s]) and not is_latent(configs[s])]
    after_teacher = [s for s in second if s not in background]  # once the teachers are trained
    in_order = [*autoencoders, *teachers, *[s for s in later if s not in second]]
    path = lambda stage: stage_dir(configs, workdir, stage, seed)
    scores = lambda stage: evaluate_stages and stage not in evaluated
    pool = None
    if second:
        spawn = multiprocessing.get_context("spawn")
        pool = concurrent_futures.ProcessPoolExecutor(
            1, mp_context=spawn, initializer=_init_worker, initargs=(cache_dir,)
        )
    futures = {
        s: pool.submit(_run_stage, configs[s], path(s), s, True, scores(s)) for s in background
    }
    evaluations = dict(evaluated)
    try:
        for stage in in_order:
            logging.info("=== stage %s ===", stage)
            train.train(configs[stage], path(stage))
            if stage in teachers and pool:
                if stage == teachers[-1]:
                    for s in after_teacher:
                        futures[s] = pool.submit(_run_stage, configs[s], path(s), s, True, scores(s))
                if scores(stage):
                    futures[stage] = pool.submit(_run_stage, configs[stage], path(stage), stage, False, True)
            elif scores(stage):
                evaluations[stage] = evaluate_stage(configs[stage], path(stage))
        for stage, future in futures.items():
            result = future.result()  # a failure in the second process is raised here
            if result is not None:
                evaluations[stage] = result
    except BaseException:  # a signal, an interrupt or a failure: the second process saves and stops too
        for worker in multiprocessing.active_children():
            worker.terminate()
        raise
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    return evaluations


def run_pipeline(
    preset: dict[str, Callable[[], ml_collections.ConfigDict]], workdir: str, stages: tuple[str, ...],
    concurrent: bool = False, cache_dir: str = "", seeds: tuple[int, ...] = (0,),
) -> list[dict]:
    """Train every stage (teacher first) for each training seed, then write results.json,
    results.md and samples.png (the first seed's); the rows of the table (with several seeds: the
    summary over them, `seed_summary`)."""
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ConfigError(f"Seeds must be distinct non-negative integers, got {seeds}.")
    configs = stage_configs(preset, workdir, stages)
    for config in configs.values():
        data_info(config.data)  # every data set is there before any training starts
    is_vector = len(data_info(configs[teacher_stages(configs)[0]].data).shape) == 1
    students = [s for s in configs if s not in shared_stages(configs)]
    teacher_seed = configs[teacher_stages(configs)[0]].seed  # the shared stages' and the data's
    rows, evaluations = [], {}
    for i, seed in enumerate(seeds):
        seeded = with_seed(configs, seed)
        shared = {s: e for s, e in evaluations.items() if s not in students}
        evaluations = run_stages(
            seeded, workdir, concurrent, cache_dir, evaluate_stages=not is_vector, seed=seed, evaluated=shared
        )
        seed_rows = vector_results(seeded, workdir, seed) if is_vector else image_results(seeded, evaluations)
        if len(seeds) == 1:
            rows = seed_rows
        else:  # the shared stages' rows (and the data's) once
            rows += [
                {**r, "seed": seed if r["stage"] in students else teacher_seed}
                for r in seed_rows if i == 0 or r["stage"] in students
            ]
    table = results_table(rows)
    if len(seeds) > 1:
        summary = seed_summary(rows)
        table = f"Mean and range over training seeds {list(seeds)}:\n\n{results_table(summary)}\nEach seed:\n\n{table}"
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(rows, f, indent=2)
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write(table)
    plot_all(with_seed(configs, seeds[0]), workdir, os.path.join(workdir, "samples.png"), seeds[0])
    return summary if len(seeds) > 1 else rows
