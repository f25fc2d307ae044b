"""The accelerator check in one command: environment, GPU tests, CIFAR-10-size benchmarks, report.

    python benchmarks/device_check.py --out=$OUT                  # on a CUDA GPU, under 8 minutes
    python benchmarks/device_check.py --out=/tmp/dc --dry-run     # the same sections on the CPU

Sections, in order, each under its own time budget (--budgets, seconds; a section whose budget
does not fit in what is left of --budget_s is skipped and reported):
  env    installs the runtime requirements from wheels carried in --wheels (`pip install
         --no-index --find-links --no-deps --target`), names each requirement with no wheel and no
         installed copy, and checks that the library imports (benchmarks/fetch_wheels.sh fills it);
  tests  the GPU-relevant tests through pytest -k: the bf16 train step against float32 on one
         batch, the sharded step on one real device, sampling;
  bench  the CIFAR-10-size steps through benchmarks/train_step.py and sampling.py's functions:
         EDM and CD in bf16 at batch 512 and 128, with and without remat, and CT, iCT and ECT at
         512 with their time over EDM's (time, FLOP/s over a bf16 matmul on the same device,
         compile time, XLA's buffer sizes and the device's own peak), one-step vs Heun-35
         sampling at batch 512, 1 vs 8 steps per dispatch; one row per part, the most wanted
         first; a part that would overrun what is left is skipped;
  report device_check.json (every section: status, reason, budget, elapsed, rows) and
         device_check.md (one table per section) in --out.
--dry-run runs the same sections on the CPU at toy sizes (the digits preset shrunk, batches of 4
and 8, one timed step) and installs nothing. Every section runs in a child process killed at its
budget; the bench child writes its rows as it goes, so a killed section keeps its finished rows.
"""

import argparse
import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("env", "tests", "bench")
DEFAULT_BUDGETS = {"env": 45.0, "tests": 100.0, "bench": 270.0}  # seconds; with startup < 8 min
GRACE_S = 5.0  # a child gets this long past its section's budget to finish a row before it is killed
TEST_FILES = ("tests/test_precision.py", "tests/test_parallel.py", "tests/test_sampling.py")
TEST_K = "train_step_matches_float32 or one_device_mesh or (test_sampling and not on_mesh)"  # not the 8-CPU one
# Slow tests included (-m ""), one process (-n 0): xdist would start one process per CPU on one GPU.
TEST_SELECT = ("-m", "", "-n", "0", "-k")
# The library's imports that the checks need; the env section imports them in a child.
IMPORTS = (
    "consistency_jax.data",
    "consistency_jax.training.step",
    "consistency_jax.evaluation.samples",
    "benchmarks.common",
)


@dataclasses.dataclass
class Size:
    """The bench section's sizes: the real ones, or the dry run's toy ones."""

    preset: str
    batches: tuple[int, int]  # (small, large): CIFAR-10's 128 and 512
    sets: tuple[str, ...]  # config overrides for every config (benchmarks/common.py's --set)
    warmup: int
    steps: int
    sample_reps: int
    dispatch: int  # steps per call against 1
    dispatch_steps: int
    dispatch_repeats: int


REAL = Size("cifar10", (128, 512), ("network.compute_dtype=bfloat16",), 2, 5, 3, 8, 16, 2)
DRY = Size(
    "toy",
    (4, 8),
    ("network.compute_dtype=bfloat16", "network.mlp.hidden=32", "network.mlp.depth=2", "network.mlp.emb_dim=16"),
    0,
    1,
    1,
    2,
    2,
    1,
)


