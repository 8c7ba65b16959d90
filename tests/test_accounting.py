"""sacct / squeue parsing against text recorded on the mini cluster (tests/golden/)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from aslhpc.slurm.accounting import parse_sacct, parse_squeue, query_states, sacct_command
from aslhpc.states import CellState

GOLDEN = Path(__file__).parent / "golden"
SACCT = (GOLDEN / "sacct_mixed.txt").read_text()
SQUEUE = (GOLDEN / "squeue_mixed.txt").read_text()


@pytest.mark.parametrize(("raw", "state"), [("CANCELLED by 0", "CANCELLED"), ("COMPLETED", "COMPLETED"),
                                            ("cancelled+", "CANCELLED"), ("", "UNKNOWN"), ("  ", "UNKNOWN"),
                                            ("OUT_OF_MEMORY", "OUT_OF_MEMORY"), ("REQUEUED", "REQUEUED"),
                                            ("SOME_NEW_WORD", "UNKNOWN")])
def test_slurm_state_text_reads_as_one_cell_state(raw: str, state: str) -> None:
    parsed = CellState.parse(raw)
    assert isinstance(parsed, CellState) and parsed == state


def test_parse_recorded_sacct() -> None:
    states = parse_sacct(SACCT)
    # steps (2.batch, 2.0) are not jobs; array tasks keep their own ids
    assert set(states) == {"2", "3", "4", "6", "7", "8", "9", "5_0", "5_1", "5_2"}
    assert states["2"].state == "COMPLETED" and states["2"].node == "n1" and states["2"].exit_code == "0:0"
    assert states["3"].state == "FAILED" and states["3"].exit_code == "3:0"
    assert states["4"].state == "CANCELLED" and states["4"].raw_state == "CANCELLED by 0"
    assert states["7"].state == "RUNNING" and states["7"].node == "n2" and states["7"].elapsed == "00:00:26"
    assert states["9"].state == "PENDING" and states["9"].node == ""  # "None assigned"
    # job 6 was requeued: the REQUEUED row is history, the latest row (PENDING again) wins
    assert states["6"].state == "PENDING" and states["6"].restarts == 1 and states["6"].reason == "BeginTime"
    assert states["5_2"].state == "COMPLETED"


def test_parse_sacct_edge_cases() -> None:
    assert parse_sacct("") == {}
    assert parse_sacct("JobID|State\n") == {}
    with pytest.raises(ValueError, match="header"):
        parse_sacct("12|RUNNING\n")
    # the latest row by submit time wins whatever the order
    text = "JobID|State|Submit\n5|RUNNING|2026-01-01T00:00:09\n5|REQUEUED|2026-01-01T00:00:01\n"
    assert parse_sacct(text)["5"].state == "RUNNING"
    assert parse_sacct(text)["5"].restarts == 1


def test_parse_recorded_squeue() -> None:
    states = parse_squeue(SQUEUE)
    assert states["6"].state == "PENDING" and states["9"].reason == "Resources"
    assert states["7"].state == "RUNNING" and states["7"].node == "n2" and states["7"].source == "squeue"


class FakeSlurm:
    """Plays recorded sacct/squeue output; ``sacct_rc`` != 0 mimics accounting being off."""

    def __init__(self, sacct: str = SACCT, squeue: str = "", sacct_rc: int = 0, squeue_rc: int = 0) -> None:
        self.sacct, self.squeue, self.sacct_rc, self.squeue_rc = sacct, squeue, sacct_rc, squeue_rc
        self.calls: list[list[str]] = []

    def __call__(self, cmd: list[str]) -> subprocess.CompletedProcess:
        self.calls.append(cmd)
        if cmd[0] == "sacct":
            err = "" if self.sacct_rc == 0 else "Slurm accounting storage is disabled"
            return subprocess.CompletedProcess(cmd, self.sacct_rc, self.sacct, err)
        if cmd[0] == "squeue":
            err = "" if self.squeue_rc == 0 else "boom"
            return subprocess.CompletedProcess(cmd, self.squeue_rc, self.squeue, err)
        raise AssertionError(cmd)


def test_one_batched_sacct_call_for_all_jobs() -> None:
    fake = FakeSlurm()
    q = query_states(["2", "4", "7", "999"], starttime="2026-11-24", run=fake)
    sacct_calls = [c for c in fake.calls if c[0] == "sacct"]
    assert len(sacct_calls) == 1
    assert sacct_calls[0] == sacct_command(["2", "4", "7", "999"], "2026-11-24")
    assert "--parsable2" in sacct_calls[0] and "--jobs" in sacct_calls[0] and "2,4,7,999" in sacct_calls[0]
    assert q.source == "sacct" and set(q.states) == {"2", "4", "7"}  # unknown ids are just absent


def test_squeue_wins_for_live_jobs_because_sacct_lags() -> None:
    sacct = "JobID|State|NodeList|Elapsed|Submit\n7|PENDING|n2|00:00:01|2026-01-01T00:00:00\n"
    fake = FakeSlurm(sacct=sacct, squeue="7|RUNNING|n2|0:02|None\n")
    q = query_states(["7"], run=fake)
    assert q.states["7"].state == "RUNNING" and q.states["7"].node == "n2"


def test_squeue_when_accounting_is_off_and_none_when_nothing_answers() -> None:
    q = query_states(["6", "7", "2"], run=FakeSlurm(sacct_rc=1, squeue=SQUEUE))
    assert q.source == "squeue" and set(q.states) == {"6", "7"} and "accounting" in q.note
    q = query_states(["7"], run=FakeSlurm(sacct_rc=1, squeue_rc=1))
    assert q.source == "none" and q.states == {} and "sacct" in q.note

    def missing(cmd: list[str]) -> subprocess.CompletedProcess:
        raise FileNotFoundError(cmd[0])

    q = query_states(["7"], run=missing)
    assert q.source == "none"
    assert query_states([], run=missing).source == "none"


def test_job_names_from_sacct_and_squeue() -> None:
    header = "JobID|JobIDRaw|State|Submit|Reason|JobName\n"
    named = parse_sacct(header + "7|7|RUNNING|2026-11-25T16:00:34|None|aslhpc-smoke-g1-b32-r0\n")
    assert named["7"].name == "aslhpc-smoke-g1-b32-r0"
    # slurmdbd calls a starting job "allocation" for a moment: that names nothing
    assert parse_sacct(header + "7|7|RUNNING|2026-11-25T16:00:34|None|allocation\n")["7"].name == ""
    queued = parse_squeue("7|RUNNING|n1|0:03|None|aslhpc-smoke-g1-b32-r0\n")
    assert queued["7"].name == "aslhpc-smoke-g1-b32-r0"


def test_array_tasks_waiting_in_one_row_become_one_row_per_task() -> None:
    from aslhpc.slurm.accounting import expand_task_ids

    header = "JobID|JobIDRaw|State|Submit|Reason|JobName\n"
    text = header + ("40_0|41|RUNNING|2026-11-25T16:00:34|None|aslhpc-e-array\n"
                     "40_[1-2,5%4]|40|PENDING|2026-11-25T16:00:34|JobArrayTaskLimit|aslhpc-e-array\n")
    states = parse_sacct(text)
    assert sorted(states) == ["40_0", "40_1", "40_2", "40_5"]
    assert states["40_5"].state == "PENDING" and states["40_1"].reason == "JobArrayTaskLimit"
    queued = parse_squeue("40_[3-4%2]|PENDING||0:00|JobArrayTaskLimit|aslhpc-e-array\n")
    assert queued.keys() == {"40_3", "40_4"}
    assert expand_task_ids("12") == ["12"] and expand_task_ids("12_7") == ["12_7"]


def test_status_asks_only_for_our_jobs_once_per_refresh_and_names_each_array_once() -> None:
    """10,000 cells in arrays: one sacct (allocations only) and one squeue (--me, these jobs) with the array
    ids on the command line, not every task's; squeue's "Invalid job id" (none queued) is an answer."""
    calls = []

    def run(cmd: list[str]) -> subprocess.CompletedProcess:
        calls.append(cmd)
        if cmd[0] == "sacct":
            text = "JobID|State|JobName\n40_1|COMPLETED|x\n7|FAILED|y\n"
            return subprocess.CompletedProcess(cmd, 0, text, "")
        return subprocess.CompletedProcess(cmd, 1, "", "slurm_load_jobs error: Invalid job id specified")

    ids = [f"40_{t}" for t in range(5000)] + [f"41_{t}" for t in range(4999)] + ["7"]
    q = query_states(ids, run=run)
    assert [c[0] for c in calls] == ["sacct", "squeue"]
    sacct, squeue = calls
    assert "-X" in sacct and sacct[sacct.index("--jobs") + 1] == "7,40,41"
    assert squeue[:2] == ["squeue", "--me"] and "-r" in squeue and "--jobs=7,40,41" in squeue
    assert q.queue_read and q.states["40_1"].state == "COMPLETED" and q.states["7"].state == "FAILED"
