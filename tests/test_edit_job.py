"""--mode=edit's inputs: every edit the run cannot make stops with a ConfigError naming the key,
before the checkpoint is read (the workdir here holds none, which would fail later)."""

import numpy as np
import pytest
from PIL import Image

from configs import digits_cd, digits_edm
from consistency_jax.errors import ConfigError
from consistency_jax.jobs import edit


def _config(module=digits_edm, **edits):
    config = module.get_config()
    for key, value in edits.items():
        config.edit[key] = value
    return config


def _write(tmp_path, name: str, array: np.ndarray) -> str:
    path = str(tmp_path / name)
    if name.endswith(".png"):
        Image.fromarray(array).save(path)
    else:
        np.savez(path, images=array)
    return path


@pytest.mark.parametrize("case,message", [
    ("unknown task", "config.edit.task='paint' is not known"),
    ("sigma above sigma_max", "config.edit.sigma=100.0 must lie in"),
    ("colorize grayscale", "needs RGB images; these have 1 channel"),
    ("factor not dividing", "config.edit.factor=3 must divide the image side 8"),
    ("mask of another size", "is (16, 16, 1); the images are (8, 8, 1)"),
    ("input missing", "is not a file"),
    ("input of another shape", "holds images of shape (4, 4, 1), but the run's data are (8, 8, 1)"),
    ("meanflow run", "--mode=edit works on runs of"),
])
def test_an_edit_the_run_cannot_make_stops_before_the_checkpoint(tmp_path, case, message):
    config = {
        "unknown task": lambda: _config(task="paint"),
        "sigma above sigma_max": lambda: _config(task="stroke", sigma=100.0),
        "colorize grayscale": lambda: _config(task="colorize"),
        "factor not dividing": lambda: _config(task="superres", factor=3),
        "mask of another size": lambda: _config(mask=_write(tmp_path, "m.png", np.ones((16, 16), np.uint8))),
        "input missing": lambda: _config(input=str(tmp_path / "nothing.png")),
        "input of another shape": lambda: _config(input=_write(tmp_path, "x.npz", np.zeros((2, 4, 4, 1), np.uint8))),
        "meanflow run": lambda: _meanflow(),
    }[case]()
    with pytest.raises(ConfigError) as error:
        edit.edit_run(config, str(tmp_path / "no_run"))
    assert message in str(error.value)


def _meanflow():
    config = digits_cd.get_config()
    config.objective.name, config.objective.init_from_teacher = "meanflow", False  # as MeanFlow's recipe
    return config


def test_the_schedule_starts_at_the_top_and_stays_above_sigma_min():
    config = _config(num_steps=4)
    sigmas = edit.schedule(config)
    assert sigmas[0] == pytest.approx(config.model.sigma_max) and len(sigmas) == 4
    assert all(a > b for a, b in zip(sigmas, sigmas[1:])) and sigmas[-1] > config.model.sigma_min
    stroke = edit.schedule(_config(task="stroke", sigma=2.0, num_steps=3))
    assert stroke[0] == pytest.approx(2.0) and len(stroke) == 3
