"""status: manifest + (recorded) sacct + cell files -> one row per cell; files win over SLURM."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest
from experiment_builders import complete_result
from rich.console import Console

from aslhpc import status as status_cli
from aslhpc.orchestration.cellstate import (
    experiment_status,
    last_error_line,
    local_job_state,
    resolve_state,
)
from aslhpc.orchestration.experiment import REPO_JOBS, load_spec
from aslhpc.orchestration.manifest import Attempt, Manifest, manifest_path
from aslhpc.slurm.accounting import JobState, StateQuery, parse_sacct
from aslhpc.status import render_table

GOLDEN = Path(__file__).parent / "golden"
T0 = "2026-11-25T16:00:00+00:00"


def iso(minutes: float) -> str:
    return (dt.datetime.fromisoformat(T0) + dt.timedelta(minutes=minutes)).isoformat()


def write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    """A 4-cell smoke experiment (g1-b32 / g1-b64 / g2-b32 / g2-b64) with attempts as job ids 2, 3, 4, 7."""
    spec = load_spec(REPO_JOBS / "smoke.toml")
    m = Manifest.new(spec)
    m.ensure_cells(spec.cells())
    for cid, job in zip(
        ["g1-b32-r0", "g1-b64-r0", "g2-b32-r0", "g2-b64-r0"], ["2", "3", "4", "7"], strict=True
    ):
        m.record(cid, Attempt(job, "slurm", T0, f"jobs/{cid}/{job}"))
    path = manifest_path(tmp_path / "results", "smoke")
    m.save(path)
    return path


def fake_query(text: str):  # noqa: ANN201
    def query(ids: list[str], starttime: str = "") -> StateQuery:
        return StateQuery({k: v for k, v in parse_sacct(text).items() if k in ids}, "sacct")

    return query


SACCT = (GOLDEN / "sacct_mixed.txt").read_text()  # 2 COMPLETED, 3 FAILED, 4 CANCELLED by 0, 7 RUNNING


def test_rows_combine_sacct_and_cell_files(experiment: Path) -> None:
    exp = experiment.parent
    # g1-b32 (job 2, COMPLETED in sacct) has its result
    write_json(
        exp / "cells/g1-b32-r0/result.json",
        {
            **complete_result("g1-b32-r0", 1, 32),
            "status": "completed",
            "epochs": 2,
            "val_acc": 91.0,
            "images_per_s": 321.0,
            "slurm": {"nodelist": "n1"},
            "started_at": iso(0),
            "finished_at": iso(1.5),
        },
    )
    # g1-b64 (job 3, FAILED) wrote error.json
    write_json(
        exp / "cells/g1-b64-r0/error.json",
        {"error": "RuntimeError: CUDA out of memory", "traceback": "...", "time": iso(1)},
    )
    # g2-b32 (job 4, CANCELLED by 0): no error.json, the submitit log has the story
    log = exp / "jobs/g2-b32-r0/4/4_0_log.err"
    log.parent.mkdir(parents=True)
    log.write_text("submitit INFO (x) - Starting\nslurmstepd: error: *** STEP 4.0 ON n1 CANCELLED AT t ***\n")
    # g2-b64 (job 7, RUNNING): 1 of 2 epochs done
    cell = exp / "cells/g2-b64-r0"
    cell.mkdir(parents=True)
    (cell / "epochs.jsonl").write_text(
        json.dumps({"epoch": 1, "val_acc": 55.5, "images_per_s": 99.0, "epoch_s": 30.0}) + "\n"
    )
    write_json(cell / "progress.json", {"epoch": 2, "epochs": 2, "batch": 3, "batches": 10, "phase": "train"})

    report = experiment_status(experiment, query=fake_query(SACCT))
    rows = {r.cell_id: r for r in report.rows}
    assert [r.cell_id for r in report.rows] == ["g1-b32-r0", "g1-b64-r0", "g2-b32-r0", "g2-b64-r0"]
    done = rows["g1-b32-r0"]
    assert (done.state, done.epoch, done.epochs, done.val_acc, done.images_per_s) == (
        "COMPLETED",
        2,
        2,
        91.0,
        321.0,
    )
    failed = rows["g1-b64-r0"]
    assert failed.state == "FAILED" and failed.error == "RuntimeError: CUDA out of memory"
    assert failed.log.endswith("jobs/g1-b64-r0/3/3_0_log.err")
    cancelled = rows["g2-b32-r0"]
    assert cancelled.state == "CANCELLED" and cancelled.slurm_state == "CANCELLED by 0"
    assert cancelled.error.startswith("slurmstepd: error: *** STEP 4.0 ON n1 CANCELLED")
    running = rows["g2-b64-r0"]
    assert (running.state, running.node, running.epoch, running.epochs) == ("RUNNING", "n2", 1, 2)
    assert (running.val_acc, running.images_per_s, running.eta_s) == (55.5, 99.0, 30.0)
    assert report.counts() == {"COMPLETED": 1, "FAILED": 1, "CANCELLED": 1, "RUNNING": 1}
    assert not report.all_ended and report.any_failed
    assert "4 cells: 1 COMPLETED, 1 CANCELLED, 1 FAILED, 1 RUNNING" in report.summary()

    frame = report.frame()
    assert list(frame["state"]) == ["COMPLETED", "FAILED", "CANCELLED", "RUNNING"]
    console = Console(record=True, width=220)
    console.print(render_table(report))
    text = console.export_text()
    for needle in ("g2-b64-r0", "RUNNING", "1/2", "55.50%", "0:30", "CUDA out of memory", "3_0_log.err"):
        assert needle in text, needle


def test_result_json_wins_over_stale_sacct(experiment: Path) -> None:
    exp = experiment.parent
    write_json(exp / "cells/g2-b64-r0/result.json", complete_result("g2-b64-r0", 2, 64))
    report = experiment_status(experiment, query=fake_query(SACCT))  # sacct still says job 7 RUNNING
    assert {r.cell_id: r.state for r in report.rows}["g2-b64-r0"] == "COMPLETED"


def test_without_any_slurm_answer_states_are_unknown(experiment: Path) -> None:
    report = experiment_status(experiment, query=lambda ids, starttime="": StateQuery({}, "none", "sacct: x"))
    assert {r.state for r in report.rows} == {"UNKNOWN"} and report.source == "none" and not report.all_ended


def test_resolve_state_rules() -> None:
    a = Attempt("9", "slurm", iso(10), "jobs/x/9")
    job = lambda s: JobState("9", s)  # noqa: E731
    assert resolve_state(has_result=True, error_time=iso(11), attempt=a, job=job("FAILED")) == "COMPLETED"
    assert resolve_state(has_result=False, error_time=None, attempt=None, job=None) == "NOT_SUBMITTED"
    assert (
        resolve_state(has_result=False, error_time=None, attempt=None, job=None, runner_pending=True)
        == "PENDING"
    )
    # an error.json from an earlier attempt does not fail the resubmitted, pending one...
    assert resolve_state(has_result=False, error_time=iso(1), attempt=a, job=job("PENDING")) == "PENDING"
    assert resolve_state(has_result=False, error_time=iso(1), attempt=a, job=job("CANCELLED")) == "CANCELLED"
    # ...but a fresh one does, once SLURM no longer runs the job
    assert resolve_state(has_result=False, error_time=iso(12), attempt=a, job=job("COMPLETED")) == "FAILED"
    assert resolve_state(has_result=False, error_time=iso(12), attempt=a, job=job("RUNNING")) == "RUNNING"
    assert resolve_state(has_result=False, error_time=None, attempt=a, job=job("TIMEOUT")) == "TIMEOUT"
    assert resolve_state(has_result=False, error_time=None, attempt=a, job=job("COMPLETED")) == "FAILED"
    assert resolve_state(has_result=False, error_time=None, attempt=a, job=None) == "UNKNOWN"
    # squeue answered and does not list it, and accounting has no record: it ended, with no result
    assert resolve_state(has_result=False, error_time=None, attempt=a, job=None, queue_read=True) == "FAILED"


def test_last_error_line() -> None:
    tb = (
        'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\n'
        "submitit.core.utils.UncompletedJobError: Job not requeued because: timed-out too many times.\n"
        "submitit WARNING (2026) - something after\n"
    )
    assert last_error_line(tb).startswith("submitit.core.utils.UncompletedJobError: Job not requeued")
    assert last_error_line("just text\nlast line\n") == "last line"
    slurm = (
        "slurmstepd: error: *** JOB 5 ON n1 CANCELLED AT 2026-11-25T16:31:01 DUE TO TIME LIMIT ***\n"
        "srun: error: n1: task 0: Killed\n"
    )
    assert last_error_line(slurm).endswith("DUE TO TIME LIMIT ***")
    newer = (
        "slurmstepd-n1: error: *** JOB 5 ON n1 CANCELLED AT 2026-11-25T16:31:01 ***\n"
        "srun: error: n1: task 0: Killed\n"
    )  # SLURM 23+ names the node in the prefix
    assert last_error_line(newer).startswith("slurmstepd-n1: error: *** JOB 5")
    assert last_error_line("srun: error: n1: task 0: Killed\nbye\n") == "srun: error: n1: task 0: Killed"
    assert last_error_line("") == ""


def test_local_attempts_state_from_process_and_result_file_never_unpickled(tmp_path: Path) -> None:
    """submitit's local result pickle tells only that the job ran to its end: it is never opened (a planted
    pickle would run code), and the cell's own files say how it ended."""
    import pickle

    a = Attempt("999999999", "local", T0, "jobs/c/999999999")
    assert local_job_state(a, tmp_path) == "CANCELLED"  # no such process, no result
    folder = tmp_path / a.folder
    folder.mkdir(parents=True)
    planted = tmp_path / "pwned"
    (folder / "999999999_0_result.pkl").write_bytes(pickle.dumps(_Plant(str(planted))))
    assert local_job_state(a, tmp_path) == "ENDED"
    assert resolve_state(has_result=False, error_time=None, attempt=a, job=None, local="ENDED") == "FAILED"
    assert resolve_state(has_result=True, error_time=None, attempt=a, job=None, local="ENDED") == "COMPLETED"
    assert not planted.exists()
    me = Attempt(str(os.getpid()), "local", T0, "x")
    assert local_job_state(me, tmp_path) == "CANCELLED"  # alive, but not a submitit controller (pid reuse)