def bench_parts(size: Size) -> list[dict]:
    """The bench section's parts, the most wanted first: the bf16 matmul rate, the CD step at the
    large batch (the issue's 40%-of-matmul target), one-step vs Heun-35 sampling (its 30x target),
    then EDM, CT, iCT, ECT, sCT, sCD and MeanFlow (each with its time over EDM's), remat, the small batch, and steps
    per dispatch."""
    small, large = size.batches
    train = lambda objective, batch, remat: {
        "part": f"train_{objective}_b{batch}{'_remat' if remat else ''}",
        "kind": "train", "objective": objective, "batch": batch, "remat": remat,
    }
    sample = lambda sampler: {
        "part": f"sample_{sampler}_b{large}", "kind": "sampling", "sampler": sampler, "batch": large,
    }
    return [
        {"part": "matmul", "kind": "matmul"},
        train("cd", large, False),
        sample("onestep"),
        sample("teacher"),
        train("edm", large, False),
        *(train(objective, large, False) for objective in ("ct", "ict", "ect", "sct", "scd", "meanflow")),
        train("cd", large, True),
        train("edm", large, True),
        train("edm", small, False),
        train("cd", small, False),
        train("edm", small, True),
        train("cd", small, True),
        {"part": f"dispatch_edm_b{small}_k{size.dispatch}", "kind": "dispatch", "objective": "edm", "batch": small},
    ]


# --- the parent: sections, budgets, report (standard library only: nothing installed yet) ---------


def _now() -> float:
    return time.monotonic()


def run_child(args: list[str], timeout: float, env: dict[str, str], log: Path) -> tuple[int | None, float]:
    """Run `python args` in the repo root with output to `log`; (exit code or None if killed at
    `timeout`, seconds)."""
    start = _now()
    with open(log, "a") as out:
        out.write(f"$ {' '.join(args)}\n")
        out.flush()
        proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            code = proc.wait(max(timeout, 1.0))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = None
    return code, _now() - start


def child_env(opts: argparse.Namespace) -> dict[str, str]:
    """The children's environment: the installed wheels and the repo importable; CPU JAX in the
    dry run, the GPU otherwise (tests/conftest.py would default to the CPU)."""
    paths = [str(ROOT)] + ([opts.site] if opts.site and not opts.dry_run else [])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in [os.environ.get("PYTHONPATH")] if p])
    env["JAX_PLATFORMS"] = "cpu" if opts.dry_run else opts.platform
    env["PYTHONUNBUFFERED"] = "1"
    if not opts.dry_run:  # the batch-512 steps without remat need more than JAX's default 75% of the GPU
        env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.95")
    if opts.dry_run:  # XLA's fastest compiles (as tests/run_utils.py's subprocesses): it checks the script
        env["XLA_FLAGS"] = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    return env


def runtime_requirements() -> list[tuple[str, str]]:
    """(name, pinned version) of requirements.txt's runtime section."""
    reqs = []
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            reqs.append((name.strip(), version.strip()))
    return reqs


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def wheel_versions(folder: Path) -> dict[str, str]:
    """{normalised project name: version} of the wheels in `folder`."""
    if not folder.is_dir():
        return {}
    return {_norm(w.name.split("-")[0]): w.name.split("-")[1] for w in folder.glob("*.whl")}


def installed_version(name: str, site: str | None) -> str | None:
    """The version of `name` visible to the children (`site` first), or None."""
    paths = ([site] if site else []) + sys.path
    for dist in importlib.metadata.distributions(path=paths):
        if _norm(dist.metadata["Name"] or "") == _norm(name):
            return dist.version
    return None


IMPORT_ROW = {"requirement": "(import check)", "pinned": "", "found": "", "source": ""}


