"""--mode=eval: samples from a run's latest checkpoint in resumable shards, then FID, IS and KID.

Files, under the run's workdir:
    eval/<sampler>/shard_00000.npz   uint8 NHWC `samples`, eval.shard_size each (the last may be
                                     shorter); each is written whole (temp file, then rename), so an
                                     interrupted eval resumes at the first missing shard
    eval/<sampler>/spec.json         what the shards were drawn with (checkpoint step, seed, sizes,
                                     sampler settings); shards drawn with another spec are redrawn
    eval/reference_stats_<net>.npz   `mu`, `sigma`, `features` (and `labels`) of the run's
                                     training split, computed on the first eval (without
                                     eval.reference_stats)
    eval/tradeoff.png                a guided conditional run under the digits classifier: the
                                     Frechet distance against the class accuracy over w
    eval/results.json                the figures of the latest eval
    eval/results.jsonl               {"step", "feature_net", "<sampler>/<figure>": value, ...}: one
                                     line per evaluated step, replaced when that step is evaluated
                                     again with the run's settings (also the TensorBoard scalars
                                     eval/<sampler>/<figure>). An eval whose seed, model, sample or
                                     eval keys differ from the run's config.json (a sampler's start
                                     or steps, say) has its own line, with "overrides": {key: value}
                                     naming them, so it never replaces the run's own figures; such
                                     an eval writes no TensorBoard scalars
    eval/step_<step>/...             the same shards and results.json for a checkpoint named by
                                     step (launch.py --eval_steps), so evaluating an older
                                     checkpoint never overwrites the latest one's files

Each sampling batch is split over every device of config.parallel's mesh, in every process;
process 0 writes the files.

Feature networks (eval.feature_net) and the names of their figures (FIGURE_NAMES):
    inception  the FID Inception-v3: `fid` on pool3, `is` on its 1008 logits (10 splits), `kid` on pool3.
    digits     the digits classifier (`load_digits_features`): the same three figures on its 64
               features and 10 logits, named for it: `fd_digits` (Frechet distance), `is_digits`
               (an IS-like class score, at most 10) and `kd_digits` (kernel distance). They compare
               digits runs with each other, never with Inception figures. Results written before
               the figures were named for their network call the digits figures fid, is and kid.

Conditional runs: shards also hold the `labels` each sample was drawn for (sample.labels). Under
the digits classifier, whose logits are the digit classes, the figures add `class_accuracy`
(the fraction of samples the classifier assigns to their label) and `fd_digits_per_class` (the
Frechet distance of each class's samples to that class's training images; needs reference
`labels`). Inception's 1008 logits are ImageNet classes, not CIFAR-10's, so under Inception no
class accuracy is reported (`class_accuracy` is None).
"""

import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterator

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from absl import logging
from matplotlib.figure import Figure

from consistency_jax.config import checks
from consistency_jax.config.overrides import flat_keys
from consistency_jax.config.schema import load_config
from consistency_jax.data import DataInfo, build_dataset, data_info, num_labels
from consistency_jax.data.latents import latent_info
from consistency_jax.errors import ConfigError
from consistency_jax.evaluation.metrics import (
    FeaturesFn,
    extract_features,
    feature_statistics,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    load_statistics,
)
from consistency_jax.evaluation.samples import (
    RECONSTRUCTION,
    batch_labels,
    image_grid,
    is_guided,
    make_sampler,
    reconstructions,
    sampler_names,
    sampler_params,
    sampler_spec,
    to_uint8,
)
from consistency_jax.networks import build_network
from consistency_jax.networks.autoencoder import Autoencoder
from consistency_jax.networks.pretrained import load_digits_features, load_fid_inception
from consistency_jax.training import checkpoint, files, parallel
from consistency_jax.training.log import format_duration, tensorboard
from consistency_jax.training.state import abstract_state