class _Plant:
    """Unpickling this creates a file: proof that something unpickled it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # noqa: ANN204
        return (open, (self.path, "w"))


def test_cli_exit_status_and_experiment_lookup(
    experiment: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    results = experiment.parent.parent
    monkeypatch.setattr("aslhpc.orchestration.cellstate.query_states", fake_query(SACCT))
    assert status_cli.main(["--results", str(results)]) == 1  # jobs 3 FAILED and 4 CANCELLED
    out = capsys.readouterr().out
    assert "smoke" in out and "CANCELLED" in out and "FAILED" in out
    for cid in ("g1-b32-r0", "g1-b64-r0", "g2-b32-r0", "g2-b64-r0"):
        write_json(experiment.parent / f"cells/{cid}/result.json",
                   complete_result(cid, int(cid[1]), int(cid.split("-")[1][1:])))
    assert status_cli.main(["--results", str(results), "--experiment", "smoke"]) == 0
    assert "4 COMPLETED" in capsys.readouterr().out
    assert status_cli.main(["--results", str(results), "--watch", "0.5"]) == 0  # all ended: returns at once
    assert status_cli.main(["--results", str(results), "--experiment", "nope"]) == 2
    assert "no experiment 'nope'" in capsys.readouterr().err
    assert status_cli.main(["--results", str(results / "none")]) == 2


def _retry(experiment: Path, cid: str, job: str, at: str) -> None:
    from aslhpc.orchestration.manifest import load_manifest

    m = load_manifest(experiment)
    m.record(cid, Attempt(job, "slurm", at, f"jobs/{cid}/{job}"))
    m.save(experiment)


def test_a_retry_that_dies_before_training_shows_its_own_error_not_the_old_one(experiment: Path) -> None:
    """Job 3 failed with an error.json; --retry-failed resubmitted it as job 9, which died before the trainer
    started (NODE_FAIL): status must show job 9's story, not job 3's error line."""
    exp = experiment.parent
    write_json(
        exp / "cells/g1-b64-r0/error.json", {"error": "RuntimeError: CUDA out of memory", "time": iso(1)}
    )
    _retry(experiment, "g1-b64-r0", "9", iso(10))
    sacct = SACCT.replace(
        "9|9|PENDING|None assigned|00:00:00|0:0|Unknown|Unknown|",
        "9|9|NODE_FAIL|n1|00:00:03|0:0|2026-11-25T16:10:05|2026-11-25T16:10:08|",
    )
    row = {r.cell_id: r for r in experiment_status(experiment, query=fake_query(sacct)).rows}["g1-b64-r0"]
    assert row.state == "NODE_FAIL" and row.job_id == "9"
    assert row.error == "NODE_FAIL (no error recorded; see the log)" and row.log.endswith(
        "jobs/g1-b64-r0/9/9_0_log.err"
    )
    log = exp / "jobs/g1-b64-r0/9/9_0_log.err"
    log.parent.mkdir(parents=True)
    log.write_text("srun: error: Unable to create step for job 9: Job/step already completing or completed\n")
    row = {r.cell_id: r for r in experiment_status(experiment, query=fake_query(sacct)).rows}["g1-b64-r0"]
    assert row.error.startswith("srun: error: Unable to create step for job 9")


def test_collect_agrees_with_status_on_a_pending_retry(
    experiment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the resubmitted job waits in the queue, status says PENDING and collect's hole says pending too
    (not "failed" with the previous attempt's error)."""
    from aslhpc.collect import live_states
    from aslhpc.snapshot import load_matrix

    exp = experiment.parent
    write_json(
        exp / "cells/g1-b64-r0/error.json", {"error": "RuntimeError: CUDA out of memory", "time": iso(1)}
    )
    _retry(experiment, "g1-b64-r0", "9", iso(10))  # job 9 is PENDING in the recorded sacct
    monkeypatch.setattr("aslhpc.orchestration.cellstate.query_states", fake_query(SACCT))
    row = {r.cell_id: r for r in experiment_status(experiment).rows}["g1-b64-r0"]
    assert (row.state, row.error) == ("PENDING", "")
    states = live_states(exp)
    assert states is not None and states["g1-b64-r0"][0] == "PENDING"
    frame = load_matrix(exp, states).set_index("cell_id")
    assert frame.loc["g1-b64-r0", "state"] == "PENDING"
    assert (
        "job 9" in frame.loc["g1-b64-r0", "reason"]
        and "out of memory" not in frame.loc["g1-b64-r0", "reason"]
    )
    # the cells status calls failed / running keep their status words and say why
    assert (
        frame.loc["g2-b32-r0", "state"] == "CANCELLED" and "4_0_log.err" in frame.loc["g2-b32-r0", "reason"]
    )
    assert (
        frame.loc["g2-b64-r0", "state"] == "RUNNING"
        and "slurm job 7 on n2" in frame.loc["g2-b64-r0", "reason"]
    )


