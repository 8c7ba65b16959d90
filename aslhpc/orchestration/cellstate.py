"""Where an experiment stands: one state per cell, derived once, for ``status``, ``submit`` and ``collect``.

A cell's files are read once into a :class:`~aslhpc.orchestration.cellrecord.CellRecord`;
:func:`derive_state` turns a record (plus, for status, what SLURM or the local runner says) into
one state of one vocabulary (below). Cell files win over SLURM: ``result.json`` means COMPLETED
whatever sacct says, and an ``error.json`` newer than the live attempt means FAILED once SLURM no
longer runs the job. :func:`experiment_status` returns plain rows; rendering lives in
:mod:`aslhpc.status`.

States: SLURM's own words for a job (PENDING, RUNNING, FAILED, CANCELLED, TIMEOUT, NODE_FAIL,
OUT_OF_MEMORY, ... see :mod:`aslhpc.slurm.accounting`) plus COMPLETED (result.json is there),
NOT_SUBMITTED, UNKNOWN (SLURM cannot tell), DAMAGED (a cell file or its manifest path is not
what aslhpc writes) and INCOMPLETE (no SLURM answer asked for; the files stopped changing long
ago). The words are :class:`aslhpc.states.CellState`; every state returned here is one.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from aslhpc.errors import ConfigError
from aslhpc.invocation import aslhpc_command
from aslhpc.orchestration.backend import NEVER_STARTED, AttemptView, backend_for
from aslhpc.orchestration.backend import local_job_state as local_job_state  # re-exported: status uses it
from aslhpc.orchestration.cellrecord import CellRecord, load_cell
from aslhpc.orchestration.manifest import Attempt, Manifest, load_manifest
from aslhpc.slurm.accounting import JobState, StateQuery, query_states
from aslhpc.slurm.executor import job_name
from aslhpc.slurm.local import runner_alive
from aslhpc.states import DONE as DONE_STATES
from aslhpc.states import ENDED as ENDED_STATES
from aslhpc.states import FAILED as FAILED_STATES
from aslhpc.states import LIVE as LIVE_STATES
from aslhpc.states import RETRYABLE, CellState

# the old module-level names, kept as the enum's members (a CellState is a str: "COMPLETED" == COMPLETED)
COMPLETED = CellState.COMPLETED
RUNNING = CellState.RUNNING
PENDING = CellState.PENDING
FAILED = CellState.FAILED
NOT_SUBMITTED = CellState.NOT_SUBMITTED
UNKNOWN = CellState.UNKNOWN
DAMAGED = CellState.DAMAGED
INCOMPLETE = CellState.INCOMPLETE
#: local_job_state: submitit's local controller is gone after writing its result file (ran to its end)
ENDED = CellState.ENDED
#: seconds an error.json may predate its attempt's submission and still count (clock skew between hosts)
ERROR_SLACK_S = 5.0
#: progress older than this (seconds), with no SLURM answer asked for, reads as INCOMPLETE, not RUNNING
STALE_PROGRESS_S = 1800.0
#: why a DDP cell whose ranks diverged is not a result (result.json ``ranks.in_sync`` false)
RANKS_DIVERGED = "DDP ranks ended with different weights (ranks.in_sync false)"
# most telling first: a Python exception, SLURM's "*** JOB 12 CANCELLED AT ... ***", then srun/slurmstepd
_LOG_TIERS = (re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit|Failure)\b"),
              re.compile(r"^slurmstepd(-\S+)?: error: \*\*\*.*\*\*\*"),  # slurmstepd-<node>: on newer SLURM
              re.compile(r"^(slurmstepd|srun)(-\S+)?: error:"))


@dataclass
class CellRow:
    """One line of the status table."""

    cell_id: str
    gpus: int
    batch_size: int
    strategy: str
    repeat: int
    state: CellState = NOT_SUBMITTED
    job_id: str = ""
    cluster: str = ""
    slurm_state: str = ""
    node: str = ""
    elapsed: str = ""
    epoch: int = 0
    epochs: int = 0
    val_acc: float | None = None
    images_per_s: float | None = None
    eta_s: float | None = None
    error: str = ""
    log: str = ""
    attempts: int = 0
    restarts: int = 0
    out_dir: str = ""

    @property
    def ended(self) -> bool:
        return self.state in ENDED_STATES

    @property
    def failed(self) -> bool:
        return self.state in RETRYABLE


@dataclass
class StatusReport:
    experiment: str
    manifest: Path
    rows: list[CellRow]
    source: str  # where live states came from: sacct | squeue | none | local
    note: str = ""
    epochs: int = 0
    checked_at: str = field(default_factory=lambda: dt.datetime.now().strftime("%H:%M:%S"))
    collect: CellRow | None = None  # the dependent collect job (submit --collect): a row, not a cell

    def counts(self) -> dict[str, int]:
        return dict(Counter(r.state for r in self.rows))

    @property
    def all_ended(self) -> bool:
        return all(r.ended for r in self.rows)

    @property
    def any_failed(self) -> bool:
        return any(r.failed for r in self.rows)

    def summary(self) -> str:
        counts = self.counts()
        order = sorted(counts, key=lambda s: (s != COMPLETED, s))
        parts = ", ".join(f"{counts[s]} {s}" for s in order)
        return (f"{self.experiment}: {len(self.rows)} cells: {parts} "
                f"(states from {self.source}, {self.checked_at})")

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(r) for r in self.rows])


@dataclass(frozen=True)
class Live:
    """What the cluster says about a cell's last attempt (status asks; collect alone does not)."""

    job: JobState | None = None  # SLURM's answer for the attempt's job id (None: no record)
    local: str | None = None  # a local attempt: :func:`local_job_state`
    queue_read: bool = False  # squeue answered, so a job it does not list is no longer queued
    runner_pending: bool = False  # a local ``submit`` run is alive and will start unsubmitted cells


