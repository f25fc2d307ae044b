"""Validation of a resolved config before any compute, with messages naming the key and the fix."""

import json
import math
import os

import ml_collections
from absl import logging

from consistency_jax.config.overrides import flat_keys
from consistency_jax.config.schema import load_config
from consistency_jax.core import ode
from consistency_jax.core.losses import WEIGHTINGS
from consistency_jax.core.parametrization import TRIGFLOW_NETWORKS, trigflow_time
from consistency_jax.core.sampling import (
    TEACHER_SOLVERS,
    check_multistep_sigmas,
    check_sample_labels,
    check_trigflow_steps,
)
from consistency_jax.errors import ConfigError
from consistency_jax.networks import COMPUTE_DTYPES, NETWORKS
from consistency_jax.networks.autoencoder import KINDS as AUTOENCODER_KINDS
from consistency_jax.training.lock import LOCK_NAME
from consistency_jax.training.objectives import DISTANCES, OBJECTIVES, needs_teacher, starts_from_teacher
from consistency_jax.training.state import OPTIMIZERS

NAN_POLICIES = ("stop", "skip")
# Keys and sections that change what a run computes: a resumed run must agree with its start on
# them, unless told otherwise (train(..., allow_config_change=True), launch.py --allow_config_change).
RESUME_KEYS = ("seed", "data", "autoencoder", "model", "network", "objective")
# Where things are, or how the network computes, not what it is: a run may resume with these changed.
EXECUTION_KEYS = (
    "compute_dtype", "remat", "tfds_data_dir", "teacher_workdir", "path", "cache_dir", "encode_batch_size",
)

# Every numeric key with a range, as an interval: '[' and ']' include the bound, '(' and ')'
# exclude it, 'inf' has none. Keys that matter for some objectives only are checked for all.
RANGES = (
    ("seed", "[0, inf)"),
    ("data.batch_size", "[1, inf)"), ("data.num_points", "[1, inf)"), ("data.image_size", "[0, inf)"),
    ("autoencoder.scaling_factor", "[0, inf)"), ("autoencoder.encode_batch_size", "[1, inf)"),
    ("model.sigma_data", "(0, inf)"), ("model.sigma_min", "(0, inf)"), ("model.sigma_max", "(0, inf)"),
    ("model.rho", "(0, inf)"),
    ("network.dropout", "[0, 1)"), ("network.fourier_scale", "(0, inf)"),
    ("network.mlp.hidden", "[1, inf)"), ("network.mlp.depth", "[0, inf)"), ("network.mlp.emb_dim", "[1, inf)"),
    ("network.unet.model_channels", "[1, inf)"), ("network.unet.channel_mult_emb", "[1, inf)"),
    ("network.unet.num_blocks", "[1, inf)"), ("network.autoencoder.channels", "[1, inf)"),
    ("network.autoencoder.latent_channels", "[1, inf)"), ("network.autoencoder.downsample", "[1, inf)"),
    ("objective.p_std", "(0, inf)"), ("objective.target_ema", "[0, 1)"),
    ("objective.mu0", "[0, 1)"), ("objective.teacher_substeps", "[1, inf)"),
    ("objective.label_dropout", "[0, 1)"), ("objective.guidance_min", "[0, inf)"),
    ("objective.guidance_max", "[0, inf)"), ("objective.skip", "[1, inf)"),
    ("optim.lr", "(0, inf)"), ("optim.b1", "[0, 1)"), ("optim.b2", "[0, 1)"), ("optim.eps", "(0, inf)"),
    ("optim.weight_decay", "[0, inf)"), ("optim.warmup_steps", "[0, inf)"), ("optim.decay_steps", "[0, inf)"),
    ("optim.grad_clip", "[0, inf)"),
    ("train.num_steps", "[1, inf)"), ("train.ema_rate", "[0, 1)"), ("train.log_every", "[1, inf)"),
    ("train.ckpt_every", "[1, inf)"), ("train.ckpt_keep", "[1, inf)"), ("train.ckpt_keep_every", "[0, inf)"),
    ("train.sample_every", "[0, inf)"), ("train.steps_per_dispatch", "[1, inf)"),
    ("parallel.fsdp_min_size", "[0, inf)"),
    ("sample.num_samples", "[1, inf)"), ("sample.batch_size", "[1, inf)"), ("sample.teacher_steps", "[2, inf)"),
    ("sample.s_churn", "[0, inf)"), ("sample.s_noise", "(0, inf)"),
    ("eval.num_samples", "[1, inf)"), ("eval.batch_size", "[1, inf)"), ("eval.feature_batch_size", "[1, inf)"),
    ("eval.shard_size", "[1, inf)"),
    ("edit.num_images", "[1, inf)"), ("edit.num_steps", "[1, inf)"), ("edit.factor", "[1, inf)"),
    ("edit.sigma", "(0, inf)"), ("edit.num_alphas", "[2, inf)"),
)


