"""Every configuration key, documented. Experiment configs (configs/*.py) start from `get_config()`.

Override any key on the command line: `--config.optim.lr=2e-4`.
"""

import json
import os

import ml_collections

from consistency_jax.errors import ConfigError

# The sections every saved config.json has (a file without them was not written by a run).
SAVED_SECTIONS = ("seed", "data", "model", "network", "objective", "optim", "train")


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0  # root of every PRNG key (init, data order, noise, dropout, sampling)

    # --- data --------------------------------------------------------------------------
    c.data = d = ml_collections.ConfigDict()
    d.name = "gmm2d"  # toy: gmm2d | ring2d | moons2d; images: digits | any TFDS name (cifar10)
    d.batch_size = 256  # global batch, split over processes and devices
    d.num_points = 100_000  # toy data: size of the fixed sample the pipeline serves
    d.image_size = 0  # images: resize to this side (0: the data set's own size)
    d.random_flip = False  # images: random horizontal flip
    d.tfds_data_dir = ""  # images: TFDS data_dir ('' = TFDS default, ~/tensorflow_datasets)
    d.split = "train"
    d.conditional = False  # feed class labels to the network

    # --- autoencoder (latent runs: the network sees scaled latents, samples are decoded) -------
    c.autoencoder = a = ml_collections.ConfigDict()
    # none (pixel space) | digits (an autoencoder trained here: configs/digits_autoencoder.py) |
    # sd_vae (Stable Diffusion's KL-f8 VAE, 4 latent channels, read from its safetensors file)
    a.kind = "none"
    a.workdir = ""  # digits: the workdir of the finished autoencoder run (required, no default)
    a.path = ""  # sd_vae: diffusion_pytorch_model.safetensors ('': where load_sd_vae looks)
    # latents are multiplied by it (LDM Sec. 4.3.2): 0 takes the autoencoder's own (digits: 1 / the
    # std of its latents, stored with its checkpoint at training end; sd_vae: 0.18215)
    a.scaling_factor = 0.0
    a.cache_dir = ""  # the encoded data set ('': <workdir>/latents); runs may share one
    a.encode_batch_size = 256  # images per jitted encoder call while encoding the data set

    # --- EDM / consistency parametrization ----------------------------------------------
    c.model = m = ml_collections.ConfigDict()
    m.sigma_data = 0.5  # sigma_d: data std (0.5 for [-1, 1] images)
    m.sigma_min = 0.002  # epsilon: boundary of the consistency function, smallest grid sigma
    m.sigma_max = 80.0  # T: largest sigma
    m.rho = 7.0  # Karras grid exponent
    # How the network takes time, for EDM teachers and sCT/sCD (TrigFlow time t = arctan(sigma /
    # sigma_d)). edm: c_noise = ln(sigma) / 4 (EDM), seen by sCT/sCD through the exact conversion
    # F = -F_edm(x_t / sigma_d, ln(sigma_d tan t) / 4); trigflow: c_noise = t (sCM Sec. 4.1), and
    # an EDM run with it is a TrigFlow teacher (EDM's loss is the TrigFlow diffusion loss over
    # sigma_d^2). sCT/sCD start from and distil a teacher of their own kind; CD, CT, iCT, ECT: edm.
    m.scm_network = "edm"

    # --- network ---------------------------------------------------------------------
    c.network = n = ml_collections.ConfigDict()
    n.name = "mlp"  # mlp | ddpmpp | ncsnpp (SongUNet) | adm (DhariwalUNet, ImageNet-64's) | autoencoder
    n.dropout = 0.0
    n.embedding_type = "auto"  # auto (the architecture's own) | positional | fourier (not adm: positional)
    n.fourier_scale = 16.0  # Fourier embedding scale (NCSN++ 16; iCT 0.02)
    # float32 | bfloat16: the network's arithmetic; parameters, optimizer state and the loss stay
    # float32. bfloat16 pays off on GPUs and TPUs; CPUs have no fast bfloat16 convolutions.
    n.compute_dtype = "float32"
    n.remat = False  # U-Net: recompute each block's activations in the backward pass (less memory)
    # a loss-weighting head w_phi(t) (its own small parameters in the network's tree): sCT/sCD's
    # adaptive weighting e^-w_phi(t) loss + w_phi(t); off, those losses weigh every t alike
    n.logvar_head = False
    # LCM student: the guidance scale w as an input (a w-embedding added to the noise embedding,
    # LCM's timestep_cond), so that one student samples at any w in [guidance_min, guidance_max]
    n.guidance_embedding = False
    n.mlp = ml_collections.ConfigDict(dict(hidden=256, depth=4, emb_dim=128))
    # network.name='autoencoder' (an autoencoder run, objective.name='autoencoder'): a conv
    # encoder/decoder, `channels` wide at full resolution and doubled at each downsampling by 2
    n.autoencoder = ml_collections.ConfigDict(dict(channels=32, latent_channels=2, downsample=2))
    n.unet = ml_collections.ConfigDict(
        dict(
            model_channels=128,  # base width
            channel_mult=(2, 2, 2),  # per-resolution width multipliers
            channel_mult_emb=4,  # embedding width = model_channels * channel_mult_emb
            num_blocks=4,  # residual blocks per resolution
            attn_resolutions=(16,),  # resolutions with self-attention
            # ddpmpp, ncsnpp: sCM's adaptive double normalization norm(x) pnorm(s(t)) + pnorm(b(t))
            # in each block in place of EDM's added embedding (sCM Sec. 4.1; a TrigFlow teacher's)
            double_norm=False,
        )
    )

    # --- objective -------------------------------------------------------------------
    c.objective = o = ml_collections.ConfigDict()
    # edm (teacher DSM) | cd | lcm (guided CD) | ct | ict | ect | sct | scd | meanflow | autoencoder
    # (reconstruction MSE of network.name='autoencoder')
    o.name = "edm"
    # EDM, ECT: ln sigma ~ N(p_mean, p_std^2); iCT: lognormal index weights; sCT/sCD: tau = ln sigma,
    # t = arctan(e^tau / sigma_d); MeanFlow: t, r = sigmoid of two N(p_mean, p_std^2) draws
    o.p_mean = -1.2
    o.p_std = 1.2
    o.distance = "l2"  # l2 | l1 | pseudo_huber | lpips (metric d in the CD/CT loss)
    # pseudo-Huber c: >= 0 as given (0: the unsquared L2 norm, ECT's CIFAR-10 loss); -1: iCT's
    # 0.00054 sqrt(dim)
    o.huber_c = -1.0
    o.weighting = "uniform"  # uniform | ict (1 / (sigma_{n+1} - sigma_n))
    o.num_scales = 18  # CD, LCM: N, grid size
    o.solver = "heun"  # CD, LCM: teacher ODE step (euler | heun)
    o.teacher_substeps = 1  # CD, LCM: teacher solver steps per grid interval (on a K-times finer grid)
    o.target_ema = 0.0  # CD, LCM: mu, target network EMA rate (0: target = sg(online); LCM: 0.95)
    # EDM, conditional data: the probability that a label is replaced by the null label (index
    # num_classes), which trains the unconditional denoiser that classifier-free guidance needs
    # (CFG, Ho & Salimans 2022: 0.1-0.2); 0: a conditional teacher that cannot guide
    o.label_dropout = 0.0
    # LCM: the teacher's guidance scale w ~ U[guidance_min, guidance_max] per example, with the
    # project's convention D_w = D_uncond + w (D_cond - D_uncond): w = 1 conditional, w = 0
    # unconditional (LCM's own w is this w - 1). Equal values: one w (1, 1: plain conditional CD).
    o.guidance_min = 1.0
    o.guidance_max = 1.0
    o.skip = 1  # LCM: the skipping step k, the teacher steps from grid point n + k to n (1: CD)
    # the trained EDM teacher's workdir: required by CD, LCM, sCD and init_from_teacher, no default
    # (the command names it: --config.objective.teacher_workdir=runs/edm)
    o.teacher_workdir = ""
    o.init_from_teacher = False  # start the student (and its EMA) from the teacher in teacher_workdir
    o.s0 = 2  # CT/iCT curriculum: initial number of steps (s0)
    o.s1 = 150  # CT/iCT curriculum: final number of steps (s1)
    o.mu0 = 0.9  # CT: initial target EMA rate
    o.ect_q = 2.0  # ECT: the gap t - r shrinks by q at each stage (r = t (1 - q^-(s+1) n(t)))
    o.ect_k = 8.0  # ECT: n(t) = 1 + k sigmoid(-b t), a wider gap at small t
    o.ect_b = 1.0
    o.ect_stage_steps = 0  # ECT: steps per stage s (0: one stage for the whole run)
    # sCT/sCD: r = min(1, step / this) scales the tangent's second term (0: r = 1 from the start)
    o.tangent_warmup_steps = 10_000
    o.tangent_c = 0.1  # sCT/sCD: tangent normalisation g / (||g|| + c), c > 0
    o.tangent_rms = False  # sCT/sCD: ||g|| as the root mean square (FastGen) instead of the L2 norm
    # sCT/sCD: the loss weight 1 / sigma = 1 / (sigma_d tan t) (FastGen); on the digits it made the
    # one-step distance 16x worse at 1000 steps (docs/results.md#scm)
    o.prior_weighting = False
    # sCD: the weight of rCM's DMD term (0: plain sCD); on after the tangent warm-up, with a fake
    # score (the teacher's network, from its parameters) trained beside the student by Adam
    # (0, 0.999) at fake_score_lr; both draw ln sigma ~ N(dmd_p_mean, dmd_p_std^2) (rCM)
    o.dmd_weight = 0.0
    o.dmd_p_mean = 0.0
    o.dmd_p_std = 1.6
    o.fake_score_lr = 5e-4
    o.meanflow_equal_fraction = 0.75  # MeanFlow: the fraction of the batch with r = t (data_proportion)
    o.meanflow_norm_p = 1.0  # MeanFlow: adaptive weight 1 / sg(||u - u_tgt||^2 + eps)^p
    o.meanflow_norm_eps = 0.01

    # --- optimizer ---------------------------------------------------------------------
    c.optim = p = ml_collections.ConfigDict()
    p.name = "adam"  # adam | radam
    p.lr = 1e-3
    p.b1 = 0.9
    p.b2 = 0.999
    p.eps = 1e-8
    p.weight_decay = 0.0
    p.warmup_steps = 0  # linear lr warmup from 0 over this many steps
    p.decay_steps = 0  # then cosine decay of the lr to 0 over this many steps (0: constant lr)
    p.grad_clip = 0.0  # global-norm clipping; 0 disables

    # --- training loop ---------------------------------------------------------------
    c.train = t = ml_collections.ConfigDict()
    t.num_steps = 2000
    t.ema_rate = 0.999  # sampling EMA of the online parameters (separate from the target)
    t.ema_warmup = False  # use min(ema_rate, (1 + k) / (10 + k)): short runs forget the init
    t.log_every = 100
    t.ckpt_every = 1000  # also saved at the last step, and at the next step after a SIGTERM
    t.ckpt_keep = 3  # keep the latest this many checkpoints
    t.ckpt_keep_every = 0  # and keep every checkpoint at a multiple of this step for good (0: none)
    t.sample_every = 0  # 0: samples only at the end
    t.nan_policy = "stop"  # stop: a non-finite loss stops the run naming the step
    # Optimizer steps per jitted call (a lax.scan over as many batches): fewer dispatches for small
    # steps. num_steps, log_every, ckpt_every and sample_every must be multiples of it.
    t.steps_per_dispatch = 1

    # --- devices ('data' x 'fsdp' mesh over all devices of all processes) ------------------
    c.parallel = q = ml_collections.ConfigDict()
    q.fsdp = 1  # devices sharding params and optimizer state (1: data parallel only; -1: all)
    q.fsdp_min_size = 2**14  # under fsdp, arrays with fewer elements stay replicated

    # --- sampling ----------------------------------------------------------------------
    c.sample = s = ml_collections.ConfigDict()
    s.num_samples = 2000
    s.batch_size = 1000
    s.multistep_sigmas = (0.821,)  # intermediate sigmas after sigma_max for multistep sampling
    # sCT/sCD multistep: the TrigFlow times t after t_max = arctan(sigma_max / sigma_d), each in
    # (0, t_max), decreasing; the sample is re-noised as cos t x0 + sin t z (sCM: t_mid = 1.1)
    s.trigflow_steps = (1.1,)
    # LCM: the students' samplers, by number of steps, each on grid points evenly spaced over the
    # objective.num_scales training grid (LCMScheduler); replaces onestep and multistep_sigmas
    s.lcm_steps = (1, 2, 4)
    # conditional runs: the class of sample i, i % num_classes (balanced) for (), else labels[i % len]
    s.labels = ()
    # guidance scales w the samplers run at (each its own samples, named <sampler>_w<w>), with
    # D_w = D_uncond + w (D_cond - D_uncond): the EDM teacher (trained with label_dropout > 0)
    # and an LCM student with a w-embedding; (1.0,): conditional, unguided
    s.guidance = (1.0,)
    s.meanflow_steps = (0.5,)  # MeanFlow multistep: the times between 1 (noise) and 0, decreasing
    s.teacher_steps = 18  # teacher ODE: Karras grid size (18 -> 35 evaluations with Heun)
    s.teacher_solver = "heun"  # heun | euler | stochastic (EDM Alg. 2: churn, then a Heun step)
    s.s_churn = 0.0  # stochastic: S_churn, total noise added (0: the deterministic Heun sampler)
    s.s_min = 0.0  # stochastic: noise is added where S_tmin <= sigma <= S_tmax
    s.s_max = float("inf")
    s.s_noise = 1.0  # stochastic: S_noise, the added noise's scale

    # --- evaluation (--mode=eval) ----------------------------------------------------------
    c.eval = e = ml_collections.ConfigDict()
    e.num_samples = 50_000  # samples per sampler (the papers' FID protocol)
    e.batch_size = 500  # global sampling batch
    e.feature_batch_size = 250  # images per feature-network call
    e.shard_size = 5_000  # samples per shard file: an interrupted eval resumes at a shard
    # auto (inception for RGB images, digits for digits) | inception | digits. Digits figures (the
    # FID formula, an IS over its 10 classes, KID on the digits classifier) compare digits runs only.
    e.feature_net = "auto"
    # .npz with mu, sigma (and features or pool_3 for KID); '' computes them from the training
    # split on the first eval and keeps them as workdir/eval/reference_stats_<net>.npz
    e.reference_stats = ""

    # --- editing (--mode=edit; CM Alg. 4, with the teacher's ODE for an EDM run) -------------------
    c.edit = d = ml_collections.ConfigDict()
    # inpaint | colorize (RGB) | superres | stroke (SDEdit from the input at edit.sigma) | denoise
    # (the input plus noise at edit.sigma, one evaluation) | interpolate (slerp between two x_T)
    d.task = "inpaint"
    d.input = ""  # .png (one image) or .npz (array `images` or `samples`, uint8 NHWC); '': data images
    d.mask = ""  # inpaint: .png or .npz (array `mask`), nonzero where known; '': the top half known
    d.num_images = 8  # data images edited when edit.input is '' (interpolate: pairs of x_T)
    d.num_steps = 8  # Karras grid points from sigma_max (stroke: edit.sigma) down, the last > sigma_min
    d.factor = 2  # superres: the side of the blocks whose means are known
    d.sigma = 1.0  # stroke: the sigma the chain starts at; denoise: the input's noise level
    d.num_alphas = 8  # interpolate: images per row, alpha from 0 to 1
    return c