# --------------------------------------------------------------------------- the state of one cell


def _parse_time(text: str) -> dt.datetime | None:
    try:
        t = dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def one_line(text: str, limit: int = 200) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def error_is_current(error_time: str | None, attempt: Attempt | None) -> bool:
    """Does an error.json written at ``error_time`` belong to the live ``attempt``?

    ``error_time`` is error.json's ``time`` (None: there is no error.json; '': one without a time).
    An error.json older than the attempt's submission (less :data:`ERROR_SLACK_S`, for clock skew
    between the submitting host and the node) was left by an earlier attempt: after
    ``submit --retry-failed`` it says nothing about the new job. Without an attempt, or with a time
    that does not parse, the error counts.
    """
    if error_time is None:
        return False
    if attempt is None:
        return True
    err_t, sub_t = _parse_time(error_time), _parse_time(str(attempt.submitted_at or ""))
    return err_t is None or sub_t is None or err_t >= sub_t - dt.timedelta(seconds=ERROR_SLACK_S)


def resolve_state(*, has_result: bool, error_time: str | None, attempt: Attempt | None, job: JobState | None,
                  local: str | None = None, runner_pending: bool = False,
                  queue_read: bool = False) -> CellState:
    """The cell's state from its files and the live job (SLURM or local process).

    ``error_time`` is error.json's time (None: no error.json; '': one without a time).
    ``queue_read``: squeue answered, so a SLURM job SLURM knows nothing of is no longer queued:
    it ended without a result (FAILED), rather than UNKNOWN forever (purged or lost accounting)."""
    if has_result:
        return COMPLETED
    if attempt is None:
        return PENDING if runner_pending else NOT_SUBMITTED
    queued = backend_for(attempt.cluster).queued
    live = (job.state if job else None) if queued else local
    if live in LIVE_STATES:
        return CellState(live)
    if error_is_current(error_time, attempt):  # an error.json of an earlier attempt (a retry) does not count
        return FAILED
    if live in FAILED_STATES:
        return CellState(live)
    if live in DONE_STATES or live == ENDED:
        return FAILED  # the job ended "successfully" without result.json: something is wrong
    if live is None and queued and queue_read:
        return FAILED
    return UNKNOWN