def _choice(key: str, value: str, choices) -> None:
    if value not in choices:
        raise ConfigError(f"config.{key}={value!r} is not known; choose one of {sorted(choices)}.")


def _positive(key: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"config.{key} must be > 0, got {value!r}.")


def _non_negative(key: str, value: float) -> None:
    if not value >= 0:
        raise ConfigError(f"config.{key} must be >= 0, got {value!r}.")


def _in_interval(value: float, interval: str) -> bool:
    """Whether `value` lies in an interval written as in RANGES; NaN never does."""
    low, high = (float(b) for b in interval[1:-1].split(","))
    above = value >= low if interval[0] == "[" else value > low
    below = value <= high if interval[-1] == "]" else value < high
    return isinstance(value, int | float) and not math.isnan(value) and above and below


def check_ranges(config: ml_collections.ConfigDict) -> None:
    """Raise ConfigError naming the first key of RANGES outside its interval, with the interval."""
    for key, interval in RANGES:
        value = _lookup(config, key)
        if not _in_interval(value, interval):
            low, high = interval[1:-1].split(", ")
            allowed = f"in {interval}" if high != "inf" else (">= " if interval[0] == "[" else "> ") + low
            raise ConfigError(f"config.{key} must be {allowed}, got {value!r}: set --config.{key} to such a value.")
    mult = tuple(config.network.unet.channel_mult)
    if not mult or not all(isinstance(m, int) and m >= 1 for m in mult):
        raise ConfigError(
            f"config.network.unet.channel_mult={mult} must list one integer >= 1 per resolution, "
            "e.g. (2, 2, 2)."
        )
    huber_c = config.objective.huber_c
    if not (huber_c == -1 or huber_c >= 0):
        raise ConfigError(
            f"config.objective.huber_c must be >= 0 (the pseudo-Huber c; 0: the L2 norm) or -1 "
            f"(iCT's 0.00054 sqrt(d)), got {huber_c!r}."
        )
    fsdp = config.parallel.fsdp
    if fsdp != -1 and not fsdp >= 1:
        raise ConfigError(f"config.parallel.fsdp={fsdp} must be >= 1, or -1 for all devices.")