def section_env(opts: argparse.Namespace, budget: float, log: Path) -> tuple[str, str, list[dict]]:
    """Install the carried wheels, then one row per runtime requirement and one import row."""
    deadline = _now() + budget
    wheels = Path(opts.wheels) if opts.wheels else None
    carried = wheel_versions(wheels) if wheels else {}
    notes = []
    install = {"requirement": "(pip install)", "pinned": "", "found": "", "source": ""}
    if opts.dry_run:
        install["status"] = "skipped: --dry-run installs nothing"
    elif not carried:
        install["status"] = f"skipped: no wheels in {wheels}" if wheels else "skipped: --wheels not given"
    else:
        files = sorted(str(w) for w in wheels.glob("*.whl"))
        args = ["-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheels), "--no-deps",
                "--no-compile", "--upgrade", "--target", opts.site, *files]
        code, seconds = run_child(args, deadline - _now(), dict(os.environ), log)
        install["status"] = f"{len(files)} wheels into {opts.site}: " + (
            "ok" if code == 0 else "killed at the budget" if code is None else f"pip exit {code} (see the log)"
        )
        if code != 0:
            notes.append("pip install failed")
    rows = [install]
    for name, pinned in runtime_requirements():
        found = installed_version(name, None if opts.dry_run else opts.site)
        wheel = carried.get(_norm(name))
        if wheel is not None and not opts.dry_run and found == wheel:
            source, status = "carried wheel", "ok" if wheel == pinned else f"wheel {wheel} is not the pin"
        elif found is None:
            source, status = "-", f"MISSING: no wheel for {name}=={pinned} in {wheels} and none installed"
            notes.append(f"{name} missing")
        else:
            source = "installed"
            status = "ok" if found == pinned else f"no wheel for {name}=={pinned}; using the installed {found}"
        rows.append({"requirement": name, "pinned": pinned, "found": found or "-", "source": source, "status": status})
    for row in rows[1:]:
        if row["status"] != "ok":
            print(f"  env: {row['status']}", flush=True)
    # The real test: the library imports, and JAX sees the device.
    probe = Path(opts.out) / "env_probe.json"
    code = (
        "import json, platform, sys\n"
        f"for m in {IMPORTS!r}: __import__(m)\n"
        "import jax\n"
        "d = jax.devices()\n"
        f"json.dump({{'python': platform.python_version(), 'jax': jax.__version__, "
        f"'backend': jax.default_backend(), 'devices': len(d), 'device_kind': d[0].device_kind}}, "
        f"open({str(probe)!r}, 'w'))\n"
    )
    exit_code, _ = run_child(["-c", code], deadline - _now(), child_env(opts), log)
    if exit_code == 0:
        facts = json.loads(probe.read_text())
        probe.unlink()
        status = "ok" if opts.dry_run or facts["backend"] != "cpu" else "no accelerator: JAX runs on the CPU"
        rows.append({**IMPORT_ROW, "found": json.dumps(facts), "status": status})
        if status != "ok":
            notes.append(status)
    else:
        reason = "killed at the budget" if exit_code is None else _last_error(log)
        rows.append({**IMPORT_ROW, "status": f"FAILED: {reason}"})
        return "failed", f"the library does not import: {reason}", rows
    return "ran", "; ".join(notes), rows


def _last_error(log: Path) -> str:
    """The last line of `log` that names an error, else its last line."""
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "error" in line]
    return (errors or lines or ["(no output)"])[-1].strip()[:300]


def section_tests(opts: argparse.Namespace, budget: float, log: Path) -> tuple[str, str, list[dict]]:
    """pytest -k on the GPU-relevant tests; one row per test from pytest's JUnit XML."""
    xml = Path(opts.out) / "tests_junit.xml"
    args = ["-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}", *TEST_SELECT, opts.tests_k]
    args += TEST_FILES
    code, _ = run_child(args, budget, child_env(opts), log)
    rows = []
    if xml.exists():
        for case in ET.parse(xml).getroot().iter("testcase"):
            outcome = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")), "passed")
            rows.append({
                "test": f"{case.get('classname')}::{case.get('name')}",
                "outcome": outcome,
                "seconds": float(case.get("time", 0.0)),
            })
        xml.unlink()
    if code is None:
        return "partial", f"killed at its budget of {budget:.0f} s", rows
    failed = [r["test"] for r in rows if r["outcome"] in ("failure", "error")]
    if code != 0 or failed:
        return "failed", f"pytest exit {code}; failed: {', '.join(failed) or _last_error(log)}", rows
    return "ran", "", rows


