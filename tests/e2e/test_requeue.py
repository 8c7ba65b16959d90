"""Preemption: a running cell gets submitit's preemption signals after its first epoch checkpoint,
requeues itself, resumes from that epoch and ends with exactly E epochs.

The cell's trainer waits after epoch 1's checkpoint (:data:`aslhpc.errors.HOLD_ENV`) until the signals
come: on a loaded machine a cell of a few short epochs could otherwise finish, or be exiting, before
they arrive (then SLURM kills a process that no longer handles them: FAILED, never requeued).
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
import submitit

from aslhpc.atomic import read_jsonl
from aslhpc.errors import HOLD_ENV
from aslhpc.orchestration.manifest import load_manifest

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("slurm_cluster")]
EPOCHS = 3
CELL = "g1-b32-r0"
#: generous: a loaded machine starts jobs and decodes the data cache slowly; a poll, never a fixed sleep
CHECKPOINT_WAIT_S = 300


@pytest.fixture
def holding_cli(cli):  # noqa: ANN001, ANN201 - conftest's Cli
    """The CLIs with :data:`HOLD_ENV` naming CELL: its job (which inherits the environment) waits for the
    test's signals after epoch 1's checkpoint."""
    return replace(cli, env={**cli.env, HOLD_ENV: CELL})


def wait_for_first_checkpoint(cell: Path) -> None:
    """Poll until the cell's epoch 1 line and checkpoint are there (its trainer then waits for signals)."""
    deadline = time.monotonic() + CHECKPOINT_WAIT_S
    while not (cell / "checkpoint.pt").exists() or not read_jsonl(cell / "epochs.jsonl"):
        assert time.monotonic() < deadline, f"no epoch checkpoint in {cell} within {CHECKPOINT_WAIT_S} s"
        assert not (cell / "result.json").exists(), "the cell finished before it could be preempted"
        time.sleep(0.2)
    assert [e["epoch"] for e in read_jsonl(cell / "epochs.jsonl")] == [1]  # held at epoch 1, not past it


def test_preempted_cell_resumes_from_its_epoch_checkpoint(holding_cli, synth_root: Path, tmp_path: Path,
                                                          wait_ended) -> None:
    results = tmp_path / "results"
    p = holding_cli.submit("jobs/smoke.toml", "--data", synth_root, "--results", results, "--gpus", "1",
                           "--batch-sizes", "32", "--epochs", EPOCHS)
    assert p.returncode == 0, p.stderr
    manifest_path = results / "smoke" / "manifest.json"
    entry = load_manifest(manifest_path).cells[CELL]
    cell = results / "smoke" / entry.out_dir
    folder = results / "smoke" / entry.last.folder

    wait_for_first_checkpoint(cell)
    # what a preemption does: SIGTERM then USR2 to the job steps (submitit's own test helper)
    submitit.SlurmJob(folder=folder.parent / "%j", job_id=entry.last.job_id)._interrupt()

    report = wait_ended(manifest_path, timeout=300)
    row = report.rows[0]
    assert row.state == "COMPLETED", row
    assert row.restarts >= 1  # sacct --duplicates shows the REQUEUED incarnation
    epochs = [e["epoch"] for e in read_jsonl(cell / "epochs.jsonl")]
    assert epochs == list(range(1, EPOCHS + 1))  # exactly E lines, no duplicate epoch
    result = json.loads((cell / "result.json").read_text())
    assert result["epochs"] == EPOCHS and int(result["slurm"]["restarts"]) >= 1
    log = (folder / f"{entry.last.job_id}_0_log.out").read_text()
    err = (folder / f"{entry.last.job_id}_0_log.err").read_text()
    assert f"resuming {CELL}" in log, log[-2000:]
    assert "Requeued job" in err or "requeue" in err.lower()


def test_a_preempted_array_task_resumes_from_its_checkpoint(holding_cli, synth_root: Path, tmp_path: Path,
                                                            wait_ended) -> None:
    """The same for one task of a job array: submitit requeues ``<array>_<task>`` alone and it resumes."""
    results = tmp_path / "results"
    p = holding_cli.submit("jobs/smoke.toml", "--data", synth_root, "--results", results, "--gpus", "1",
                           "--batch-sizes", "32,64", "--epochs", EPOCHS)
    assert p.returncode == 0, p.stderr
    manifest_path = results / "smoke" / "manifest.json"
    entry = load_manifest(manifest_path).cells[CELL]
    assert entry.last.array_id and entry.last.job_id == f"{entry.last.array_id}_0"
    cell = results / "smoke" / entry.out_dir
    folder = results / "smoke" / entry.last.folder

    wait_for_first_checkpoint(cell)
    submitit.SlurmJob(folder=folder.parent / "%j", job_id=entry.last.job_id)._interrupt()

    report = wait_ended(manifest_path, timeout=300)
    rows = {r.cell_id: r for r in report.rows}
    assert {r.state for r in rows.values()} == {"COMPLETED"}, rows
    assert rows[CELL].restarts >= 1 and rows[CELL].job_id == entry.last.job_id
    epochs = [e["epoch"] for e in read_jsonl(cell / "epochs.jsonl")]
    assert epochs == list(range(1, EPOCHS + 1))
    log = (folder / f"{entry.last.job_id}_0_log.out").read_text()
    assert f"resuming {CELL}" in log, log[-2000:]