def validate(config: ml_collections.ConfigDict) -> None:
    """Raise ConfigError naming the first key whose value cannot work."""
    _choice("objective.name", config.objective.name, OBJECTIVES)
    _choice("network.name", config.network.name, NETWORKS)
    _choice("objective.distance", config.objective.distance, DISTANCES)
    _choice("objective.weighting", config.objective.weighting, WEIGHTINGS)
    _choice("objective.solver", config.objective.solver, ode.STEPS)
    _choice("sample.teacher_solver", config.sample.teacher_solver, TEACHER_SOLVERS)
    _choice("optim.name", config.optim.name, OPTIMIZERS)
    _choice("train.nan_policy", config.train.nan_policy, NAN_POLICIES)
    _choice("network.compute_dtype", config.network.compute_dtype, COMPUTE_DTYPES)
    _choice("autoencoder.kind", config.autoencoder.kind, AUTOENCODER_KINDS)
    check_ranges(config)
    _check_autoencoder(config)
    m = config.model
    if not m.sigma_min < m.sigma_max:
        raise ConfigError(f"config.model.sigma_min={m.sigma_min} must be < sigma_max={m.sigma_max}.")
    _choice("model.scm_network", m.scm_network, TRIGFLOW_NETWORKS)
    if config.network.unet.double_norm and config.network.name not in ("ddpmpp", "ncsnpp"):
        raise ConfigError(
            f"config.network.unet.double_norm applies to the ddpmpp and ncsnpp U-Nets, not "
            f"network.name={config.network.name!r}: set it to False."
        )
    if m.scm_network != "edm" and config.objective.name not in ("edm", "sct", "scd"):
        raise ConfigError(
            f"config.model.scm_network={m.scm_network!r} applies to EDM teachers and sCT/sCD; "
            f"{config.objective.name!r} takes EDM's time input: set it to 'edm'."
        )
    _check_dmd(config.objective)
    if config.objective.name in ("sct", "scd"):
        _check_scm(config)
    elif config.objective.name == "meanflow":
        _check_meanflow(config)
    elif needs_teacher(config.objective.name):
        if config.objective.num_scales < 2:
            raise ConfigError("config.objective.num_scales (N) must be >= 2 for CD.")
        if not config.objective.teacher_workdir:
            raise ConfigError(
                "CD needs a trained teacher: set config.objective.teacher_workdir to the workdir of "
                "an EDM run (e.g. --config.objective.teacher_workdir=runs/edm)."
            )
    if starts_from_teacher(config) and not config.objective.teacher_workdir:
        raise ConfigError(
            f"objective.init_from_teacher=True: this {config.objective.name} run starts from a trained "
            "EDM teacher, and none is named. Add --config.objective.teacher_workdir=DIR (the workdir "
            "of a finished EDM run, e.g. one of configs/*_edm.py), or set "
            "--config.objective.init_from_teacher=False to start from fresh parameters."
        )
    if config.objective.name == "lcm":
        _check_lcm(config)
    _check_guidance(config)
    if config.objective.name == "ect":
        if config.objective.ect_q <= 1:
            raise ConfigError(
                f"config.objective.ect_q must be > 1 (the gap t - r shrinks by it at each stage), "
                f"got {config.objective.ect_q}."
            )
        _non_negative("objective.ect_k", config.objective.ect_k)
        _non_negative("objective.ect_stage_steps", config.objective.ect_stage_steps)
    if config.objective.name in ("ct", "ict") and not 1 <= config.objective.s0 <= config.objective.s1:
        raise ConfigError("config.objective.s0 and s1 must satisfy 1 <= s0 <= s1.")
    _check_churn(config.sample)
    try:
        check_multistep_sigmas((m.sigma_max, *config.sample.multistep_sigmas), m.sigma_min, m.sigma_max)
    except ValueError as e:
        raise ConfigError(f"config.sample.multistep_sigmas: {e}") from None
    _check_steps_per_dispatch(config.train)


