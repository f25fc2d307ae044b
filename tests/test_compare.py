"""benchmarks/compare.py on two synthetic result files: rows matched by their identifying
columns, new / old of each timed column, a slower row marked, unmatched rows listed."""

import json

from benchmarks import compare

OLD = {
    "date": "2026-12-01T10:00:00",
    "device": {"device_kind": "cpu"},
    "args": {"set": ["network.compute_dtype=bfloat16"]},
    "train": [
        {"preset": "cifar10", "objective": "edm", "batch": 8, "matmul_dtype": "bfloat16", "step_s": 2.0,
         "compile_s": 10.0, "img_s": 4.0},
        {"preset": "cifar10", "objective": "cd", "batch": 8, "matmul_dtype": "bfloat16", "step_s": 4.0,
         "compile_s": 20.0},
        {"preset": "cifar10", "objective": "ict", "batch": 8, "matmul_dtype": "bfloat16", "step_s": 3.0},
    ],
    "sampling": [{"preset": "cifar10", "sampler": "onestep", "batch": 8, "batch_s": 0.5}],
}
NEW = {
    **OLD,
    "train": [
        {**OLD["train"][1], "step_s": 5.0},  # order does not matter: matched by identity
        {**OLD["train"][0], "step_s": 1.0, "img_s": 8.0},
        {**OLD["train"][1], "objective": "ect", "step_s": 3.0},
    ],
}
DEVICE_CHECK = {
    "sections": [
        {"section": "bench", "rows": [
            {"part": "train_cd_b512", "status": "ran", "batch": 512, "step_s": 0.2, "compile_s": 40.0},
            {"part": "train_edm_b512", "status": "skipped", "reason": "would overrun"},
        ]},
        {"section": "tests", "rows": [{"test": "tests.test_sampling::test_a", "outcome": "passed", "seconds": 1.0}]},
    ],
}


def test_ratios_of_matched_rows(tmp_path, capsys):
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(OLD))
    new.write_text(json.dumps(NEW))
    assert compare.main([str(old), str(new)]) == 0
    out = capsys.readouterr().out
    edm = "train[network.compute_dtype=bfloat16] preset=cifar10 objective=edm batch=8 matmul_dtype=bfloat16"
    row = lambda name, column: [line for line in out.splitlines() if line.startswith(name + " ") and
                                line.split()[len(name.split())] == column]
    assert len(row(edm, "step_s")) == 1 and row(edm, "step_s")[0].endswith(" 0.50x")  # 2 -> 1 s
    assert row(edm.replace("edm", "cd"), "step_s")[0].endswith(" 1.25x  SLOWER")  # 4 -> 5 s
    assert row(edm.replace("edm", "cd"), "compile_s")[0].endswith(" 1.00x")
    assert row("sampling[network.compute_dtype=bfloat16] preset=cifar10 sampler=onestep batch=8", "batch_s")
    assert "img_s" not in out  # a throughput, not a time
    assert "only in old: " + edm.replace("edm", "ict") in out
    assert "only in new: " + edm.replace("edm", "ect") in out
    assert "5 ratios, 1 above 1.1" in out
    assert compare.main([str(old), str(new), "--fail"]) == 1
    assert compare.main([str(old), str(new), "--fail", "--threshold=1.3"]) == 0


def test_device_check_rows_and_skipped_parts(tmp_path):
    slower = {"sections": [{**s, "rows": [{**r, "seconds": 2.0} if "test" in r else {**r, "step_s": 0.3}
                                          for r in s["rows"]]} for s in DEVICE_CHECK["sections"]]}
    lines, old_only, new_only = compare.compare(DEVICE_CHECK, slower)
    ratios = {(name.split()[0], column): round(ratio, 3) for name, column, _, _, ratio in lines}
    assert ratios == {("bench", "compile_s"): 1.0, ("bench", "step_s"): 1.5, ("tests", "seconds"): 2.0}
    assert old_only == new_only == []  # the skipped part is no row of either
