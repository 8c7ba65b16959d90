"""A cell written by the trainer and submit of the 2026-11-30 format is read by status and collect unchanged.

tests/fixtures/cell_format_v1/smoke is a real run (generated data, ``submit --cluster local`` of one
smoke cell, 2 epochs, 3 steps; the model/checkpoint/pickle files left out), and expected_frame.json
is what ``load_matrix`` made of it before status and collect shared one cell-state model."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from aslhpc.orchestration.cellrecord import load_cells
from aslhpc.orchestration.cellstate import experiment_status
from aslhpc.orchestration.manifest import load_manifest
from aslhpc.slurm.accounting import StateQuery
from aslhpc.snapshot import load_matrix

FIXTURE = Path(__file__).parent / "fixtures" / "cell_format_v1"


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURE / "smoke", tmp_path / "smoke"))


def test_collect_reads_todays_cell_into_the_same_frame(experiment: Path) -> None:
    expected = json.loads((FIXTURE / "expected_frame.json").read_text())
    frame = load_matrix(experiment)
    assert list(frame.columns) == expected["columns"]
    assert {c: str(t) for c, t in frame.dtypes.items()} == expected["dtypes"]
    row = frame.iloc[0].to_dict()
    for col, want in expected["row"].items():
        got = row[col]
        if want is None:
            assert got is None or (isinstance(got, float) and math.isnan(got)), col
        else:
            assert got == want, col


def test_status_reads_todays_cell(experiment: Path) -> None:
    report = experiment_status(
        experiment / "manifest.json", query=lambda ids, starttime="": StateQuery({}, "none")
    )
    (row,) = report.rows
    assert (row.cell_id, row.state, row.job_id, row.cluster) == ("g1-b32-r0", "COMPLETED", "10290", "local")
    assert (row.epoch, row.epochs, row.node, row.elapsed, row.error) == (2, 2, "vm", "0:01", "")
    assert row.val_acc == pytest.approx(5.882352941176471) and row.images_per_s == pytest.approx(
        279.326, abs=1e-3
    )


def test_the_record_holds_every_file_checked(experiment: Path) -> None:
    (rec,) = load_cells(experiment, load_manifest(experiment / "manifest.json")).values()
    assert rec.damaged == "" and rec.result is not None and rec.result["epochs"] == 2
    assert (
        [e.epoch for e in rec.epochs] == [1, 2] and rec.config is not None and rec.config["batch_size"] == 32
    )
    assert rec.error is None and rec.progress is None and rec.restarts == 0
    assert rec.log == experiment / "jobs/g1-b32-r0/10290/10290_0_log.err"