def test_a_resumed_cell_shows_the_elapsed_time_of_the_attempt_that_finished_it(experiment: Path) -> None:
    """The result keeps the first attempt's start; with no SLURM elapsed (local runs) the row times the
    last attempt (resubmitted at minute 50, finished at 52), not the 52 minutes since the first start."""
    exp = experiment.parent
    _retry(experiment, "g1-b32-r0", "11", iso(50))
    write_json(
        exp / "cells/g1-b32-r0/result.json",
        complete_result("g1-b32-r0", 1, 32, started_at=T0, finished_at=iso(52)),
    )
    query = lambda ids, starttime="": StateQuery({}, "none", "sacct: x")  # noqa: E731
    row = {r.cell_id: r for r in experiment_status(experiment, query=query).rows}["g1-b32-r0"]
    assert row.state == "COMPLETED" and row.elapsed == "2:00"


def test_a_pending_cell_shows_why_slurm_holds_it(experiment: Path) -> None:
    _retry(experiment, "g1-b64-r0", "9", iso(10))
    held = SACCT.replace(
        "9|9|PENDING|None assigned|00:00:00|0:0|Unknown|Unknown|2026-11-25T16:00:34|None|",
        "9|9|PENDING|None assigned|00:00:00|0:0|Unknown|Unknown|2026-11-25T16:00:34|JobHeldAdmin|",
    )
    assert held != SACCT
    row = {r.cell_id: r for r in experiment_status(experiment, query=fake_query(held)).rows}["g1-b64-r0"]
    assert row.state == "PENDING" and row.error == "waiting: JobHeldAdmin"


