"""--mode=edit: zero-shot editing with a run's model (CM Alg. 4, `core.editing`), written as
workdir/edits/<task>.npz (uint8 `input`, `corrupted`, `edited`; `labels` where conditional) and a
PNG whose rows are the input, what the model was given, and the edit.

A consistency run edits with its one-step function f(x, sigma); an EDM run with the teacher's
PF-ODE from sigma to 0 (`sample.teacher_steps` Heun steps), the paper's diffusion baseline.
"""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image

from consistency_jax.config import checks
from consistency_jax.core import editing, ode
from consistency_jax.core.parametrization import Parametrization, denoiser, edm_network
from consistency_jax.core.sampling import teacher_sigmas
from consistency_jax.core.schedules import karras_sigmas
from consistency_jax.data import build_dataset, data_info, num_labels
from consistency_jax.errors import ConfigError
from consistency_jax.evaluation.samples import image_grid, to_uint8
from consistency_jax.networks import build_network, network_fn
from consistency_jax.training import checkpoint, files
from consistency_jax.training.state import abstract_state

TASKS = ("inpaint", "colorize", "superres", "stroke", "denoise", "interpolate")
EDITABLE = ("edm", "cd", "ct", "ict", "ect")  # objectives whose f is on the sigma of the EDM ODE


def flow_map(config: ml_collections.ConfigDict, model, params, labels) -> editing.ConsistencyFn:
    """The run's f(x, sigma) -> x_0: its consistency function, or for an EDM teacher its PF-ODE
    integrated from sigma to 0 on a Karras grid of sample.teacher_steps points (EDM Alg. 1)."""
    m, net = config.model, network_fn(model, params, labels)
    if config.objective.name != "edm":
        return denoiser(net, Parametrization("consistency", m.sigma_data, m.sigma_min))
    d = denoiser(edm_network(net, m.scm_network, m.sigma_data), Parametrization("edm", m.sigma_data, 0.0))
    steps = config.sample.teacher_steps
    return lambda x, sigma: ode.integrate(d, x, teacher_sigmas(steps, m.sigma_min, sigma, m.rho))


def _read_images(path: str, key: str) -> np.ndarray:
    """uint8 [N, H, W, C] from a .png (one image) or an .npz (array `key`, or `images`/`samples`)."""
    if not os.path.isfile(path):
        raise ConfigError(f"config.edit.{key}={path!r} is not a file: give a .png or an .npz.")
    if path.endswith(".npz"):
        with np.load(path) as f:
            names = [n for n in (key, "images", "samples") if n in f]
            if not names:
                raise ConfigError(f"{path} holds {sorted(f.files)}; editing reads an array named "
                                  f"{key!r}, 'images' or 'samples'.")
            array = f[names[0]]
    else:
        array = np.asarray(Image.open(path))[None]
    return array[..., None] if array.ndim == 3 else array


def _inputs(config: ml_collections.ConfigDict, info) -> tuple[np.ndarray, np.ndarray | None]:
    """The images to edit, float32 in [-1, 1], and their labels (data images) or None."""
    d = config.edit
    if d.input:
        images = _read_images(d.input, "images")
        if images.shape[1:] != tuple(info.shape):
            raise ConfigError(f"{d.input} holds images of shape {images.shape[1:]}, but the run's data "
                              f"are {tuple(info.shape)}: resize them first.")
        return images.astype(np.float32) / 127.5 - 1, None
    data = ml_collections.ConfigDict(config.data.to_dict())
    data.batch_size, data.random_flip = d.num_images, False
    batch = next(build_dataset(data, seed=config.seed)[0])
    return np.asarray(batch["x"]), batch.get("label")


