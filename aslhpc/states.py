"""The one state vocabulary: what a cell (or a job) is, for submit, status, collect and every analysis.

SLURM's own words for a job, plus aslhpc's words for what only the cell files can tell. A
:class:`CellState` is a ``str`` (a ``StrEnum``), so it compares equal to SLURM's text ("RUNNING"),
goes into JSON and pandas frames as that text, and prints as it. Nothing else defines a state.
"""

from __future__ import annotations

from enum import StrEnum


class CellState(StrEnum):
    """One cell's state; SLURM's job states keep SLURM's spelling."""

    # aslhpc's own
    COMPLETED = "COMPLETED"  # result.json is there and valid: the cell has a result
    NOT_SUBMITTED = "NOT_SUBMITTED"  # no attempt in the manifest
    UNKNOWN = "UNKNOWN"  # SLURM cannot tell
    DAMAGED = "DAMAGED"  # a cell file (or its manifest entry) is not what aslhpc writes
    INCOMPLETE = "INCOMPLETE"  # no SLURM answer asked for; the cell's files stopped changing long ago
    ENDED = "ENDED"  # local runner: its controller is gone after writing its outcome
    # SLURM's: live
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    REQUEUED = "REQUEUED"
    REQUEUE_HOLD = "REQUEUE_HOLD"
    REQUEUE_FED = "REQUEUE_FED"
    COMPLETING = "COMPLETING"
    CONFIGURING = "CONFIGURING"
    RESIZING = "RESIZING"
    SUSPENDED = "SUSPENDED"
    STOPPED = "STOPPED"
    SIGNALING = "SIGNALING"
    STAGE_OUT = "STAGE_OUT"
    RESV_DEL_HOLD = "RESV_DEL_HOLD"
    SPECIAL_EXIT = "SPECIAL_EXIT"
    # SLURM's: ended without a result
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    NODE_FAIL = "NODE_FAIL"
    BOOT_FAIL = "BOOT_FAIL"
    DEADLINE = "DEADLINE"
    PREEMPTED = "PREEMPTED"
    REVOKED = "REVOKED"

    @classmethod
    def parse(cls, text: str) -> CellState:
        """SLURM's state text ("CANCELLED by 0", "cancelled", sacct's truncated "CANCELLED+") as a state;
        UNKNOWN for '' and for words this vocabulary does not hold (sacct's raw text is kept beside it)."""
        word = (text or "").strip().split(" ", 1)[0].rstrip("+").upper()
        try:
            return cls(word)
        except ValueError:
            return cls.UNKNOWN


#: states in which a job still holds, or will get, resources: never submit a second job then
LIVE = frozenset({
    CellState.PENDING, CellState.RUNNING, CellState.REQUEUED, CellState.REQUEUE_HOLD,
    CellState.REQUEUE_FED, CellState.COMPLETING, CellState.CONFIGURING, CellState.RESIZING,
    CellState.SUSPENDED, CellState.STOPPED, CellState.SIGNALING, CellState.STAGE_OUT,
    CellState.RESV_DEL_HOLD, CellState.SPECIAL_EXIT,
})
#: ended without a result: what ``submit --retry-failed`` submits again
FAILED = frozenset({
    CellState.FAILED, CellState.CANCELLED, CellState.TIMEOUT, CellState.OUT_OF_MEMORY,
    CellState.NODE_FAIL, CellState.BOOT_FAIL, CellState.DEADLINE, CellState.PREEMPTED, CellState.REVOKED,
})
DONE = frozenset({CellState.COMPLETED})
#: nothing more will happen to the cell without a new submit
ENDED = DONE | FAILED | {CellState.NOT_SUBMITTED, CellState.DAMAGED}
#: ended without a usable result: what ``submit --retry-failed`` may submit again (a DAMAGED cell's files
#: are not a result: a forged or garbled result.json, a torn error.json)
RETRYABLE = FAILED | {CellState.DAMAGED}