def test_a_job_slurm_lost_track_of_is_failed_and_retryable_not_unknown_forever(experiment: Path) -> None:
    """Accounting purged (or slurmdbd rebuilt): sacct has no record of job 3 and squeue does not list it."""
    from aslhpc.orchestration.experiment import load_spec
    from aslhpc.orchestration.submission import plan_cells

    without_3 = "\n".join(ln for ln in SACCT.splitlines() if not ln.startswith("3"))
    states = parse_sacct(without_3)

    def query(ids: list[str], starttime: str = "") -> StateQuery:
        return StateQuery({k: v for k, v in states.items() if k in ids}, "sacct", queue_read=True)

    report = experiment_status(experiment, query=query)
    row = {r.cell_id: r for r in report.rows}["g1-b64-r0"]
    assert row.state == "FAILED" and "no longer queued" in row.error and "--retry-failed" in row.error
    assert report.any_failed
    actions = {
        a.cell.cell_id: a.action for a in plan_cells(load_spec(REPO_JOBS / "smoke.toml"), report, True)
    }
    assert actions["g1-b64-r0"] == "retry"
    # squeue unreachable too: nothing is known, so nothing is concluded
    unknown = experiment_status(
        experiment,
        query=lambda ids, starttime="": StateQuery({k: v for k, v in states.items() if k in ids}, "sacct"),
    )
    assert {r.cell_id: r.state for r in unknown.rows}["g1-b64-r0"] == "UNKNOWN"