def section_bench(opts: argparse.Namespace, budget: float, log: Path) -> tuple[str, str, list[dict]]:
    """The bench child under the section's budget; its rows, and a skipped row for each part it
    did not reach."""
    rows_file = Path(opts.out) / "bench_rows.jsonl"
    rows_file.unlink(missing_ok=True)
    parts = opts.parts.split(",") if opts.parts else []
    args = [str(Path(__file__).resolve()), "--worker", f"--out={opts.out}", f"--budget_s={budget}"]
    args += ["--dry-run"] if opts.dry_run else []
    args += [f"--parts={','.join(parts)}"] if parts else []
    code, seconds = run_child(args, budget + GRACE_S, child_env(opts), log)
    rows = [json.loads(line) for line in rows_file.read_text().splitlines()] if rows_file.exists() else []
    rows_file.unlink(missing_ok=True)
    done = {r["part"] for r in rows}
    wanted = [p for p in bench_parts(DRY if opts.dry_run else REAL) if not parts or p["part"] in parts]
    lost = "killed at the section's budget" if code is None else f"the bench process exited {code} before it"
    rows += [{**p, "status": "skipped", "reason": lost} for p in wanted if p["part"] not in done]
    if code is None:
        return "partial", f"killed at its budget of {budget:.0f} s", rows
    if code != 0:
        return "failed", f"bench exit {code}: {_last_error(log)}", rows
    skipped = sum(r["status"] == "skipped" for r in rows)
    failed = sum(r["status"] == "failed" for r in rows)
    if failed:
        return "failed", f"{failed} of {len(rows)} parts failed, {skipped} skipped", rows
    return "ran", f"{skipped} of {len(rows)} parts skipped" if skipped else "", rows


RUNNERS = {"env": section_env, "tests": section_tests, "bench": section_bench}


def parse_budgets(text: str) -> dict[str, float]:
    budgets = dict(DEFAULT_BUDGETS)
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        if name not in budgets:
            raise SystemExit(f"--budgets: unknown section {name!r}; sections are {', '.join(SECTIONS)}")
        budgets[name] = float(value)
    return budgets


def run_sections(opts: argparse.Namespace) -> dict:
    """Every section in order under its budget; the record written to --out."""
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "device_check.log"
    log.write_text("")
    start = _now()
    budgets = parse_budgets(opts.budgets)
    only = opts.sections.split(",") if opts.sections else list(SECTIONS)
    sections = []
    for name in SECTIONS:
        budget, left = budgets[name], opts.budget_s - (_now() - start)
        entry = {"section": name, "budget_s": budget, "elapsed_s": 0.0, "rows": []}
        if name not in only:
            entry.update(status="skipped", reason="not in --sections")
        elif budget <= 0:
            entry.update(status="skipped", reason=f"over its budget: the budget is {budget:g} s")
        elif budget > left:
            reason = f"would overrun: needs {budget:.0f} s, {left:.0f} s of --budget_s left"
            entry.update(status="skipped", reason=reason)
        elif name != "env" and sections[0]["status"] == "failed":
            entry.update(status="skipped", reason="the env section failed: " + sections[0]["reason"])
        else:
            print(f"[{name}] budget {budget:.0f} s", flush=True)
            t = _now()
            status, reason, rows = RUNNERS[name](opts, budget, log)
            entry.update(status=status, reason=reason, rows=rows, elapsed_s=round(_now() - t, 2))
        why = f": {entry['reason']}" if entry["reason"] else ""
        print(f"[{name}] {entry['status']} in {entry['elapsed_s']:.1f} s{why}", flush=True)
        sections.append(entry)
    record = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": platform.python_version(),
        "dry_run": opts.dry_run,
        "budget_s": opts.budget_s,
        "elapsed_s": round(_now() - start, 2),
        "sections": sections,
    }
    device = [r["device"] for s in sections for r in s["rows"] if isinstance(r.get("device"), dict)]
    if device:  # the bench's matmul row: platform, device kind, jax (as benchmarks/common.py records)
        record["device"] = device[0]
    (out / "device_check.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / "device_check.md").write_text(markdown(record))
    print(markdown(record))
    print(f"wrote {out / 'device_check.json'} and {out / 'device_check.md'} in {record['elapsed_s']:.0f} s")
    return record


# --- Markdown ---------------------------------------------------------------------------------------

COLUMNS = {
    "env": ("requirement", "pinned", "found", "source", "status"),
    "tests": ("test", "outcome", "seconds"),
    "bench": (
        "part", "status", "batch", "compile_s", "step_s", "vs_edm", "batch_s", "img_s", "flop_s", "matmul_flop_s",
        "peak_frac", "speedup_vs_teacher", "single_ms", "scanned_ms", "speedup", "peak_mib",
        "device_peak_mib", "device_peak_set", "reason",
    ),
}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.3e}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_cell(v) for v in value) + "]"
    return str(value).replace("|", "/").replace("\n", " ")