def _check_autoencoder(config: ml_collections.ConfigDict) -> None:
    """An autoencoder run (network and objective both 'autoencoder', on images), and a latent run
    (config.autoencoder.kind other than 'none': an autoencoder named, no flips)."""
    a, trains_one = config.autoencoder, config.objective.name == "autoencoder"
    if trains_one != (config.network.name == "autoencoder"):
        raise ConfigError(
            f"config.objective.name={config.objective.name!r} with network.name={config.network.name!r}: "
            "an autoencoder run sets both to 'autoencoder' (configs/digits_autoencoder.py); other "
            "objectives train a denoising network."
        )
    down = config.network.autoencoder.downsample
    if trains_one and down & (down - 1):
        raise ConfigError(f"config.network.autoencoder.downsample={down} must be a power of 2 (1, 2, 4, ...).")
    if trains_one and a.kind != "none":
        raise ConfigError(
            f"config.autoencoder.kind={a.kind!r} on an autoencoder run: it trains on images; set "
            "config.autoencoder.kind='none'."
        )
    if a.kind == "digits" and not a.workdir:
        raise ConfigError(
            "config.autoencoder.kind='digits' is a latent run without an autoencoder: set "
            "config.autoencoder.workdir to a finished autoencoder run (python launch.py "
            "--config=configs/digits_autoencoder.py --workdir=runs/digits/autoencoder), e.g. "
            "--config.autoencoder.workdir=runs/digits/autoencoder."
        )
    if a.kind != "none" and config.data.random_flip:
        raise ConfigError(
            "config.data.random_flip=True on a latent run: the data set is encoded once, unflipped. "
            "Set config.data.random_flip=False."
        )


def _check_lcm(config: ml_collections.ConfigDict) -> None:
    """LCM: conditional data, a w range the student can take, a skip and steps the grid holds."""
    o = config.objective
    if not config.data.conditional:
        raise ConfigError(
            "objective.name='lcm' distils a guided teacher and needs labels: set "
            "config.data.conditional=True (and a teacher trained with objective.label_dropout > 0)."
        )
    if not o.guidance_min <= o.guidance_max:
        raise ConfigError(
            f"config.objective.guidance_min={o.guidance_min} must be <= guidance_max={o.guidance_max} "
            "(w ~ U[guidance_min, guidance_max])."
        )
    if o.guidance_min != o.guidance_max and not config.network.guidance_embedding:
        raise ConfigError(
            f"config.objective.guidance_min={o.guidance_min} < guidance_max={o.guidance_max}: the "
            "student must know which w it distils. Set config.network.guidance_embedding=True, or "
            "guidance_min = guidance_max for a student of one w."
        )
    if not o.skip <= o.num_scales - 1:
        raise ConfigError(
            f"config.objective.skip={o.skip} must be <= objective.num_scales - 1 = {o.num_scales - 1} "
            "(the teacher steps from grid point n + k to n of the N-point grid)."
        )
    steps = tuple(config.sample.lcm_steps)
    if not steps or any(not isinstance(k, int) or not 1 <= k <= o.num_scales - 1 for k in steps):
        raise ConfigError(
            f"config.sample.lcm_steps={steps} must list step counts in [1, objective.num_scales - 1 "
            f"= {o.num_scales - 1}], e.g. (1, 2, 4)."
        )


def _check_guidance(config: ml_collections.ConfigDict) -> None:
    """sample.guidance: scales >= 0, other than 1 only where a model can guide (a teacher trained
    with label dropout, an LCM student with a w-embedding); sample.labels on conditional runs."""
    ws = tuple(config.sample.guidance)
    if not ws or any(not isinstance(w, int | float) or not 0 <= w < math.inf for w in ws):
        raise ConfigError(f"config.sample.guidance={ws} must list guidance scales w >= 0, e.g. (1.0, 2.0).")
    if len(set(ws)) != len(ws):
        raise ConfigError(f"config.sample.guidance={ws} lists a scale twice.")
    if config.sample.labels and not config.data.conditional:
        raise ConfigError(
            f"config.sample.labels={tuple(config.sample.labels)} on an unconditional run: set "
            "config.data.conditional=True (and train with it), or sample.labels=()."
        )
    if ws == (1.0,):
        return
    o = config.objective
    if not config.data.conditional:
        raise ConfigError(
            f"config.sample.guidance={ws}: guidance needs a conditional run (config.data.conditional"
            "=True, a teacher trained with objective.label_dropout > 0); this run is unconditional. "
            "Set sample.guidance=(1.0,)."
        )
    if o.name == "edm" and not o.label_dropout > 0:
        raise ConfigError(
            f"config.sample.guidance={ws}: this teacher is trained without label dropout "
            "(objective.label_dropout=0), so its unconditional denoiser is untrained. Train with "
            "--config.objective.label_dropout=0.1, or set sample.guidance=(1.0,)."
        )
    if o.name == "lcm" and not config.network.guidance_embedding:
        raise ConfigError(
            f"config.sample.guidance={ws}: this LCM student has no w-embedding (network."
            f"guidance_embedding=False); it samples at the w it was distilled at "
            f"({o.guidance_min}). Set sample.guidance=(1.0,)."
        )
    if o.name not in ("edm", "lcm"):
        raise ConfigError(
            f"config.sample.guidance={ws}: objective {o.name!r} takes no guidance scale (the EDM "
            "teacher and the LCM student do). Set sample.guidance=(1.0,)."
        )