def test_a_reused_job_id_is_not_taken_for_the_cells_job(experiment: Path) -> None:
    """SLURM restarted its job ids: id 3 now names another experiment's job. The cell's own job is gone."""
    from aslhpc.slurm.accounting import JobState
    from aslhpc.slurm.executor import job_name

    def query(ids: list[str], starttime: str = "") -> StateQuery:
        jobs = {
            "2": JobState("2", "COMPLETED", "COMPLETED", name=job_name("smoke", "g1-b32-r0")),
            "3": JobState("3", "RUNNING", node="n9", name="aslhpc-other-g4-b512-r0"),
        }
        return StateQuery({k: v for k, v in jobs.items() if k in ids}, "sacct", queue_read=True)

    rows = {r.cell_id: r for r in experiment_status(experiment, query=query).rows}
    assert (
        rows["g1-b64-r0"].state == "FAILED" and rows["g1-b64-r0"].node == ""
    )  # not the stranger's RUNNING on n9
    assert "no longer queued" in rows["g1-b64-r0"].error
    assert rows["g1-b32-r0"].slurm_state == "COMPLETED"  # its own name: kept


def test_a_damaged_manifest_is_one_error_line(experiment: Path, capsys: pytest.CaptureFixture) -> None:
    experiment.write_text('{"schema": 1, "cells": {"g1-b32-r0": ')
    assert status_cli.main(["--results", str(experiment.parent.parent), "--experiment", "smoke"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "manifest.json" in err[0]


def test_a_ddp_rank_that_failed_alone_names_its_error(experiment: Path) -> None:
    """Under NCCL a rank > 0 that raised may be the only one that wrote an error (rank 0 hangs in a
    collective until the watchdog kills it): status shows the first rank's error.rank<r>.json."""
    exp = experiment.parent
    write_json(exp / "cells/g1-b64-r0/error.rank3.json",
               {"error": "ValueError: rank 3 later", "time": iso(1)})
    write_json(exp / "cells/g1-b64-r0/error.rank1.json", {"error": "OSError: rank 1 disk", "time": iso(1)})
    rows = {r.cell_id: r for r in experiment_status(experiment, query=fake_query(SACCT)).rows}
    assert rows["g1-b64-r0"].state == "FAILED"
    assert rows["g1-b64-r0"].error == "OSError: rank 1 disk"
    # rank 0's error.json, when there is one, comes first
    write_json(exp / "cells/g1-b64-r0/error.json", {"error": "RuntimeError: rank 0", "time": iso(1)})
    rows = {r.cell_id: r for r in experiment_status(experiment, query=fake_query(SACCT)).rows}
    assert rows["g1-b64-r0"].error == "RuntimeError: rank 0"


def test_an_array_task_cancelled_before_it_started_reads_cancelled_not_lost(tmp_path: Path) -> None:
    """SLURM keeps no accounting record of an array task cancelled while pending (seen on the mini cluster:
    sacct lists 176_0 and 176_1, never 176_2): with sacct and squeue answering, that task was cancelled."""
    from dataclasses import replace

    from aslhpc.orchestration.cellstate import NEVER_STARTED, experiment_status

    spec = replace(load_spec(REPO_JOBS / "smoke.toml"), results=str(tmp_path))
    m = Manifest.new(spec)
    m.ensure_cells(spec.cells())
    for task, cid in enumerate(["g1-b32-r0", "g1-b64-r0"]):
        m.record(cid, Attempt(f"176_{task}", "slurm", "2026-11-30T08:00:00+00:00", f"jobs/array-t/176_{task}",
                              "t", "176", task))
    path = spec.experiment_dir / "manifest.json"
    m.save(path)
    ran = JobState("176_0", "FAILED", "FAILED", name="aslhpc-smoke-array")

    def query(ids, starttime=""):  # noqa: ANN001, ANN202
        return StateQuery({"176_0": ran}, "sacct", queue_read=True)

    rows = {r.cell_id: r for r in experiment_status(path, query=query).rows}
    assert rows["g1-b32-r0"].state == "FAILED"
    assert rows["g1-b64-r0"].state == "CANCELLED" and NEVER_STARTED in rows["g1-b64-r0"].error
    lost = {r.cell_id: r for r in experiment_status(path, query=lambda ids, starttime="": StateQuery(
        {"176_0": ran}, "sacct", queue_read=False)).rows}
    assert lost["g1-b64-r0"].state == "UNKNOWN"  # squeue silent: nobody can tell


@pytest.mark.parametrize("width", [80, 120])
def test_the_table_keeps_every_header_and_value_at_80_and_120_columns(experiment: Path, width: int) -> None:
    """Real clusters have 8-digit array task ids, OUT_OF_MEMORY states and long cell ids: at 80 columns
    they fold onto a second line; no header or value loses its end to an ellipsis."""
    report = experiment_status(experiment, query=fake_query(SACCT))
    long = report.rows[1]
    long.job_id, long.state, long.restarts = "12345678_11", "OUT_OF_MEMORY", 2
    report.rows[0].cell_id = "g4-b512-ddp-blocked-r12"
    console = Console(width=width, record=True, color_system=None)
    console.print(render_table(report))
    text = console.export_text()
    assert "…" not in text and max(len(ln) for ln in text.splitlines()) <= width
    head = next(ln for ln in text.splitlines() if "cell" in ln and "state" in ln)
    for name in ("cell", "job", "state", "node", "elapsed", "epoch", "val acc", "img/s", "ETA"):
        assert name in head
    flat = text.replace("\n", " ")
    for value in ("g4-b512-ddp-blocked-r12", "OUT_OF_MEMORY"):
        assert value in flat or value[:8] in flat  # whole, or folded across lines
