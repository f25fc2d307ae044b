"""A short digits run through launch.py: the U-Net path end to end on the embedded image data."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import run_utils

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
    "--config.network.unet.model_channels=16",
    "--config.network.unet.channel_mult=(1,)",
    "--config.network.unet.num_blocks=1",
    "--config.network.unet.attn_resolutions=()",
    "--config.data.batch_size=64",
    "--config.train.num_steps=120",
    "--config.train.log_every=20",
    "--config.train.ckpt_every=120",
    "--config.optim.warmup_steps=0",
    "--config.sample.num_samples=64",
    "--config.sample.batch_size=64",
    "--config.sample.teacher_steps=6",
]


def test_digits_teacher_loss_falls_and_samples_land(tmp_path):
    workdir = tmp_path / "edm"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "launch.py", "--config=configs/digits_edm.py", f"--workdir={workdir}",
         f"--compilation_cache={tmp_path / 'xla'}", *TINY],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(workdir / "metrics.jsonl") as f:
        losses = [json.loads(line)["loss"] for line in f if "loss" in line]
    assert len(losses) == 6 and all(np.isfinite(losses))
    assert np.mean(losses[-2:]) < 0.8 * losses[0], losses
    samples = np.load(workdir / "samples" / "teacher_heun11.npz")["samples"]
    assert samples.shape == (64, 8, 8, 1) and samples.dtype == np.uint8
    assert os.listdir(tmp_path / "xla")  # the train step and sampler, kept for a restart
    assert samples.std() > 5  # not a blank image
    assert (workdir / "samples" / "teacher_heun11.png").exists()
    assert (workdir / "checkpoints" / "120").exists()
    wrote = result.stdout.strip().splitlines()[-1]
    assert wrote.startswith("wrote: ") and f"{workdir / 'samples' / 'teacher_heun11.npz'}" in wrote
    assert f"{workdir / 'checkpoints'} (step 120)" in wrote
    scalars, images = run_utils.tensorboard_events(str(workdir))
    assert {f"train/{k}" for k in ("loss", "grad_norm", "lr", "steps_per_sec")} <= set(scalars)
    assert list(scalars["train/loss"]) == list(range(20, 121, 20)) and images == {"samples/teacher_heun11": [120]}
    assert scalars["train/loss"][120] == pytest.approx(losses[-1])  # the record's mean of its 20 steps

    # samples again with another seed: new samples in a file of their own, the first ones kept
    before = (workdir / "samples" / "teacher_heun11.npz").read_bytes()
    result = subprocess.run(
        [sys.executable, "launch.py", "--config=configs/digits_edm.py", f"--workdir={workdir}",
         f"--compilation_cache={tmp_path / 'xla'}", "--mode=sample", "--sample_seed=7", *TINY],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seeded = workdir / "samples" / "teacher_heun11_seed7.npz"
    assert result.stdout.strip().splitlines()[-1] == f"wrote: {seeded}"
    assert (workdir / "samples" / "teacher_heun11.npz").read_bytes() == before
    again = np.load(seeded)["samples"]
    assert again.shape == samples.shape and np.mean(again != samples) > 0.5
    assert run_utils.tensorboard_events(str(workdir))[1]["samples/teacher_heun11_seed7"] == [120]

    # samples under another sampler setting: a file tagged with it, the run's own kept
    result = subprocess.run(
        [sys.executable, "launch.py", "--config=configs/digits_edm.py", f"--workdir={workdir}",
         f"--compilation_cache={tmp_path / 'xla'}", "--mode=sample", *TINY, "--config.model.sigma_max=40"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    tagged = workdir / "samples" / "teacher_heun11_model.sigma_max40.0.npz"
    assert result.stdout.strip().splitlines()[-1] == f"wrote: {tagged}"
    assert (workdir / "samples" / "teacher_heun11.npz").read_bytes() == before
    assert np.mean(np.load(tagged)["samples"] != samples) > 0.5

    # zero-shot inpainting with the teacher's ODE (CM Alg. 4, the paper's diffusion baseline)
    result = subprocess.run(
        [sys.executable, "launch.py", "--config=configs/digits_edm.py", f"--workdir={workdir}", "--mode=edit",
         f"--compilation_cache={tmp_path / 'xla'}", *TINY, "--config.edit.num_images=4",
         "--config.edit.num_steps=2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    edits = np.load(workdir / "edits" / "inpaint.npz")
    assert edits["edited"].shape == (4, 8, 8, 1) and edits["edited"].dtype == np.uint8
    np.testing.assert_array_equal(edits["edited"][:, :4], edits["input"][:, :4])  # the known top half
    assert not edits["corrupted"][:, 4:].any()  # what the model was given: the bottom half black
    assert np.abs(edits["edited"][:, 4:].astype(int) - edits["input"][:, 4:]).mean() > 1  # filled in anew
    assert (workdir / "edits" / "inpaint.png").exists()
