"""Per-row ratios of the timed columns of two benchmark results, so a slower step is seen in review.

    python benchmarks/compare.py OLD.json NEW.json
    python benchmarks/compare.py OLD.json NEW.json --threshold=1.05 --fail

Reads any result file of benchmarks/ (train_step.py, sampling.py, run.py: the lists `train`,
`sampling`, `dispatch`, `pipeline`) or device_check.json (each section's rows). Rows are matched
by their identifying columns (preset, objective, sampler, batch, dtype, part, ...; see ID_COLUMNS)
within the same table; for each timed column both rows have, it prints old, new and new / old,
marking a ratio above --threshold as slower. Rows found in one file only are listed after. A
ratio is a lead, not a verdict: compare files from one host (every file records its device and
host CPU), and rerun before believing a change under the spread of two runs of the same code.
With --fail the exit status is 1 when any ratio is above --threshold.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

TABLES = ("train", "sampling", "dispatch", "pipeline")
ID_COLUMNS = (
    "part", "test", "preset", "objective", "sampler", "network", "distance", "batch", "remat",
    "compute_dtype", "matmul_dtype", "steps_per_dispatch",
)
TIMED_COLUMNS = (
    "compile_s", "step_s", "min_s", "batch_s", "single_ms", "scanned_ms", "pipeline_alone_ms_per_batch",
    "seconds",
)


def rows_of(record: dict) -> dict[tuple, dict]:
    """{(table, identifying (column, value) pairs): row} of a result file; the header's --set
    overrides are part of the table, as they change what a row measures."""
    sets = ",".join(record.get("args", {}).get("set", []) or [])
    tables = [(t, record[t]) for t in TABLES if isinstance(record.get(t), list)]
    tables += [(s["section"], s.get("rows", [])) for s in record.get("sections", [])]
    out = {}
    for table, rows in tables:
        for row in rows:
            if row.get("status", "ran") != "ran":  # device_check's skipped or failed parts
                continue
            ident = tuple((c, row[c]) for c in ID_COLUMNS if row.get(c) is not None)
            out[(f"{table}[{sets}]" if sets else table, ident)] = row
    return out


def _name(key: tuple) -> str:
    table, ident = key
    return f"{table} " + " ".join(f"{c}={v}" for c, v in ident)


def _number(value: Any) -> float | None:
    if isinstance(value, list | tuple):  # dispatch's compile_s: [one step, k steps]
        value = sum(value)
    return float(value) if isinstance(value, int | float) and value > 0 else None


def compare(old: dict, new: dict) -> tuple[list[tuple], list[str], list[str]]:
    """(row name, column, old, new, ratio) for each timed column of each matched row; the names
    of rows in the old file only and in the new file only."""
    a, b = rows_of(old), rows_of(new)
    lines = []
    for key in a.keys() & b.keys():
        for column in TIMED_COLUMNS:
            x, y = _number(a[key].get(column)), _number(b[key].get(column))
            if x is not None and y is not None:
                lines.append((_name(key), column, x, y, y / x))
    lines.sort(key=lambda line: (line[0], TIMED_COLUMNS.index(line[1])))
    only = lambda d, e: sorted(_name(k) for k in d.keys() - e.keys())
    return lines, only(a, b), only(b, a)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("old", type=Path)
    p.add_argument("new", type=Path)
    p.add_argument("--threshold", type=float, default=1.10, help="new / old above this is marked slower")
    p.add_argument("--fail", action="store_true", help="exit 1 if any ratio is above --threshold")
    opts = p.parse_args(argv)
    old, new = (json.loads(path.read_text()) for path in (opts.old, opts.new))
    lines, old_only, new_only = compare(old, new)
    for label, record in (("old", old), ("new", new)):
        device = record.get("device", {})
        print(f"{label}: {record.get('date', '?')} {device.get('device_kind', '')} {device.get('host_cpu', '')}")
    width = max([len(line[0]) for line in lines] + [3])
    print(f"\n{'row'.ljust(width)}  {'column':<14} {'old':>10} {'new':>10} {'new/old':>8}")
    slower = 0
    for name, column, x, y, ratio in lines:
        mark = "  SLOWER" if ratio > opts.threshold else ""
        slower += bool(mark)
        print(f"{name.ljust(width)}  {column:<14} {x:>10.4g} {y:>10.4g} {ratio:>7.2f}x{mark}")
    for label, names in (("only in old", old_only), ("only in new", new_only)):
        for name in names:
            print(f"{label}: {name}")
    print(f"\n{len(lines)} ratios, {slower} above {opts.threshold:g}")
    return 1 if opts.fail and slower else 0


if __name__ == "__main__":
    sys.exit(main())