def _files_state(rec: CellRecord, now: float) -> tuple[CellState, str]:
    """State and reason of a cell without a result when no cluster was asked: its files alone."""
    if rec.error is not None and error_is_current(rec.error.time, rec.last):
        return FAILED, one_line(rec.error.error or "error.json has no 'error' line")
    if rec.touched is not None:
        p = rec.progress
        where = (f"epoch {p.epoch}/{'?' if p.epochs is None else p.epochs}, {p.phase}"
                 if p is not None and p.epoch is not None else "epochs.jsonl present")
        age = now - rec.touched
        ago = f"{age / 60:.0f} min ago" if age < 7200 else f"{age / 3600:.1f} h ago"
        if age > STALE_PROGRESS_S:
            return INCOMPLETE, f"no result.json; last progress {ago} ({where}); job may have died"
        return RUNNING, f"{where}; updated {ago}"
    if rec.last is not None:
        return PENDING, f"submitted as job {rec.last.job_id}, no output yet"
    if rec.exists:
        return PENDING, "cell directory exists but holds no result, error or progress"
    return NOT_SUBMITTED, "in the manifest but never submitted (no attempts, no files)"


def derive_state(rec: CellRecord, live: Live | None = None,
                 now: float | None = None) -> tuple[CellState, str]:
    """The cell's one state and, where the files say it, why.

    ``live`` is what status learnt from SLURM / the local runner; without it (collect on its own)
    the files alone decide (:func:`_files_state`). A damaged file makes the cell DAMAGED whatever
    SLURM says: status and collect show what is wrong instead of guessing."""
    if rec.damaged:
        return DAMAGED, rec.damaged
    if rec.result is not None:
        return (FAILED, RANKS_DIVERGED) if rec.ranks_diverged else (COMPLETED, "")
    if live is None:
        return _files_state(rec, time.time() if now is None else now)
    err_time = rec.error.time if rec.error is not None else None
    state = resolve_state(has_result=False, error_time=err_time, attempt=rec.last, job=live.job,
                          local=live.local, runner_pending=live.runner_pending, queue_read=live.queue_read)
    return state, ""