def _mask(config: ml_collections.ConfigDict, shape: tuple[int, ...]) -> np.ndarray:
    """The inpainting mask [H, W, 1 or C], 1 where known: edit.mask's nonzero pixels, or the top half."""
    if not config.edit.mask:
        return (np.arange(shape[0]) < shape[0] // 2).astype(np.float32)[:, None, None]
    mask = _read_images(config.edit.mask, "mask")[0]
    if mask.shape[:2] != shape[:2] or mask.shape[2] not in (1, shape[2]):
        raise ConfigError(f"config.edit.mask={config.edit.mask!r} is {mask.shape}; the images are "
                          f"{shape}: give a mask of {shape[0]}x{shape[1]} with 1 or {shape[2]} channels.")
    return (mask != 0).astype(np.float32)


def replacement(config: ml_collections.ConfigDict, shape: tuple[int, ...]) -> editing.Replace | None:
    """The edit.task's replacement of the known part (None: nothing is kept)."""
    task = config.edit.task
    if task == "inpaint":
        return editing.inpainting(jnp.asarray(_mask(config, shape)))
    if task == "colorize":
        if shape[2] != 3:
            raise ConfigError(f"config.edit.task='colorize' needs RGB images; these have {shape[2]} channel(s).")
        return editing.colorization()
    if task == "superres":
        if shape[0] % config.edit.factor or shape[1] % config.edit.factor:
            raise ConfigError(f"config.edit.factor={config.edit.factor} must divide the image side {shape[0]}.")
        return editing.superresolution(config.edit.factor)
    return None


def corrupted(task: str, replace: editing.Replace | None, y: jax.Array, noisy: jax.Array) -> jax.Array:
    """What the model is given, as a picture: the known part alone (unknown pixels black, the
    grayscale, the block means), or the strokes, or the noisy input."""
    if task == "inpaint":
        return replace(y, -jnp.ones_like(y))
    if replace is not None:
        return replace(y, jnp.zeros_like(y))
    return noisy if task == "denoise" else y


def check(config: ml_collections.ConfigDict) -> None:
    """ConfigError, before any compute, for an edit this run cannot make."""
    checks.validate(config)
    if config.edit.task not in TASKS:
        raise ConfigError(f"config.edit.task={config.edit.task!r} is not known; choose one of {list(TASKS)}.")
    if config.objective.name not in EDITABLE:
        raise ConfigError(f"--mode=edit works on runs of {list(EDITABLE)} (f on the EDM ODE's sigma); this "
                          f"run's objective is {config.objective.name!r}.")
    if not config.model.sigma_min < config.edit.sigma <= config.model.sigma_max:
        raise ConfigError(f"config.edit.sigma={config.edit.sigma} must lie in (sigma_min, sigma_max] = "
                          f"({config.model.sigma_min}, {config.model.sigma_max}].")


def schedule(config: ml_collections.ConfigDict) -> list[float]:
    """The editing sigmas: edit.num_steps Karras points from sigma_max (stroke: edit.sigma) down,
    the grid's last point sigma_min dropped (it would add no noise and repeat f at sigma_min)."""
    m, d = config.model, config.edit
    top = d.sigma if d.task == "stroke" else m.sigma_max
    if d.num_steps == 1:
        return [top]
    return [float(s) for s in karras_sigmas(d.num_steps + 1, m.sigma_min, top, m.rho)[:-1]]


def edit_run(config: ml_collections.ConfigDict, workdir: str) -> str:
    """Edit with the run's latest checkpoint (sampling EMA); the path of the .npz written."""
    check(config)
    if config.autoencoder.kind != "none":
        raise ConfigError(
            f"--mode=edit edits in pixel space; this is a latent run (config.autoencoder.kind="
            f"{config.autoencoder.kind!r}), whose masks and strokes would act on latents."
        )
    info = data_info(config.data)
    if len(info.shape) != 3:
        raise ConfigError(f"--mode=edit edits images; {config.data.name!r} holds vectors.")
    d, key = config.edit, jax.random.fold_in(jax.random.key(config.seed), 3)
    replace = replacement(config, info.shape)  # the inputs are read before the checkpoint
    y, labels = _inputs(config, info) if d.task != "interpolate" else (None, None)
    model = build_network(config.network, num_labels(config.data, info))
    manager = checkpoint.make_manager(workdir)
    try:
        params = checkpoint.restore(manager, abstract_state(config, model, info)).ema_params
    finally:
        manager.close()
    if d.task == "interpolate":
        return _interpolate(config, workdir, model, params, info, key)
    labels = jnp.asarray(labels) if labels is not None and num_labels(config.data, info) else None
    f = flow_map(config, model, params, labels)
    y = jnp.asarray(y)
    if d.task == "denoise":
        noisy = y + d.sigma * jax.random.normal(key, y.shape)
        out = jax.jit(lambda x: jnp.clip(f(x, jnp.float32(d.sigma)), -1, 1))(noisy)
    else:
        noisy, sigmas = y, schedule(config)
        out = jax.jit(lambda y: editing.edit(f, key, y, replace, sigmas, config.model.sigma_min, True))(y)
    rows = [y, corrupted(d.task, replace, y, noisy), out]
    arrays = dict(zip(("input", "corrupted", "edited"), (to_uint8(np.asarray(r)) for r in rows)))
    return _write(workdir, d.task, arrays | ({"labels": np.asarray(labels)} if labels is not None else {}),
                  image_grid(np.concatenate(list(arrays.values())), cols=len(y)))


def _interpolate(config, workdir: str, model, params, info, key: jax.Array) -> str:
    """Rows of one-step (EDM: ODE) samples from slerp(z0, z1, alpha), alpha from 0 to 1."""
    d, m = config.edit, config.model
    f = flow_map(config, model, params, None)
    z0, z1 = jax.random.normal(key, (2, d.num_images, *info.shape))
    alphas = jnp.linspace(0.0, 1.0, d.num_alphas)

    def row(alpha):
        return jnp.clip(f(m.sigma_max * editing.slerp(z0, z1, alpha), jnp.float32(m.sigma_max)), -1, 1)

    out = to_uint8(np.asarray(jax.jit(jax.vmap(row))(alphas)).swapaxes(0, 1))  # [images, alphas, ...]
    return _write(workdir, "interpolate", {"edited": out}, image_grid(out.reshape(-1, *info.shape), cols=d.num_alphas))


def _write(workdir: str, task: str, arrays: dict[str, np.ndarray], grid: np.ndarray) -> str:
    out = os.path.join(workdir, "edits")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"{task}.npz")
    files.write_atomic(path, lambda f: np.savez(f, **arrays), "the edits")
    png = Image.fromarray(grid.squeeze(-1) if grid.shape[-1] == 1 else grid)
    files.write_atomic(os.path.join(out, f"{task}.png"), lambda f: png.save(f, format="png"), "an edit grid")
    return path
