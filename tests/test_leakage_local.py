"""An experiment over both splits runs end to end on this machine (``submit --cluster local``), and collect
reports the leakage: per-split tables and H1, the gap table and plot, the blocked split labelled as the
leakage-free reading. On the generated data (frames that drift like a video) the random split scores
higher than the blocked one: the test asserts the gap's sign on a seeded run, not a timing."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from aslhpc import collect, submit
from aslhpc.data.synth import write_dataset

TOML = """
[experiment]
name = "leak"
[matrix]
gpus = [1]
batch_sizes = [32]
splits = ["random", "blocked"]
[train]
epochs = 4
lr = 0.05
momentum = 0.9
image_size = 48
pipeline = "fast"
allow_cpu = true
workers = 0
log_every = 0
[cluster]
cpus_per_gpu = 1
mem = "1G"
time = "15"
preamble = ""
"""


@pytest.fixture(scope="module")
def leakage_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("leak")
    mp = pytest.MonkeyPatch()
    mp.setenv("ASLHPC_CACHE_DIR", str(root / "cache"))
    mp.setenv("OMP_NUM_THREADS", "2")
    try:
        write_dataset(root / "asl", per_class=30, seed=0, image_size=48)
        job = root / "leak.toml"
        job.write_text(TOML)
        rc = submit.main([str(job), "--data", str(root / "asl"), "--results", str(root / "results"),
                          "--cluster", "local", "--wait", "--interval", "1", "--max-parallel", "1"])
        assert rc == 0
    finally:
        mp.undo()
    return root / "results"


def test_both_splits_run_with_the_split_in_the_cell_id(leakage_run: Path) -> None:
    cells = leakage_run / "leak" / "cells"
    assert sorted(p.name for p in cells.iterdir()) == ["g1-b32-blocked-r0", "g1-b32-r0"]
    import json

    random = json.loads((cells / "g1-b32-r0" / "result.json").read_text())["split"]
    blocked = json.loads((cells / "g1-b32-blocked-r0" / "result.json").read_text())["split"]
    assert (random["kind"], blocked["kind"]) == ("random", "blocked")
    assert random["seed"] == blocked["seed"] == 0 and random["hash"] != blocked["hash"]
    # submit made each cell's split of the same data as its trainer did: what a result is checked against
    entries = json.loads((leakage_run / "leak" / "manifest.json").read_text())["cells"]
    assert entries["g1-b32-r0"]["split_hash"] == random["hash"]
    assert entries["g1-b32-blocked-r0"]["split_hash"] == blocked["hash"]


def test_collect_reports_the_gap_and_the_random_split_scores_higher(
    leakage_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert collect.main(["--experiment", "leak", "--results", str(leakage_run)]) == 0
    out = capsys.readouterr().out
    exp = leakage_run / "leak"
    with open(exp / "leakage_gap.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["random_test_acc"]) > float(row["blocked_test_acc"])  # the leakage, measured
    assert float(row["gap_pp"]) > 0
    assert float(row["gap_low"]) <= float(row["gap_pp"]) <= float(row["gap_high"])
    assert "Wilson" in row["interval"]
    line = next(x for x in out.splitlines() if x.startswith("Leakage:"))
    assert "leakage-free reading" in line and "H1: random " in line and ", blocked (leakage-free) " in line
    report = (exp / "report.md").read_text()
    assert "## Leakage: random vs blocked split" in report
    assert "### Split: blocked (leakage-free reading)" in report and "### Split: random" in report
    assert report.count("Hypotheses judged on the") == 2
    assert "(blocked split)" in report and "(random split)" in report
    assert "The random split adds +" in report.split("## Conclusions")[1]
    assert (exp / "plots" / "leakage_gap.png").stat().st_size > 1000


def test_a_hole_on_the_axis_keeps_its_split(leakage_run: Path, tmp_path: Path) -> None:
    import shutil

    from aslhpc.snapshot import load_matrix

    exp = Path(shutil.copytree(leakage_run / "leak", tmp_path / "leak"))
    shutil.rmtree(exp / "cells" / "g1-b32-blocked-r0")  # never ran: only the manifest knows it
    frame = load_matrix(exp).set_index("cell_id")
    assert frame.loc["g1-b32-blocked-r0", "state"] != "COMPLETED"
    assert frame.loc["g1-b32-blocked-r0", "split_kind"] == "blocked"
    assert frame.loc["g1-b32-r0", "split_kind"] == "random"