def check_labels_fit(config: ml_collections.ConfigDict, num_classes: int) -> None:
    """sample.labels must be class indices of the data (known once its class count is)."""
    try:
        check_sample_labels(tuple(config.sample.labels), num_classes)
    except ValueError as e:
        raise ConfigError(
            f"config.sample.labels={tuple(config.sample.labels)}: {e} Set it to classes of "
            f"{config.data.name!r}, or () for balanced labels."
        ) from None


def _check_scm(config: ml_collections.ConfigDict) -> None:
    """sCT/sCD: a teacher for sCD, the tangent's constants, the TrigFlow sampling times."""
    o, m = config.objective, config.model
    if o.name == "scd" and not o.teacher_workdir:
        raise ConfigError(
            "sCD needs a trained teacher for dx_t/dt: set config.objective.teacher_workdir to the "
            "workdir of an EDM run (e.g. --config.objective.teacher_workdir=runs/edm), or train "
            "from the data alone with objective.name='sct'."
        )
    if not o.tangent_c > 0:
        raise ConfigError(
            f"config.objective.tangent_c must be > 0 (the tangent is normalised as g / (||g|| + c)), "
            f"got {o.tangent_c!r}; sCM uses 0.1."
        )
    _non_negative("objective.tangent_warmup_steps", o.tangent_warmup_steps)
    _positive("objective.p_std", o.p_std)
    t_max = float(trigflow_time(m.sigma_max, m.sigma_data))
    try:
        check_trigflow_steps((t_max, *config.sample.trigflow_steps), t_max)
    except ValueError as e:
        raise ConfigError(
            f"config.sample.trigflow_steps={tuple(config.sample.trigflow_steps)}: {e} "
            f"(t_max = arctan(model.sigma_max / model.sigma_data)); sCM's two steps use (1.1,)."
        ) from None


def _check_dmd(o: ml_collections.ConfigDict) -> None:
    """rCM's DMD term: sCD only, its fake score starting from the teacher the student starts from."""
    _non_negative("objective.dmd_weight", o.dmd_weight)
    if not o.dmd_weight:
        return
    if o.name != "scd":
        raise ConfigError(
            f"config.objective.dmd_weight={o.dmd_weight!r} is sCD's regulariser (rCM), not "
            f"objective.name={o.name!r}'s: use objective.name='scd' or set objective.dmd_weight=0."
        )
    if not o.init_from_teacher:
        raise ConfigError(
            "config.objective.dmd_weight > 0 trains a fake score of the teacher's network beside a "
            "student of the same network: set objective.init_from_teacher=True."
        )
    _positive("objective.dmd_p_std", o.dmd_p_std)
    _positive("objective.fake_score_lr", o.fake_score_lr)