def markdown(record: dict) -> str:
    """One table of the sections, then one table per section's rows (columns it has)."""
    lines = [
        f"# Device check, {record['date']}{' (dry run)' if record['dry_run'] else ''}",
        "",
        f"{record['elapsed_s']:.0f} s of a {record['budget_s']:.0f} s budget on {record['host']}.",
        "",
        "| section | status | budget_s | elapsed_s | reason |",
        "|---|---|---|---|---|",
    ]
    for s in record["sections"]:
        cells = (s["section"], s["status"], f"{s['budget_s']:g}", f"{s['elapsed_s']:.1f}", _cell(s["reason"]))
        lines.append("| " + " | ".join(cells) + " |")
    for s in record["sections"]:
        if not s["rows"]:
            continue
        columns = [c for c in COLUMNS[s["section"]] if any(r.get(c) is not None for r in s["rows"])]
        lines += ["", f"## {s['section']}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in s["rows"]]
    return "\n".join(lines) + "\n"


# --- the bench child ---------------------------------------------------------------------------------


def worker(opts: argparse.Namespace) -> None:
    """The bench parts in order, one JSON line each in --out/bench_rows.jsonl as it finishes; a
    part that would overrun what is left of --budget_s is written as skipped."""
    sys.path.insert(0, str(ROOT))
    from absl import flags

    from benchmarks import common, sampling, train_step

    size = DRY if opts.dry_run else REAL
    if opts.dry_run:
        common.MATMUL_SIZE = 256  # the rate's figure means nothing on a shared CPU; its cost would dominate
    flags.FLAGS([sys.argv[0], *[f"--set={s}" for s in size.sets]])
    deadline = _now() + opts.budget_s
    rows_file = Path(opts.out) / "bench_rows.jsonl"
    wanted = opts.parts.split(",") if opts.parts else None
    parts = [p for p in bench_parts(size) if wanted is None or p["part"] in wanted]
    taken: dict[str, float] = {}  # the longest part of each kind so far: the estimate of the next
    state: dict[str, Any] = {}
    rows: list[dict] = []
    for part in parts:
        left = deadline - _now()
        estimate = taken.get(part["kind"], max(taken.values(), default=0.0))  # a new kind: the longest
        if left <= 0:
            row = {**part, "status": "skipped", "reason": "the section's budget is spent"}
        elif estimate > left:
            reason = f"would overrun: a {part['kind']} part took {estimate:.0f} s, {left:.0f} s left"
            row = {**part, "status": "skipped", "reason": reason}
        else:
            t = _now()
            try:
                row = {**part, **run_part(part, size, state, common, sampling, train_step), "status": "ran"}
            except Exception as e:  # a part that fails is reported; the next parts still run
                first = str(e).splitlines()[0][:200] if str(e) else ""
                row = {**part, "status": "failed", "reason": f"{type(e).__name__}: {first}"}
            row["elapsed_s"] = round(_now() - t, 2)
            taken[part["kind"]] = max(taken.get(part["kind"], 0.0), row["elapsed_s"])
            print(f"  {part['part']}: {row['status']} in {row['elapsed_s']:.1f} s", flush=True)
        rows.append(row)
        # FLOP/s of the samplers (NFE x the one-step's FLOPs) and their speed-up over the teacher
        sampling.add_derived([r for r in rows if r["kind"] == "sampling" and r["status"] == "ran"])
        train_step.add_vs_edm([r for r in rows if r["kind"] == "train" and r["status"] == "ran"])
        tmp = rows_file.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r, default=str) + "\n" for r in rows))
        tmp.replace(rows_file)