def last_error_line(text: str) -> str:
    """The most telling line of a log: the last exception / slurmstepd error, else the last line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for tier in _LOG_TIERS:
        for ln in reversed(lines):
            if tier.match(ln):
                return ln
    return lines[-1] if lines else ""


def _tail(path: Path, limit: int = 64_000) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - limit))
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60}:{rem % 60:02d}"


# --------------------------------------------------------------------------- a status row


def _progress_columns(row: CellRow, rec: CellRecord, epochs_default: int) -> None:
    """epoch, epochs, val acc, images/s, node, elapsed and ETA from the record."""
    attempt = rec.last
    config = rec.config or {}
    row.epochs = int((rec.progress and rec.progress.epochs) or config.get("epochs") or epochs_default or 0)
    row.epoch = max((e.epoch for e in rec.epochs), default=0)
    if rec.epochs:
        row.val_acc, row.images_per_s = rec.epochs[-1].val_acc, rec.epochs[-1].images_per_s
    res = rec.result
    if res is not None:
        row.epoch = res["epochs"] if res.get("epochs") is not None else row.epoch
        row.images_per_s = res["images_per_s"] if res.get("images_per_s") is not None else row.images_per_s
        row.val_acc = row.val_acc if row.val_acc is not None else res.get("val_acc")
        row.node = row.node or (res.get("slurm") or {}).get("nodelist") or res.get("host") or ""
        if not row.elapsed:
            start, end = _parse_time(res.get("started_at") or ""), _parse_time(res.get("finished_at") or "")
            # A resumed cell keeps its first start; like sacct's Elapsed, time the attempt that finished it.
            submitted = _parse_time(attempt.submitted_at) if attempt is not None else None
            if start and submitted and end and start < submitted <= end:
                start = submitted
            if start and end:
                row.elapsed = format_duration((end - start).total_seconds())
    elif row.state == RUNNING:
        if not row.elapsed and attempt is not None and (t := _parse_time(attempt.submitted_at)):
            row.elapsed = format_duration((dt.datetime.now(dt.UTC) - t).total_seconds())
        times = [e.epoch_s for e in rec.epochs if e.epoch_s is not None]
        if times and row.epochs:
            row.eta_s = sum(times) / len(times) * max(row.epochs - row.epoch, 0)


def _explain(row: CellRow, rec: CellRecord, live: Live, reason: str) -> None:
    """The error column: why a job waits, or the most telling line of why a cell failed."""
    attempt, job = rec.last, live.job
    if row.state == PENDING and job is not None and job.reason:
        row.error = f"waiting: {job.reason}"  # e.g. Resources, Priority, ReqNodeNotAvail, JobHeldAdmin
    if not row.failed:
        return
    if reason:
        row.error = reason
    elif rec.error is not None and error_is_current(rec.error.time, attempt):
        row.error = rec.error.error
    elif job is not None and job.reason == NEVER_STARTED:
        row.error = f"{NEVER_STARTED}; resubmit with --retry-failed"
        return
    if attempt is None or rec.log is None:
        return
    row.log = str(rec.log)
    if not row.error:
        lost = job is None and backend_for(attempt.cluster).queued
        row.error = last_error_line(_tail(rec.log)) or (
            f"job {attempt.job_id} is no longer queued and SLURM has no record of how it ended; "
            "resubmit with --retry-failed" if lost else f"{row.state} (no error recorded; see the log)")


def cell_row(rec: CellRecord, live: Live, epochs_default: int) -> CellRow:
    """Everything status shows about one cell of the manifest, from its record and its live job."""
    entry = rec.entry
    assert entry is not None, "status rows are for manifest cells"
    row = CellRow(entry.cell_id, entry.gpus, entry.batch_size, entry.strategy, entry.repeat,
                  attempts=len(entry.attempts), out_dir=str(rec.paths.root), epochs=epochs_default)
    row.state, reason = derive_state(rec, live)
    if rec.last is not None:
        row.job_id, row.cluster = rec.last.job_id, rec.last.cluster
    if live.job is not None:
        job = live.job
        row.slurm_state, row.node, row.elapsed = job.raw_state, job.node, job.elapsed
        row.restarts = job.restarts
    elif live.local is not None:
        row.slurm_state = live.local
    row.restarts = max(row.restarts, rec.restarts)  # sacct may forget a requeue; result.json does not
    _progress_columns(row, rec, epochs_default)
    _explain(row, rec, live, reason)
    return row


# --------------------------------------------------------------------------- an experiment


def _sacct_start(manifest: Manifest) -> str:
    """A sacct --starttime safely before the first submission (local date, one day of slack)."""
    created = _parse_time(manifest.created_at) or dt.datetime.now(dt.UTC)
    return (created.astimezone() - dt.timedelta(days=1)).strftime("%Y-%m-%d")


def read_manifest(manifest_path: Path) -> Manifest:
    manifest = load_manifest(manifest_path)
    if manifest is None:
        raise ConfigError(f"no manifest at {manifest_path}; run {aslhpc_command('submit')} first "
                          "(or pass --results/--experiment)")
    return manifest


def experiment_status(manifest_path: str | Path,
                      query: Callable[..., StateQuery] | None = None) -> StatusReport:
    """Rows for every cell of the experiment whose manifest is at ``manifest_path``.

    ``query(job_ids, starttime=...)`` asks SLURM (default :func:`query_states`: sacct, else squeue)."""
    query = query or query_states
    manifest_path = Path(manifest_path)
    manifest = read_manifest(manifest_path)
    exp_dir = manifest_path.parent
    slurm_ids = [e.last.job_id for e in manifest.cells.values()
                 if e.last and backend_for(e.last.cluster).queued]
    if manifest.collect is not None:
        slurm_ids.append(manifest.collect.job_id)  # the same one sacct call
    if slurm_ids:
        states = query(slurm_ids, starttime=_sacct_start(manifest))
    else:
        states = StateQuery({}, "local" if any(e.last for e in manifest.cells.values()) else "none")
    runner = runner_alive(exp_dir)
    epochs = int((manifest.spec.get("train") or {}).get("epochs") or 0)
    rows = []
    for entry in manifest.cells.values():
        rec = load_cell(exp_dir, entry.cell_id, entry, manifest.spec)
        attempt, job, local = entry.last, None, None
        if attempt is not None:
            view = AttemptView(manifest.experiment, exp_dir, entry.cell_id, states, bool(rec.damaged))
            try:
                job, local = backend_for(attempt.cluster).observe(attempt, view)
            except OSError as exc:  # jobs/<cell> unreadable (chmod 000): this cell only
                why = exc.strerror or type(exc).__name__
                rec.damaged = f"{attempt.folder}: unreadable ({why}); fix its permissions"
        live = Live(job, local, queue_read=states.queue_read, runner_pending=runner is not None)
        rows.append(cell_row(rec, live, epochs))
    note = states.note
    if runner is not None:
        note = (note + "; " if note else "") + f"local run in progress (pid {runner['pid']})"
    return StatusReport(manifest.experiment, manifest_path, rows, states.source, note, epochs,
                        collect=_collect_row(manifest, exp_dir, states))


def _collect_row(manifest: Manifest, exp_dir: Path, states: StateQuery) -> CellRow | None:
    """The collect job's row: SLURM's state; without one, COMPLETED if report.md is there, else UNKNOWN."""
    attempt = manifest.collect
    if attempt is None:
        return None
    row = CellRow("collect", 0, 0, "", 0, job_id=attempt.job_id, cluster="slurm")
    job = states.states.get(attempt.job_id)
    if job is not None and job.name not in ("", job_name(manifest.experiment, "collect")):
        job = None
    report = exp_dir / "report.md"
    if job is not None:
        row.state, row.node, row.elapsed, row.slurm_state = job.state, job.node, job.elapsed, job.raw_state
        if job.state == PENDING and job.reason:
            row.error = f"waiting: {job.reason}"
    else:
        row.state = COMPLETED if report.is_file() else UNKNOWN
    if row.state == COMPLETED and report.is_file():
        row.out_dir = str(report)
    return row


# --------------------------------------------------------------------------- damaged cells, set aside

#: the cell files whose damage ``submit --retry-failed`` can set aside (what the trainer writes and reads)
_MOVABLE = re.compile(r"^(result|error(\.rank\d+)?|progress|config)\.json$|^epochs\.jsonl$")


def damaged_file(damage: str) -> str:
    """The cell file a DAMAGED row's reason names ("<file>: <what is wrong>"), '' when the damage is not
    one such file (a manifest path outside the experiment, an unreadable folder): then only a person can
    fix it."""
    name = damage.split(":", 1)[0].strip()
    return name if _MOVABLE.match(name) else ""


def set_aside_damaged(exp_dir: Path, cell_id: str, manifest: Manifest | None = None,
                      stamp: str | None = None) -> tuple[Path, list[str]]:
    """Move a DAMAGED cell's damaged files into ``<cell>/damaged-<UTC stamp>/`` (nothing is deleted), one
    at a time until its files read clean, so a retry can run it; (that folder, the names moved).

    A damaged ``epochs.jsonl`` takes the checkpoint with it: resuming from it would write a history that
    starts mid-way."""
    from aslhpc.cellfiles import CHECKPOINT, EPOCHS

    stamp = stamp or dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    entry = manifest.cells.get(cell_id) if manifest else None
    spec = manifest.spec if manifest else None
    moved: list[str] = []
    folder = Path()
    for _ in range(16):  # bounded: each movable file at most once
        rec = load_cell(exp_dir, cell_id, entry, spec)
        name = damaged_file(rec.damaged)
        root = rec.paths.root
        folder = root / f"damaged-{stamp}"
        if not name or name in moved or not (root / name).exists():
            break
        folder.mkdir(exist_ok=True)
        names = [name] + ([CHECKPOINT] if name == EPOCHS and (root / CHECKPOINT).exists() else [])
        for n in names:
            (root / n).replace(folder / n)
            moved.append(n)
    return folder, moved