def _check_meanflow(config: ml_collections.ConfigDict) -> None:
    """MeanFlow: the r = t fraction, the adaptive weight's constants, the sampling times."""
    o = config.objective
    if not 0 <= o.meanflow_equal_fraction <= 1:
        raise ConfigError(
            f"config.objective.meanflow_equal_fraction must be in [0, 1] (the fraction of the batch "
            f"with r = t), got {o.meanflow_equal_fraction!r}."
        )
    _non_negative("objective.meanflow_norm_p", o.meanflow_norm_p)
    _positive("objective.meanflow_norm_eps", o.meanflow_norm_eps)
    ts = [1.0, *[float(t) for t in config.sample.meanflow_steps], 0.0]
    if any(b >= a for a, b in zip(ts, ts[1:])):
        raise ConfigError(
            f"config.sample.meanflow_steps={tuple(config.sample.meanflow_steps)} must decrease "
            "strictly within (0, 1): the times between the noise (1) and the data (0)."
        )


def _check_churn(s: ml_collections.ConfigDict) -> None:
    """EDM's stochastic sampler: S_churn >= 0, S_noise > 0, S_tmin <= S_tmax (EDM Alg. 2)."""
    if not 0 <= s.s_min <= s.s_max:
        raise ConfigError(
            f"config.sample.s_min={s.s_min} and s_max={s.s_max} must satisfy 0 <= s_min <= s_max "
            "(the sigma range where the stochastic sampler adds noise)."
        )


def _check_steps_per_dispatch(t: ml_collections.ConfigDict) -> None:
    """The loop logs, saves and samples between dispatches: those periods must be multiples."""
    k = t.steps_per_dispatch
    _positive("train.steps_per_dispatch", k)
    for key in ("num_steps", "log_every", "ckpt_every", "sample_every"):
        if t[key] % k:
            raise ConfigError(
                f"config.train.{key}={t[key]} is not a multiple of train.steps_per_dispatch={k}: "
                f"the loop only stops between dispatches of {k} steps. Set {key} to a multiple of "
                f"{k}, or steps_per_dispatch to a divisor of {t[key]}."
            )


def check_steps_per_dispatch_on(config: ml_collections.ConfigDict, platform: str) -> None:
    """Refuse several steps per dispatch for a U-Net on the CPU, where XLA runs a conv's kernel
    gradient inside a loop tens of times slower than outside one."""
    k, name = config.train.steps_per_dispatch, config.network.name
    if platform == "cpu" and k > 1 and name != "mlp":
        raise ConfigError(
            f"config.train.steps_per_dispatch={k} with the {name} U-Net on the CPU: XLA's CPU "
            "backend runs a convolution's kernel gradient inside a loop many times slower than "
            "outside one (docs/performance.md). Set "
            "steps_per_dispatch=1 on the CPU; it is for small steps on GPUs and TPUs."
        )


def check_network_fits_data(config: ml_collections.ConfigDict, shape: tuple[int, ...]) -> None:
    """Raise ConfigError where config.network cannot take data of `shape` ([D] or [H, W, C])."""
    name, data = config.network.name, config.data.name
    if name == "mlp" and len(shape) != 1:
        raise ConfigError(
            f"config.network.name='mlp' takes vectors, but {data!r} has images of shape {shape}: "
            "use 'ddpmpp', 'ncsnpp' or 'adm'."
        )
    if name == "adm" and config.network.embedding_type not in ("auto", "positional"):
        raise ConfigError(
            f"config.network.embedding_type={config.network.embedding_type!r}: the adm network's "
            "noise embedding is positional; set it 'auto', or use 'ddpmpp' or 'ncsnpp'."
        )
    if name == "mlp":
        return
    if len(shape) != 3:
        raise ConfigError(
            f"config.network.name={name!r} is a U-Net for images, but {data!r} has vectors of "
            f"shape {shape}: use 'mlp'."
        )
    u = config.network.unet
    levels = len(u.channel_mult)
    size = shape[0]
    if shape[0] != shape[1] or size % 2 ** (levels - 1):
        raise ConfigError(
            f"{data!r} images are {shape[0]}x{shape[1]}; the U-Net's {levels} resolutions "
            f"(config.network.unet.channel_mult={tuple(u.channel_mult)}) need square images whose "
            f"side divides by {2 ** (levels - 1)}: set config.data.image_size or channel_mult."
        )
    resolutions = [size >> level for level in range(levels)]
    unreachable = [r for r in u.attn_resolutions if r not in resolutions]
    if unreachable:
        raise ConfigError(
            f"config.network.unet.attn_resolutions={tuple(u.attn_resolutions)} names "
            f"{unreachable}, but on {size}x{size} {data!r} images the U-Net's resolutions are "
            f"{resolutions}: pick attention resolutions among them (or () for none)."
        )


