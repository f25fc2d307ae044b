"""The command line: --help, python -m consistency_jax, and the package installed (pip install -e .)."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_help_lists_the_flags_and_every_shipped_config_and_exits_0(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "launch.py"), "--help"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    configs = sorted(n for n in os.listdir(os.path.join(ROOT, "configs")) if n.endswith(("_edm.py", "_cd.py")))
    assert configs and all(f"configs/{name}" in out for name in configs)
    assert "configs/toy_edm.py" in out and "EDM teacher on the 2-D Gaussian mixture" in out  # its first line
    assert "configs/recipes.py" not in out  # shared modules, not configs
    assert "consistency_jax/config/schema.py" in out
    for flag in ("--compilation_cache", "--sample_seed", "--mode", "--config", "--workdir"):
        assert flag in out, flag
    # python -m consistency_jax is the same command, from any directory
    module = subprocess.run([sys.executable, "-m", "consistency_jax", "--help"], cwd=tmp_path,
                            env=dict(env, PYTHONPATH=ROOT), capture_output=True, text=True, timeout=300)
    assert module.returncode == 0 and "configs/toy_edm.py" in module.stdout and "--compilation_cache" in module.stdout


def test_a_missing_config_or_a_sample_seed_outside_sampling_is_named_exit_2():
    result = subprocess.run([sys.executable, "launch.py", "--workdir=x"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert result.returncode == 2 and "--config must be given" in result.stderr
    assert "Traceback" not in result.stderr
    result = subprocess.run([sys.executable, "launch.py", "--config=configs/toy_edm.py", "--workdir=x",
                             "--sample_seed=3"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert result.returncode == 2 and "is for --mode=sample" in result.stderr and "Traceback" not in result.stderr
    assert not os.path.exists(os.path.join(ROOT, "x"))


@pytest.mark.slow
def test_an_editable_install_imports_from_anywhere_and_installs_the_command(tmp_path):
    """pip install -e . into a fresh venv that sees this interpreter's packages (a .pth file), so
    nothing is downloaded."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    ours = [p for p in sys.path if p.endswith("site-packages")]
    with open(os.path.join(site, "shared.pth"), "w") as f:
        f.write("\n".join(ours) + "\n")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", ROOT],
                   check=True, timeout=600, cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"JAX_PLATFORMS": "cpu"}
    where = "import consistency_jax, os; print(os.path.dirname(consistency_jax.__file__))"
    where = subprocess.run([python, "-c", where], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert where.returncode == 0, where.stderr[-2000:]
    assert where.stdout.strip() == os.path.join(ROOT, "consistency_jax")
    command = subprocess.run([venv / "bin" / "consistency-jax", "--help"], cwd=elsewhere, env=env,
                             capture_output=True, text=True, timeout=300)
    assert command.returncode == 0 and "configs/digits_cd.py" in command.stdout