def _device_peak(before: float | None, common: Any) -> dict:
    """The device's own peak bytes in use (MiB) after a part, and whether this part set it (the
    allocator's peak only grows: a part that did not raise it used at most that much)."""
    after = common.host_memory().get("device_peak_mib")
    if after is None:
        return {}
    return {"device_peak_mib": after, "device_peak_set": before is None or after > before}


def run_part(part: dict, size: Size, state: dict, common: Any, sampling: Any, train_step: Any) -> dict:
    """One part's measurements (train_step.bench_objective, bench_dispatch, sampling.bench_sampler)."""
    import jax

    kind = part["kind"]
    if kind == "matmul":
        rate = common.matmul_peak(reps=size.steps * 10, dtype="bfloat16")
        return {"matmul_flop_s": rate, "device": common.device_info(), **common.host_memory()}
    config = common.preset_config(size.preset, part.get("objective", "cd"))
    if "info" not in state:
        state["info"] = common.dataset_info(config)
    info, network = state["info"], config.network.to_json()
    if network not in state:  # one initialisation per network (sCT and sCD add a loss-weighting head)
        state[network] = common.init_network_params(config, info.shape)
    params = state[network]
    before = common.host_memory().get("device_peak_mib")
    if kind == "train":
        config.network.remat = part["remat"]
        batch = common.synthetic_batch(info, part["batch"])
        row, step = train_step.bench_objective(config, size.preset, params, batch, size.warmup, size.steps)
        row["remat"] = part["remat"]
        del step
    elif kind == "dispatch":
        batch = common.synthetic_batch(info, part["batch"])
        row = train_step.bench_dispatch(
            config, size.preset, params, batch, size.dispatch, size.dispatch_steps, size.dispatch_repeats
        )
    else:
        name = "onestep" if part["sampler"] == "onestep" else None
        config = common.preset_config(size.preset, "cd" if name else "edm")
        config.sample.batch_size = part["batch"]
        name = name or sampling.generate.sampler_names(config)[0]
        row = sampling.bench_sampler(size.preset, name, config, params, min(size.warmup, 1), size.sample_reps)
    jax.clear_caches()
    return {**row, **_device_peak(before, common), "compute_dtype": config.network.compute_dtype}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for device_check.json, .md and .log")
    p.add_argument("--dry-run", action="store_true", help="the same sections on the CPU at toy sizes; no install")
    p.add_argument("--wheels", default=str(ROOT / "wheels"), help="carried wheels (benchmarks/fetch_wheels.sh)")
    p.add_argument("--site", default="/tmp/consistency_jax_site", help="where the wheels are installed (pip --target)")
    p.add_argument("--platform", default="cuda", help="JAX_PLATFORMS of the children (not in the dry run)")
    p.add_argument("--budget_s", type=float, default=420.0, help="all sections together, seconds")
    p.add_argument("--budgets", default="", help="per-section seconds, e.g. env=45,tests=100,bench=270")
    p.add_argument("--sections", default="", help="comma-separated subset of env,tests,bench (default all)")
    p.add_argument("--parts", default="", help="comma-separated bench parts (default all; names in the JSON)")
    p.add_argument("--tests_k", default=TEST_K, help="pytest -k expression of the tests section")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.worker:
        worker(opts)
        return 0
    record = run_sections(opts)
    return 0 if all(s["status"] != "failed" for s in record["sections"]) else 1


if __name__ == "__main__":
    sys.exit(main())
