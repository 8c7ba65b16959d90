"""Issue 26.8: ``aslhpc cancel`` stops every queued and running job of an experiment with one scancel,
records it, status then shows the cells CANCELLED, and ``submit --retry-failed`` resumes them. Against the
fake SLURM of tests/slurm_fakes.py (scancel records what it was asked; sacct replays what SLURM would say)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from slurm_fakes import run_submit, smoke_args

from aslhpc import cancel, status

FAKE_SCANCEL = '#!/bin/bash\necho "$*" >> "$(dirname "$0")/scancel.txt"\n'


def _sacct(bin_dir: Path, states: dict[int, str]) -> None:
    (bin_dir / "sacct.txt").write_text("".join(
        f"{j}|{j}|{s}|n1|00:00:09|0:0|t|t|2026-01-01T00:00:00|None\n" for j, s in sorted(states.items())))


def test_cancel_stops_the_live_jobs_records_them_and_retry_failed_resumes(
        fake_slurm: Path, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (fake_slurm / "scancel").write_text(FAKE_SCANCEL)
    (fake_slurm / "scancel").chmod(0o755)
    results = tmp_path / "results"
    args = smoke_args(dataset, results)
    assert run_submit(capsys, *args)[0] == 0  # jobs 101..104, one per cell
    _sacct(fake_slurm, {101: "COMPLETED", 102: "RUNNING", 103: "PENDING", 104: "RUNNING"})
    exp = results / "smoke"
    (exp / "cells" / "g1-b32-r0").mkdir(parents=True, exist_ok=True)

    assert cancel.main(["--results", str(results), "--experiment", "smoke"]) == 0
    out = capsys.readouterr().out
    # one scancel of the live jobs only (101 ended: left alone), and the line says how to resume
    assert (fake_slurm / "scancel.txt").read_text().split() == ["102", "103", "104"]
    assert "smoke: cancelled SLURM jobs 102 103 104 (3 cells); resume them with: " in out
    assert out.rstrip().endswith("submit --retry-failed")
    [record] = [json.loads(ln) for ln in (exp / "cancelled.jsonl").read_text().splitlines()]
    assert record["jobs"] == ["102", "103", "104"] and len(record["cells"]) == 3

    _sacct(fake_slurm, {101: "COMPLETED", 102: "CANCELLED", 103: "CANCELLED", 104: "CANCELLED"})
    status.main(["--results", str(results), "--experiment", "smoke"])
    shown = capsys.readouterr().out
    assert shown.count("CANCELLED") >= 3

    rc, out, err = run_submit(capsys, *args, "--retry-failed")
    assert rc == 0, err
    assert sum("resubmitted job" in ln and "was CANCELLED" in ln for ln in out.splitlines()) == 3, out

    _sacct(fake_slurm, {101: "COMPLETED", 102: "CANCELLED", 103: "CANCELLED", 104: "CANCELLED",
                        105: "COMPLETED", 106: "COMPLETED", 107: "COMPLETED"})
    capsys.readouterr()
    assert cancel.main(["--results", str(results), "--experiment", "smoke"]) == 0
    assert capsys.readouterr().out == "smoke: nothing queued or running to cancel\n"  # and no scancel
    assert (fake_slurm / "scancel.txt").read_text().split() == ["102", "103", "104"]
