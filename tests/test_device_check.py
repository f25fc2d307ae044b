"""benchmarks/device_check.py --dry-run: the accelerator check's sections on the CPU at toy sizes.

The bench section runs a few of its parts here (the full dry run, every part, is the slow test);
the tests section runs one cheap test: its GPU tests are in the suite anyway.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "device_check.py"
CHEAP_TEST = "test_multistep_sigmas_are_checked"


def dry_run(out: Path, *args: str) -> tuple[dict, str]:
    """Run the dry run into `out`; its JSON record and its Markdown."""
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", f"--out={out}", f"--tests_k={CHEAP_TEST}", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return json.loads((out / "device_check.json").read_text()), (out / "device_check.md").read_text()


def sections(record: dict) -> dict[str, dict]:
    return {s["section"]: s for s in record["sections"]}


def check_bench_rows(bench: dict) -> None:
    """A part that ran has its figures; a part that did not has a reason."""
    for row in bench["rows"]:
        assert row["status"] in ("ran", "skipped"), row
        if row["status"] == "skipped":
            assert row["reason"], row
        elif row["kind"] == "train":
            assert row["step_s"] > 0 and row["compile_s"] > 0 and row["peak_frac"] > 0
            assert row["compute_dtype"] == "bfloat16" and row["matmul_dtype"] == "bfloat16"
        elif row["kind"] == "sampling":
            assert row["batch_s"] > 0 and row["nfe"] in (1, 35)


@pytest.mark.slow
def test_dry_run_reports_every_section_and_writes_json_and_markdown(tmp_path):
    parts = "matmul,sample_onestep_b8,sample_teacher_b8,train_edm_b8,train_ect_b8,train_sct_b8"
    record, md = dry_run(tmp_path, f"--parts={parts}")
    by_name = sections(record)
    assert list(by_name) == ["env", "tests", "bench"]
    assert all(s["status"] == "ran" for s in by_name.values()), by_name
    env = by_name["env"]["rows"]
    assert env[0]["status"].startswith("skipped: --dry-run")  # no install on the CPU
    assert {r["requirement"] for r in env} >= {"jax", "flax", "grain", "(import check)"}
    assert env[-1]["status"] == "ok" and '"backend": "cpu"' in env[-1]["found"]
    assert [r["outcome"] for r in by_name["tests"]["rows"]] == ["passed"]
    bench = by_name["bench"]["rows"]
    assert [r["part"] for r in bench] == parts.split(",")
    assert all(r["status"] == "ran" for r in bench), bench
    check_bench_rows(by_name["bench"])
    onestep, teacher = bench[1], bench[2]
    assert onestep["speedup_vs_teacher"] > 1 and teacher["sampler"].startswith("teacher_heun")
    edm, ect, sct = bench[3], bench[4], bench[5]  # sCT: its own network (a loss-weighting head)
    assert edm["vs_edm"] == 1 and ect["vs_edm"] == ect["step_s"] / edm["step_s"]
    assert sct["objective"] == "sct" and sct["vs_edm"] == sct["step_s"] / edm["step_s"]
    # The Markdown has the section table and one table per section, a line per row.
    for name in ("env", "tests", "bench"):
        assert f"## {name}" in md
    for row in bench:
        assert f"| {row['part']} | ran |" in md


def test_section_over_its_budget_is_skipped_and_reported(tmp_path):
    record, md = dry_run(tmp_path, "--budget_s=100", "--budgets=env=0,tests=0,bench=1000")
    by_name = sections(record)
    assert by_name["env"]["status"] == "skipped" and "over its budget" in by_name["env"]["reason"]
    assert by_name["tests"] == {**by_name["tests"], "status": "skipped", "rows": []}
    assert "over its budget" in by_name["tests"]["reason"]
    assert by_name["bench"]["status"] == "skipped"
    assert by_name["bench"]["reason"].startswith("would overrun: needs 1000 s")
    assert "| tests | skipped |" in md and "| bench | skipped |" in md


@pytest.mark.slow
def test_full_dry_run(tmp_path):
    """Every bench part at toy sizes under the default budgets: each ran or was skipped for a reason."""
    record, _ = dry_run(tmp_path)
    by_name = sections(record)
    assert by_name["env"]["status"] == "ran" and by_name["tests"]["status"] == "ran"
    assert by_name["bench"]["status"] in ("ran", "partial")
    check_bench_rows(by_name["bench"])
    assert len(by_name["bench"]["rows"]) == 18


def test_vs_edm_pairs_rows_of_the_same_preset_network_batch_and_dtype():
    from benchmarks import train_step

    row = lambda objective, batch, step_s, dtype="bfloat16": {
        "preset": "cifar10", "network": "ncsnpp", "objective": objective, "batch": batch, "step_s": step_s,
        "matmul_dtype": dtype,
    }
    rows = [row("edm", 8, 2.0), row("cd", 8, 5.0), row("ict", 16, 3.0), row("ct", 8, 3.0, "float32")]
    train_step.add_vs_edm(rows)
    assert [r.get("vs_edm") for r in rows] == [1.0, 2.5, None, None]  # no EDM row at 16 or in float32


def test_latent_and_guided_rows_pair_with_the_edm_step_of_their_own_network():
    """A latent step beside the latent teacher's (the network sees 4x4x2 latents, not 8x8x1
    digits), guided CD beside the conditional teacher's (a label embedding)."""
    import importlib

    from benchmarks import common, train_step

    names = ("edm", "latent_edm", "latent_cd", "edm_cond", "lcm")
    configs = {n: importlib.import_module(f"configs.digits_{n}").get_config() for n in names}
    shapes = {n: common.dataset_info(c).shape for n, c in configs.items()}
    assert shapes["edm"] == (8, 8, 1) and shapes["latent_edm"] == shapes["latent_cd"] == (4, 4, 2)
    assert [common.num_classes(configs[n]) for n in ("edm", "latent_cd", "edm_cond", "lcm")] == [0, 0, 10, 10]
    row = lambda name, step_s: {
        "preset": "digits", "network": "ddpmpp", "objective": name, "loss": configs[name].objective.name,
        "shape": list(shapes[name]), "classes": common.num_classes(configs[name]), "batch": 64, "step_s": step_s,
    }
    rows = [row("edm", 1.0), row("latent_edm", 0.5), row("latent_cd", 1.5), row("edm_cond", 1.25), row("lcm", 5.0)]
    train_step.add_vs_edm(rows)
    assert [r["vs_edm"] for r in rows] == [1.0, 1.0, 3.0, 1.0, 4.0]


def test_default_test_selection_is_the_one_device_gpu_tests():
    """The tests section's -k picks the bf16 step, the one-device mesh and test_sampling.py, not
    the 8-CPU-device subprocess of test_parallel.py (minutes, and never on the GPU)."""
    from benchmarks import device_check

    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         *device_check.TEST_SELECT, device_check.TEST_K, *device_check.TEST_FILES],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    selected = [line for line in proc.stdout.splitlines() if "::" in line]
    assert "tests/test_precision.py::test_bfloat16_train_step_matches_float32_on_the_same_batch" in selected
    assert "tests/test_parallel.py::test_sharded_step_on_one_device_mesh_equals_unsharded_step" in selected
    assert sum(s.startswith("tests/test_sampling.py::") for s in selected) >= 6
    assert not [s for s in selected if s.startswith("tests/test_parallel.py::") and "one_device_mesh" not in s]
