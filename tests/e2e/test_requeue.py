"""Preemption: a running cell gets submitit's preemption signals after its first epoch checkpoint,
requeues itself, resumes from that epoch and ends with exactly E epochs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import submitit

from aslhpc.atomic import read_jsonl
from aslhpc.orchestration.manifest import load_manifest

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("slurm_cluster")]
EPOCHS = 3


def test_preempted_cell_resumes_from_its_epoch_checkpoint(cli, synth_root: Path, tmp_path: Path,
                                                          wait_ended) -> None:
    results = tmp_path / "results"
    p = cli.submit("jobs/smoke.toml", "--data", synth_root, "--results", results, "--gpus", "1",
                   "--batch-sizes", "32", "--epochs", EPOCHS)
    assert p.returncode == 0, p.stderr
    manifest_path = results / "smoke" / "manifest.json"
    entry = load_manifest(manifest_path).cells["g1-b32-r0"]
    cell = results / "smoke" / entry.out_dir
    folder = results / "smoke" / entry.last.folder

    deadline = time.monotonic() + 120
    while not (cell / "checkpoint.pt").exists() or not read_jsonl(cell / "epochs.jsonl"):
        assert time.monotonic() < deadline, "no epoch checkpoint within 120 s"
        assert not (cell / "result.json").exists(), "the cell finished before it could be preempted"
        time.sleep(0.2)
    # what a preemption does: SIGTERM then USR2 to the job steps (submitit's own test helper)
    submitit.SlurmJob(folder=folder.parent / "%j", job_id=entry.last.job_id)._interrupt()

    report = wait_ended(manifest_path, timeout=180)
    row = report.rows[0]
    assert row.state == "COMPLETED", row
    assert row.restarts >= 1  # sacct --duplicates shows the REQUEUED incarnation
    epochs = [e["epoch"] for e in read_jsonl(cell / "epochs.jsonl")]
    assert epochs == list(range(1, EPOCHS + 1))  # exactly E lines, no duplicate epoch
    result = json.loads((cell / "result.json").read_text())
    assert result["epochs"] == EPOCHS and int(result["slurm"]["restarts"]) >= 1
    log = (folder / f"{entry.last.job_id}_0_log.out").read_text()
    err = (folder / f"{entry.last.job_id}_0_log.err").read_text()
    assert "resuming g1-b32-r0" in log, log[-2000:]
    assert "Requeued job" in err or "requeue" in err.lower()


def test_a_preempted_array_task_resumes_from_its_checkpoint(cli, synth_root: Path, tmp_path: Path,
                                                            wait_ended) -> None:
    """The same for one task of a job array: submitit requeues ``<array>_<task>`` alone and it resumes."""
    results = tmp_path / "results"
    p = cli.submit("jobs/smoke.toml", "--data", synth_root, "--results", results, "--gpus", "1",
                   "--batch-sizes", "32,64", "--epochs", EPOCHS)
    assert p.returncode == 0, p.stderr
    manifest_path = results / "smoke" / "manifest.json"
    entry = load_manifest(manifest_path).cells["g1-b32-r0"]
    assert entry.last.array_id and entry.last.job_id == f"{entry.last.array_id}_0"
    cell = results / "smoke" / entry.out_dir
    folder = results / "smoke" / entry.last.folder

    deadline = time.monotonic() + 120
    while not (cell / "checkpoint.pt").exists() or not read_jsonl(cell / "epochs.jsonl"):
        assert time.monotonic() < deadline, "no epoch checkpoint within 120 s"
        assert not (cell / "result.json").exists(), "the cell finished before it could be preempted"
        time.sleep(0.2)
    submitit.SlurmJob(folder=folder.parent / "%j", job_id=entry.last.job_id)._interrupt()

    report = wait_ended(manifest_path, timeout=240)
    rows = {r.cell_id: r for r in report.rows}
    assert {r.state for r in rows.values()} == {"COMPLETED"}, rows
    assert rows["g1-b32-r0"].restarts >= 1 and rows["g1-b32-r0"].job_id == entry.last.job_id
    epochs = [e["epoch"] for e in read_jsonl(cell / "epochs.jsonl")]
    assert epochs == list(range(1, EPOCHS + 1))
    log = (folder / f"{entry.last.job_id}_0_log.out").read_text()
    assert "resuming g1-b32-r0" in log, log[-2000:]