def read_saved(path: str) -> dict:
    """The JSON of a run's config.json; ConfigError if it is not JSON or lacks SAVED_SECTIONS."""
    fix = (
        "Restore the file from a backup, or use a new --workdir (the checkpoints cannot be "
        "resumed without the config they were trained with)."
    )
    try:
        with open(path) as f:
            saved = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is not a run's config: it is not valid JSON ({e}). {fix}") from None
    missing = [k for k in SAVED_SECTIONS if k not in saved] if isinstance(saved, dict) else list(SAVED_SECTIONS)
    if missing:
        raise ConfigError(f"{path} is not a run's config: it lacks {', '.join(missing)}. {fix}")
    return saved


def load_config(path: str) -> ml_collections.ConfigDict:
    """A config saved as JSON by a run, laid over today's defaults (keys added since keep their
    default), with lists turned back into tuples; ConfigError if the file is not a run's config."""
    if not os.path.exists(path):
        raise FileNotFoundError(path)

    def tuples(value):
        if isinstance(value, list):
            return tuple(tuples(v) for v in value)
        if isinstance(value, dict):
            return {k: tuples(v) for k, v in value.items()}
        return value

    def merge(base: ml_collections.ConfigDict, saved: dict) -> None:
        for key, value in saved.items():
            if isinstance(value, dict) and isinstance(base.get(key), ml_collections.ConfigDict):
                merge(base[key], value)
            else:
                base[key] = value

    config = get_config()
    with config.unlocked():
        merge(config, tuples(read_saved(path)))
    return config