FEATURE_NETS: dict[str, Callable[[], FeaturesFn]] = {
    "inception": load_fid_inception,
    "digits": load_digits_features,
}
NET_CHANNELS = {"inception": 3, "digits": 1}  # the image channels each network takes
# each network's names for its Frechet distance, Inception-type score and kernel distance
FIGURE_NAMES = {"inception": ("fid", "is", "kid"), "digits": ("fd_digits", "is_digits", "kd_digits")}
EVALS_FILE = os.path.join("eval", "results.jsonl")
OVERRIDE_SECTIONS = ("seed", "model", "sample", "eval")  # the config an eval's figures depend on
FIGURE_NEUTRAL = ("sample.num_samples", "sample.batch_size", "eval.feature_batch_size")  # (eval.*'s)
DIGITS_SIDES = (8, 16)  # 1-channel images of these sizes are evaluated as digits under 'auto'
EVAL_KEY_FOLD = 3  # the eval key is fold_in(key(seed), 3): 0 init, 1 train, 2 samples
PROGRESS_EVERY_S = 10.0
Sampler = Callable[[object, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class Reference:
    """Statistics of the real images; `features` (for KID) is None if a file has only mu, sigma."""

    mu: np.ndarray
    sigma: np.ndarray
    features: np.ndarray | None
    labels: np.ndarray | None = None  # the class of each row of `features`, where known


# --- configuration ------------------------------------------------------------------------------


def validate_eval(config: ml_collections.ConfigDict, info: DataInfo) -> str:
    """Check config.eval against the data; the feature network's name, 'auto' resolved."""
    e = config.eval
    for key in ("num_samples", "batch_size", "shard_size", "feature_batch_size"):
        if not e[key] > 0:
            raise ConfigError(f"config.eval.{key} must be > 0, got {e[key]!r}.")
    if e.shard_size % e.batch_size:
        raise ConfigError(
            f"config.eval.shard_size={e.shard_size} must be a multiple of config.eval.batch_size="
            f"{e.batch_size}, so that every shard holds whole batches."
        )
    parallel.check_batch_size("eval.batch_size", e.batch_size, parallel.make_mesh(config.parallel))
    return feature_net_name(e.feature_net, config.data.name, info.shape)


def feature_net_name(name: str, data_name: str, shape: tuple[int, ...]) -> str:
    """'auto': 'digits' for the digits (or 1-channel 8x8, 16x16 images), 'inception' for RGB;
    an explicit name is checked against the images' channels."""
    if len(shape) != 3:
        raise ConfigError(
            f"--mode=eval evaluates image runs; {data_name!r} holds vectors of shape {shape}."
        )
    height, width, channels = shape
    if name == "auto":
        if data_name == "digits" or (channels == 1 and height == width and height in DIGITS_SIDES):
            return "digits"
        if channels == 3:
            return "inception"
        raise ConfigError(
            f"config.eval.feature_net='auto' has no network for {shape} images of {data_name!r}; "
            f"set it to one of {sorted(FEATURE_NETS)}."
        )
    if name not in FEATURE_NETS:
        raise ConfigError(
            f"config.eval.feature_net={name!r} is not known; choose 'auto' or one of "
            f"{sorted(FEATURE_NETS)}."
        )
    if NET_CHANNELS[name] != channels:
        raise ConfigError(
            f"config.eval.feature_net={name!r} takes {NET_CHANNELS[name]}-channel images; "
            f"{data_name!r} has {channels}."
        )
    return name


def sampler_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy of `config` whose samplers draw eval.batch_size samples per call."""
    config = config.copy_and_resolve_references()
    config.sample.batch_size = config.eval.batch_size
    return config


def shard_spec(config: ml_collections.ConfigDict, name: str, step: int) -> dict:
    """Everything a sampler's shards depend on, as JSON; num_samples only sets their count."""
    # a sampler's name carries its w and its steps: adding a scale keeps the others' shards
    skip = ("num_samples", "batch_size", "guidance", "lcm_steps")
    sample = {k: v for k, v in config.sample.items() if k not in skip}
    spec = {
        "sampler": name, "step": step, "seed": config.seed, "shard_size": config.eval.shard_size,
        "batch_size": config.eval.batch_size, "model": config.model.to_dict(), "sample": sample,
    }
    if config.autoencoder.kind != "none":  # a latent run's samples are decoded by it
        spec["autoencoder"] = config.autoencoder.to_dict()
    return json.loads(json.dumps(spec))


# --- files --------------------------------------------------------------------------------------


def _is_writer() -> bool:
    return jax.process_index() == 0


def _write_atomic(path: str, write: Callable) -> None:
    """`write(file)` to a temp file beside `path`, then rename it: `path` is whole or absent."""
    files.write_atomic(path, write, "evaluation results")


def _write_json(path: str, value: dict) -> None:
    _write_atomic(path, lambda f: f.write(json.dumps(value, indent=2).encode()))


def shard_path(directory: str, index: int) -> str:
    return os.path.join(directory, f"shard_{index:05d}.npz")


def write_shard(path: str, samples: np.ndarray, labels: np.ndarray | None = None) -> None:
    arrays = {"samples": samples} | ({"labels": labels} if labels is not None else {})
    _write_atomic(path, lambda f: np.savez(f, **arrays))


def read_shard(path: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """The shard's samples if it exists with exactly `shape`, else None (to be drawn)."""
    if not os.path.exists(path):
        return None
    with np.load(path) as data:
        samples = data["samples"]
    return samples if samples.shape == shape and samples.dtype == np.uint8 else None


def prepare_shard_dir(directory: str, spec: dict) -> None:
    """Create `directory` for shards of `spec`, deleting shards drawn with another spec."""
    spec_path = os.path.join(directory, "spec.json")
    if os.path.exists(spec_path):
        with open(spec_path) as f:
            if json.load(f) == spec:
                return
        stale = [n for n in os.listdir(directory) if n.startswith("shard_")]
        logging.warning(
            "%s: %d shards were drawn with another checkpoint or config; drawing them anew.",
            directory, len(stale),
        )
        for name in stale:
            os.remove(os.path.join(directory, name))
    os.makedirs(directory, exist_ok=True)
    _write_json(spec_path, spec)


def save_reference(path: str, reference: Reference) -> None:
    """`mu`, `sigma` (pytorch-fid's statistics format) and `features`."""
    arrays = {k: v for k, v in dataclasses.asdict(reference).items() if v is not None}
    _write_atomic(path, lambda f: np.savez(f, **arrays))


def load_reference(path: str) -> Reference:
    """mu and sigma from a statistics file (`load_statistics`); features from `features` or
    `pool_3`, and `labels`, where the file has them."""
    if not os.path.exists(path):
        raise ConfigError(
            f"No reference statistics at {path} (config.eval.reference_stats); fix the path, or "
            "set it to '' to compute them from the training split."
        )
    mu, sigma = load_statistics(path)
    with np.load(path) as data:
        key = next((k for k in ("features", "pool_3") if k in data), None)
        features = data[key] if key else None
        labels = data["labels"] if "labels" in data and features is not None else None
    return Reference(mu, sigma, features, labels)


# --- reference statistics -----------------------------------------------------------------------


def training_images(data_cfg: ml_collections.ConfigDict, batch_size: int) -> Iterator[dict]:
    """Every image of the run's training split once, unflipped, as batches {"x": uint8 NHWC
    (the pipeline's [-1, 1] floats mapped back as `to_uint8` maps samples), "label" where the
    data set has labels}."""
    cfg = data_cfg.copy_and_resolve_references()
    cfg.random_flip = False
    cfg.batch_size = min(batch_size, data_info(cfg).num_examples)
    it, info = build_dataset(cfg, seed=0)
    remaining = info.num_examples  # the first epoch of the shuffled, repeated stream
    while remaining > 0:
        batch = {k: np.asarray(v[:remaining]) for k, v in next(it).items()}
        batch["x"] = to_uint8(batch["x"])
        remaining -= len(batch["x"])
        yield batch


def reference_path(config: ml_collections.ConfigDict, net: str, workdir: str) -> str:
    """config.eval.reference_stats if set, else workdir/eval/reference_stats_<net>.npz."""
    default = os.path.join(workdir, "eval", f"reference_stats_{net}.npz")
    return config.eval.reference_stats or default


def reference_statistics(
    config: ml_collections.ConfigDict, net: str, features_fn: FeaturesFn, workdir: str
) -> Reference:
    """The statistics at `reference_path`; the workdir's are computed from the training split and
    saved there the first time."""
    path = reference_path(config, net, workdir)
    if config.eval.reference_stats or os.path.exists(path):
        return load_reference(path)
    logging.info("Reference statistics: %s features of %r.", net, config.data.name)
    batches = list(training_images(config.data, config.eval.feature_batch_size))
    features = extract_features((b["x"] for b in batches), features_fn)[0]
    labels = np.concatenate([b["label"] for b in batches]) if "label" in batches[0] else None
    reference = Reference(*feature_statistics(features), features, labels)
    if _is_writer():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        save_reference(path, reference)
    return reference


def check_reference(reference: Reference, features_fn: FeaturesFn, shape: tuple[int, ...]) -> None:
    """Fail before sampling when the reference has another dimension than the network's features."""
    probe = jax.ShapeDtypeStruct((1, *shape), np.uint8)
    dim = jax.eval_shape(features_fn, probe)[0].shape[-1]
    if reference.mu.shape != (dim,):
        raise ConfigError(
            f"The reference statistics have dimension {reference.mu.shape}, the feature network "
            f"gives {dim}: config.eval.reference_stats must come from config.eval.feature_net."
        )


# --- sampling -----------------------------------------------------------------------------------


def restore_ema_params(
    config: ml_collections.ConfigDict, workdir: str, model: nn.Module, info: DataInfo,
    step: int | None = None,
) -> tuple[object, int]:
    """(sampling-EMA parameters, step) of the run's checkpoint at `step` (default: the latest)."""
    manager = checkpoint.make_manager(workdir)
    try:
        state = checkpoint.restore(manager, abstract_state(config, model, info), step=step)
    finally:
        manager.close()
    return state.ema_params, int(state.step)


def steps_to_evaluate(workdir: str, spec: str) -> list[int | None]:
    """The checkpoints `spec` names: 'latest' -> [None], 'all' -> every kept step, '1000,2000' ->
    those steps, each checked to be kept before anything is drawn."""
    if spec == "latest":
        return [None]
    manager = checkpoint.make_manager(workdir)
    try:
        if spec == "all":
            steps = sorted(manager.all_steps())
            if not steps:
                raise checkpoint.CheckpointNotFoundError(f"No checkpoint in {manager.directory}.")
            return steps
        try:
            steps = [int(s) for s in spec.split(",")]
        except ValueError:
            raise ConfigError(
                f"--eval_steps={spec!r}: use latest, all or checkpoint steps such as 1000,2000."
            ) from None
        checkpoint.require_steps(manager, steps)
        return steps
    finally:
        manager.close()


def draw_batch(sampler: Sampler, params, key: jax.Array, index: int, labels: np.ndarray | None) -> np.ndarray:
    """Global batch `index` of `sampler` for these labels, as uint8: the one place the sampler is called."""
    return to_uint8(np.asarray(sampler(params, jax.random.fold_in(key, index), labels)))


class Progress:
    """Logs samples drawn, rate and ETA at most every PROGRESS_EVERY_S seconds, and at the end."""

    def __init__(self, name: str, total: int):
        self.name, self.total, self.done = name, total, 0
        self.start = self.last = time.perf_counter()

    def update(self, count: int) -> None:
        self.done += count
        now = time.perf_counter()
        if now - self.last < PROGRESS_EVERY_S and self.done < self.total:
            return
        self.last = now
        rate = self.done / max(now - self.start, 1e-9)
        logging.info(
            "eval %s: %d/%d samples drawn, %.1f samples/s, ETA %s", self.name, self.done,
            self.total, rate, format_duration((self.total - self.done) / rate),
        )


def sample_shards(
    sampler: Sampler, params, key: jax.Array, directory: str, config: ml_collections.ConfigDict,
    shape: tuple[int, ...], num_classes: int = 0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """All config.eval.num_samples samples (uint8) and their labels (None if unconditional): the
    shards in `directory` that are whole, the missing ones drawn (batch b with fold_in(key, b)
    and `samples.batch_labels`) and written."""
    e = config.eval
    labels_of = lambda b: batch_labels(config, num_classes, b, e.batch_size)
    sizes = [min(e.shard_size, e.num_samples - lo) for lo in range(0, e.num_samples, e.shard_size)]
    shards = [read_shard(shard_path(directory, k), (n, *shape)) for k, n in enumerate(sizes)]
    missing = [k for k, shard in enumerate(shards) if shard is None]
    name = os.path.basename(directory)
    logging.info("eval %s: %d of %d shards to draw.", name, len(missing), len(shards))
    num_batches = [-(-n // e.batch_size) for n in sizes]  # the last shard's may be fewer
    progress = Progress(name, sum(num_batches[k] for k in missing) * e.batch_size)
    for k in missing:
        first = k * (e.shard_size // e.batch_size)
        batches = []
        for b in range(first, first + num_batches[k]):
            batches.append(draw_batch(sampler, params, key, b, labels_of(b)))
            progress.update(len(batches[-1]))
        shards[k] = np.concatenate(batches)[: sizes[k]]
        if _is_writer():
            labels = labels_of_shard(config, num_classes, k, sizes[k])
            write_shard(shard_path(directory, k), shards[k], labels)
    labels = [labels_of_shard(config, num_classes, k, n) for k, n in enumerate(sizes)]
    return np.concatenate(shards), None if not num_classes else np.concatenate(labels)


def labels_of_shard(config: ml_collections.ConfigDict, num_classes: int, k: int, size: int) -> np.ndarray | None:
    """The labels shard k was drawn for: its samples' global indices through `batch_labels`."""
    if not num_classes:
        return None
    first = k * config.eval.shard_size // config.eval.batch_size
    n = -(-size // config.eval.batch_size)
    return np.concatenate([batch_labels(config, num_classes, b, config.eval.batch_size)
                           for b in range(first, first + n)])[:size]


# --- figures ------------------------------------------------------------------------------------


def frechet_key(net: str) -> str:
    """The name of feature network `net`'s Frechet distance (fid for Inception)."""
    return FIGURE_NAMES[net][0]


def figures(
    samples: np.ndarray, features_fn: FeaturesFn, reference: Reference, batch_size: int, net: str,
    labels: np.ndarray | None = None,
) -> dict:
    """The Frechet distance, IS (10 splits) and kernel distance of uint8 `samples` against
    `reference` on feature network `net`, under its FIGURE_NAMES; the kernel distance None
    without reference features. With `labels` (a conditional run) and a feature network whose
    logits are the data's classes (the digits classifier), also the class accuracy and, where the
    reference has labels, the Frechet distance of each class (`class_figures`)."""
    batches = (samples[i : i + batch_size] for i in range(0, len(samples), batch_size))
    features, logits = extract_features(batches, features_fn)
    fid = frechet_distance(*feature_statistics(features), reference.mu, reference.sigma)
    is_mean, is_std = inception_score(logits)
    kid, kid_std = (
        kernel_inception_distance(features, reference.features)
        if reference.features is not None
        else (None, None)
    )
    fd_name, is_name, kd_name = FIGURE_NAMES[net]
    out = {fd_name: fid, is_name: is_mean, f"{is_name}_std": is_std, kd_name: kid, f"{kd_name}_std": kid_std}
    if labels is not None:
        classifies = net == "digits"
        out |= class_figures(features, logits, labels, reference, fd_name) if classifies else {"class_accuracy": None}
    return out


def class_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """The fraction of samples whose classifier argmax is the label they were drawn for."""
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def class_figures(
    features: np.ndarray, logits: np.ndarray, labels: np.ndarray, reference: Reference, fd_name: str
) -> dict:
    """`class_accuracy`, and `<fd_name>_per_class` (class -> the Frechet distance of its samples to
    its reference images) where the reference has labels."""
    out = {"class_accuracy": class_accuracy(logits, labels)}
    if reference.labels is not None:
        out[f"{fd_name}_per_class"] = {
            str(c): frechet_distance(
                *feature_statistics(features[labels == c]),
                *feature_statistics(reference.features[reference.labels == c]),
            )
            for c in np.unique(labels)
        }
    return out


def eval_dir(workdir: str, step: int | None) -> str:
    """Where the eval of the checkpoint at `step` (None: the latest) writes its files."""
    return os.path.join(workdir, "eval", "" if step is None else f"step_{step:07d}")


def run_overrides(
    config: ml_collections.ConfigDict, workdir: str, sections: tuple[str, ...], neutral: tuple[str, ...] = ()
) -> dict:
    """The keys of `config` under `sections`, less `neutral`, that differ from the run's
    config.json, as {dotted key: value} (JSON values); {} for a run without one."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return {}
    saved, now = flat_keys(load_config(path)), flat_keys(config)
    keys = checks.differing_leaves(saved, now, sections)
    return json.loads(json.dumps({key: now[key] for key in sorted(keys) if key not in neutral}))


def eval_overrides(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """The seed, model, sample and eval keys of `config` that differ from the run's config.json
    and can change the figures."""
    return run_overrides(config, workdir, OVERRIDE_SECTIONS, FIGURE_NEUTRAL)


def results_record(results: dict) -> dict:
    """An eval's figures as one flat record: step, feature_net, (overrides,) <sampler>/<figure>."""
    overrides = {"overrides": results["overrides"]} if results.get("overrides") else {}
    return {"step": results["step"], "feature_net": results["feature_net"]} | overrides | {
        f"{sampler}/{key}": value
        for sampler, values in results["samplers"].items()
        for key, value in values.items()
        if value is not None and not isinstance(value, dict)  # per-class figures: results.json
    }


def write_results(workdir: str, directory: str, results: dict) -> bool:
    """directory/results.json; workdir/EVALS_FILE with this eval's record added, or replacing the
    record of the same step and overrides, sorted by step (the run's own settings first). Whether
    that record is new (not there with the same figures)."""
    _write_json(os.path.join(directory, "results.json"), results)
    record = results_record(results)
    which = lambda r: (r["step"], "overrides" in r, json.dumps(r.get("overrides"), sort_keys=True))
    path = os.path.join(workdir, EVALS_FILE)
    records = {}
    if os.path.exists(path):
        with open(path) as f:
            records = {which(r): r for r in map(json.loads, f.read().splitlines())}
    if records.get(which(record)) == record:
        return False
    records[which(record)] = record
    text = "".join(json.dumps(records[k]) + "\n" for k in sorted(records))
    _write_atomic(path, lambda f: f.write(text.encode()))
    return True


def board_results(workdir: str, results: dict, grids: dict[str, np.ndarray]) -> None:
    """The figures as TensorBoard scalars eval/<sampler>/<figure> and each sampler's grid of
    samples as image eval/<sampler>, at the checkpoint's step."""
    board = tensorboard(workdir)
    if board is None:
        return
    step = results["step"]
    for key, value in results_record(results).items():
        if key not in ("step", "feature_net"):
            board.add_scalar(f"eval/{key}", value, step)
    for name, grid in grids.items():
        board.add_image(f"eval/{name}", grid, step, dataformats="HWC")
    board.close()


def evaluate(
    config: ml_collections.ConfigDict, workdir: str, step: int | None = None,
    autoencoder: Autoencoder | None = None,
) -> dict:
    """Sample every configured sampler from the run's checkpoint at `step` (default: the latest;
    resuming at the first missing shard), compute FID, IS and KID, write them (see the module
    docstring); the results.

    A latent run (`autoencoder`: config.autoencoder's) samples latents and is evaluated on their
    decoded images. An autoencoder run is evaluated on its reconstructions of every training
    image (sampler 'reconstruction'): the floor of the runs in its latent space.

    Everything that can fail without compute (config, data, feature-network weights, reference
    statistics file, checkpoint) is checked before sampling.
    """
    checks.validate(config)
    info = data_info(config.data)
    net = validate_eval(config, info)
    num_classes = num_labels(config.data, info)
    checks.check_labels_fit(config, num_classes)
    features_fn = FEATURE_NETS[net]()
    model = build_network(config.network, num_classes)
    directory = eval_dir(workdir, step)
    network_info = latent_info(info, autoencoder, config.data.name)  # what the network sees
    params, step = restore_ema_params(config, workdir, model, network_info, step)
    reference = reference_statistics(config, net, features_fn, workdir)
    check_reference(reference, features_fn, info.shape)
    key = jax.random.fold_in(jax.random.key(config.seed), EVAL_KEY_FOLD)
    scfg = sampler_config(config)
    mesh = parallel.make_mesh(config.parallel)
    results = {
        "step": step, "feature_net": net, "num_samples": config.eval.num_samples,
        "reference": reference_path(config, net, workdir),
        "overrides": eval_overrides(config, workdir), "samplers": {},
    }
    if results["overrides"]:
        logging.info(
            "eval under settings other than the run's config.json, %s: recorded in %s beside the "
            "run's own figures.", results["overrides"], EVALS_FILE,
        )
    grids = {}
    for name in sampler_names(config):
        if name == RECONSTRUCTION:
            samples, labels = reconstructed_training_images(config, model, params, info), None
            results["num_samples"] = len(samples)
        else:
            shards = os.path.join(directory, name)
            if _is_writer():
                prepare_shard_dir(shards, shard_spec(config, name, step))
            sampler = parallel.sharded_sampler(make_sampler(scfg, model, name, network_info.shape, autoencoder), mesh)
            samples, labels = sample_shards(
                sampler, sampler_params(params, autoencoder), key, shards, config, info.shape, num_classes
            )
        grids[name] = np.repeat(image_grid(samples[:64]), 3 // info.shape[-1], axis=-1)
        results["samplers"][name] = figures(
            samples, features_fn, reference, config.eval.feature_batch_size, net, labels
        )
        logging.info("eval %s at step %d: %s", name, step, results["samplers"][name])
    if _is_writer() and write_results(workdir, directory, results) and not results["overrides"]:
        board_results(workdir, results, grids)
    if _is_writer() and is_guided(config) and num_classes and net == "digits":
        path = os.path.join(directory, "tradeoff.png")
        _write_atomic(path, lambda f: tradeoff_plot(f, config, results["samplers"]))
    return results


def reconstructed_training_images(
    config: ml_collections.ConfigDict, model: nn.Module, params, info: DataInfo
) -> np.ndarray:
    """An autoencoder run's decode(encode(x)) of every training image, as uint8."""
    return to_uint8(reconstructions(config, model, params, info, info.num_examples, config.eval.batch_size)[2])


def tradeoff_plot(path, config: ml_collections.ConfigDict, figs: dict[str, dict]) -> None:
    """The Frechet distance against the class accuracy over the guidance scales w, one line per
    base sampler (the teacher's ODE, each student step count), each point marked with its w."""
    fig = Figure(figsize=(5, 4))
    ax = fig.subplots()
    lines: dict[str, list[tuple[float, float, float]]] = {}
    for name, values in figs.items():
        base, w = sampler_spec(config, name)
        lines.setdefault(base, []).append((values["class_accuracy"], values["fd_digits"], w))
    for base, points in lines.items():
        acc, fid, ws = zip(*points)
        ax.plot(acc, fid, "o-", label=base)
        for a, d, w in points:
            ax.annotate(f"w={w:g}", (a, d), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("class accuracy (digits classifier)")
    ax.set_ylabel("Frechet distance (digits classifier)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