def _lookup(config: ml_collections.ConfigDict, dotted: str):
    value = config
    for part in dotted.split("."):
        value = value[part]
    return value.to_dict() if isinstance(value, ml_collections.ConfigDict) else value


def _normalise(value):
    """JSON round trip, so tuples and lists compare equal."""
    return json.loads(json.dumps(value))


def _with_teacher_start(flat: dict) -> dict:
    """objective.init_from_teacher as it acts: a run saved when True was the default started from a
    teacher only if it named one."""
    key = "objective.init_from_teacher"
    return flat | {key: False} if key in flat and not flat.get("objective.teacher_workdir") else flat


def differing_leaves(old: dict, new: dict, sections: tuple[str, ...]) -> list[str]:
    """The flat keys of `new` under `sections` (a key or its prefix) whose value differs from `old`'s."""
    under = lambda key: any(key == r or key.startswith(r + ".") for r in sections)
    return [k for k in new if under(k) and _normalise(old.get(k)) != _normalise(new[k])]


def changed_keys(config: ml_collections.ConfigDict, saved: ml_collections.ConfigDict) -> list[str]:
    """'key (old there, new now)' for each leaf under RESUME_KEYS where `config` differs from `saved`."""
    old, new = _with_teacher_start(flat_keys(saved)), _with_teacher_start(flat_keys(config))
    return [
        f"config.{k} ({old.get(k)!r} there, {new[k]!r} now)"
        for k in differing_leaves(old, new, RESUME_KEYS) if k.rsplit(".", 1)[-1] not in EXECUTION_KEYS
    ]


def check_resumable(
    config: ml_collections.ConfigDict, workdir: str, started: bool, allow_change: bool = False
) -> None:
    """Refuse to resume the run in `workdir` with a config that changes what it computes
    (RESUME_KEYS), unless `allow_change`; a run with no checkpoint yet (`started` False) may
    start again with any config. Raises ConfigError for a config.json that is not a run's."""
    saved_path = os.path.join(workdir, "config.json")
    changed = changed_keys(config, load_config(saved_path))
    if not changed:
        return
    if not started or allow_change:
        why = "it has no checkpoint yet" if not started else "--allow_config_change"
        logging.warning("%s: resuming with changed %s (%s).", workdir, "; ".join(changed), why)
        return
    raise ConfigError(
        f"The workdir {workdir} holds a run started with other values of keys that change what it "
        f"computes: {'; '.join(changed)}. It cannot resume as the same run. Use a new --workdir, "
        "or the values that run was started with, or rerun with --allow_config_change to continue "
        "it with the new values (config.json is then rewritten)."
    )


def check_workdir(workdir: str) -> None:
    """Refuse an empty --workdir, and an existing non-empty folder that holds no run (no
    config.json, no checkpoints/): training there would mix a run with someone else's files.
    A lock file alone (a run killed as it started) does not count."""
    if not workdir.strip():
        raise ConfigError("--workdir is empty: name the run's folder, e.g. --workdir=runs/toy_edm.")
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ConfigError(f"--workdir={workdir} is a file, not a folder: name a folder for the run.")
    if not os.path.isdir(workdir):
        return
    names = set(os.listdir(workdir)) - {LOCK_NAME}
    if names and not names & {"config.json", "checkpoints"}:
        raise ConfigError(
            f"--workdir={workdir} is a non-empty folder that holds no run (no config.json or "
            f"checkpoints/, but {', '.join(sorted(names)[:3])}): name a new or empty folder."
        )
