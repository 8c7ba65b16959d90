"""Where an experiment stands: manifest + one batched sacct (or squeue) + each cell's files.

Cell files win over SLURM: ``result.json`` means COMPLETED whatever sacct says, and an
``error.json`` newer than the live attempt means FAILED once SLURM no longer runs the job.
:func:`experiment_status` returns plain rows (also as a pandas frame) that ``status``,
``submit --wait`` and ``collect`` share; :func:`render_table` draws them with rich.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from rich.table import Table
from rich.text import Text

from aslhpc.atomic import read_json, read_jsonl
from aslhpc.cellfiles import CellPaths
from aslhpc.orchestration.manifest import Attempt, CellEntry, Manifest, load_manifest
from aslhpc.slurm.accounting import (
    DONE_STATES,
    FAILED_STATES,
    LIVE_STATES,
    JobState,
    StateQuery,
    query_states,
)
from aslhpc.slurm.executor import job_name
from aslhpc.slurm.local import process_alive, runner_alive

NOT_SUBMITTED = "NOT_SUBMITTED"
UNKNOWN = "UNKNOWN"
#: seconds an error.json may predate its attempt's submission and still count (clock skew between hosts)
ERROR_SLACK_S = 5.0
ENDED_STATES = DONE_STATES | FAILED_STATES | {NOT_SUBMITTED}
_STYLE = {"COMPLETED": "green", "RUNNING": "cyan", "PENDING": "yellow", "REQUEUED": "yellow",
          "COMPLETING": "cyan", NOT_SUBMITTED: "dim", UNKNOWN: "magenta"}
# most telling first: a Python exception, SLURM's "*** JOB 12 CANCELLED AT ... ***", then any srun/slurmstepd error
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
    state: str = NOT_SUBMITTED
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
        return self.state in FAILED_STATES


@dataclass
class StatusReport:
    experiment: str
    manifest: Path
    rows: list[CellRow]
    source: str  # where live states came from: sacct | squeue | none | local
    note: str = ""
    epochs: int = 0
    checked_at: str = field(default_factory=lambda: dt.datetime.now().strftime("%H:%M:%S"))

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
        order = sorted(counts, key=lambda s: (s != "COMPLETED", s))
        parts = ", ".join(f"{counts[s]} {s}" for s in order)
        return f"{self.experiment}: {len(self.rows)} cells: {parts} (states from {self.source}, {self.checked_at})"

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(r) for r in self.rows])


# --------------------------------------------------------------------------- state of one cell


def _parse_time(text: str) -> dt.datetime | None:
    try:
        t = dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def error_is_current(error_time: str | None, attempt: Attempt | Mapping[str, Any] | None) -> bool:
    """Does an error.json written at ``error_time`` belong to the live ``attempt``?

    ``error_time`` is error.json's ``time`` (None: there is no error.json; '': one without a time).
    An error.json older than the attempt's submission (less :data:`ERROR_SLACK_S`, for clock skew
    between the submitting host and the node) was left by an earlier attempt: after
    ``submit --retry-failed`` it says nothing about the new job. Without an attempt, or with a time
    that does not parse, the error counts. ``attempt`` is a manifest :class:`Attempt` or its JSON dict.
    """
    if error_time is None:
        return False
    if attempt is None:
        return True
    submitted = attempt.get("submitted_at") if isinstance(attempt, Mapping) else attempt.submitted_at
    err_t, sub_t = _parse_time(error_time), _parse_time(str(submitted or ""))
    return err_t is None or sub_t is None or err_t >= sub_t - dt.timedelta(seconds=ERROR_SLACK_S)


def resolve_state(*, has_result: bool, error_time: str | None, attempt: Attempt | None, job: JobState | None,
                  local: str | None = None, runner_pending: bool = False, queue_read: bool = False) -> str:
    """The cell's state: files first, then the live job (SLURM or local process).

    ``error_time`` is error.json's time (None: no error.json; '': one without a time).
    ``queue_read``: squeue answered, so a SLURM job SLURM knows nothing of is no longer queued:
    it ended without a result (FAILED), rather than UNKNOWN forever (purged or lost accounting)."""
    if has_result:
        return "COMPLETED"
    if attempt is None:
        return "PENDING" if runner_pending else NOT_SUBMITTED
    live = local if attempt.cluster == "local" else (job.state if job else None)
    if live in LIVE_STATES:
        return live
    if error_is_current(error_time, attempt):  # an error.json of an earlier attempt (a retry) does not count
        return "FAILED"
    if live in FAILED_STATES:
        return live
    if live in DONE_STATES:
        return "FAILED"  # the job ended "successfully" without result.json: something is wrong
    if live is None and attempt.cluster == "slurm" and queue_read:
        return "FAILED"
    return UNKNOWN


def local_job_state(attempt: Attempt, experiment_dir: Path) -> str:
    """RUNNING while submitit's local controller lives; else from its result pickle."""
    if attempt.job_id.isdigit() and process_alive(int(attempt.job_id), "submitit.local._local"):
        return "RUNNING"
    folder = experiment_dir / attempt.folder
    pickle = folder / f"{attempt.job_id}_0_result.pkl"
    if pickle.exists():
        try:
            import cloudpickle

            with pickle.open("rb") as fh:
                outcome = cloudpickle.load(fh)[0]
            return "COMPLETED" if outcome == "success" else "FAILED"
        except Exception:  # noqa: BLE001 - an unreadable pickle says nothing more than its absence
            return "FAILED"
    return "CANCELLED"  # the process is gone and left no result: killed


def log_path(attempt: Attempt, experiment_dir: Path, stream: str = "err") -> Path:
    """submitit's per-task log: ``<folder>/<job_id>_0_log.<out|err>``."""
    return experiment_dir / attempt.folder / f"{attempt.job_id}_0_log.{stream}"


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


def _seconds(elapsed: str) -> float | None:
    m = re.match(r"^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)$", elapsed or "")
    if not m:
        return None
    d, h, mi, s = (int(g) if g else 0 for g in m.groups())
    return d * 86400 + h * 3600 + mi * 60 + s


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60}:{rem % 60:02d}"


def cell_row(entry: CellEntry, experiment_dir: Path, job: JobState | None, epochs_default: int,
             runner_pending: bool = False, queue_read: bool = False) -> CellRow:
    """Everything status shows about one cell (reads only the cell's files and the given job state)."""
    paths = CellPaths(experiment_dir / entry.out_dir)
    row = CellRow(entry.cell_id, entry.gpus, entry.batch_size, entry.strategy, entry.repeat,
                  attempts=len(entry.attempts), out_dir=str(paths.root), epochs=epochs_default)
    attempt = entry.last
    result = _read(paths.result)
    error = _read(paths.error)
    error_time = None if error is None else str(error.get("time") or "")
    local = local_job_state(attempt, experiment_dir) if attempt and attempt.cluster == "local" else None
    row.state = resolve_state(has_result=result is not None, error_time=error_time,
                              attempt=attempt, job=job, local=local, runner_pending=runner_pending,
                              queue_read=queue_read)
    if attempt is not None:
        row.job_id, row.cluster = attempt.job_id, attempt.cluster
    if job is not None:
        row.slurm_state, row.node, row.elapsed, row.restarts = job.raw_state, job.node, job.elapsed, job.restarts
    elif local is not None:
        row.slurm_state = local

    epochs = read_jsonl(paths.epochs)
    progress = _read(paths.progress) or {}
    config = (result or {}).get("config") or _read(paths.config) or {}
    row.epochs = int(progress.get("epochs") or config.get("epochs") or epochs_default or 0)
    row.epoch = max((int(e.get("epoch", 0)) for e in epochs), default=0)
    if epochs:
        row.val_acc = epochs[-1].get("val_acc")
        row.images_per_s = epochs[-1].get("images_per_s")
    if result is not None:
        row.epoch = int(result.get("epochs", row.epoch))
        row.images_per_s = result.get("images_per_s", row.images_per_s)
        row.val_acc = row.val_acc if row.val_acc is not None else result.get("val_acc")
        if not row.node:
            row.node = ((result.get("slurm") or {}).get("nodelist") or result.get("host") or "")
        if not row.elapsed:
            start, end = _parse_time(result.get("started_at", "")), _parse_time(result.get("finished_at", ""))
            # A resumed cell keeps its first start; like sacct's Elapsed, time the attempt that finished it.
            submitted = _parse_time(attempt.submitted_at) if attempt is not None else None
            if start and submitted and end and start < submitted <= end:
                start = submitted
            if start and end:
                row.elapsed = format_duration((end - start).total_seconds())
    elif row.state == "RUNNING":
        if not row.elapsed and attempt is not None and (t := _parse_time(attempt.submitted_at)):
            row.elapsed = format_duration((dt.datetime.now(dt.UTC) - t).total_seconds())
        times = [float(e["epoch_s"]) for e in epochs if e.get("epoch_s") is not None]
        if times and row.epochs:
            row.eta_s = sum(times) / len(times) * max(row.epochs - row.epoch, 0)

    if row.state == "PENDING" and job is not None and job.reason:
        row.error = f"waiting: {job.reason}"  # e.g. Resources, Priority, ReqNodeNotAvail, JobHeldAdmin
    if row.failed:
        if error is not None and error_is_current(error_time, attempt):
            row.error = str(error.get("error", "")).strip()
        if attempt is not None:
            log = log_path(attempt, experiment_dir)
            row.log = str(log)
            if not row.error:
                lost = job is None and attempt.cluster == "slurm"
                row.error = last_error_line(_tail(log)) or (
                    f"job {attempt.job_id} is no longer queued and SLURM has no record of how it ended; "
                    "resubmit with --retry-failed" if lost else f"{row.state} (no error recorded; see the log)")
    return row


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# --------------------------------------------------------------------------- an experiment


def _sacct_start(manifest: Manifest) -> str:
    """A sacct --starttime safely before the first submission (local date, one day of slack)."""
    created = _parse_time(manifest.created_at) or dt.datetime.now(dt.UTC)
    return (created.astimezone() - dt.timedelta(days=1)).strftime("%Y-%m-%d")


def experiment_status(manifest_path: str | Path, query: Callable[..., StateQuery] | None = None) -> StatusReport:
    """Rows for every cell of the experiment whose manifest is at ``manifest_path``.

    ``query(job_ids, starttime=...)`` asks SLURM (default :func:`query_states`: sacct, else squeue)."""
    query = query or query_states
    manifest_path = Path(manifest_path)
    manifest = load_manifest(manifest_path)
    if manifest is None:
        from aslhpc.errors import ConfigError

        raise ConfigError(f"no manifest at {manifest_path}; run python -m aslhpc.submit first "
                          "(or pass --results/--experiment)")
    exp_dir = manifest_path.parent
    slurm_ids = [e.last.job_id for e in manifest.cells.values() if e.last and e.last.cluster == "slurm"]
    if slurm_ids:
        states = query(slurm_ids, starttime=_sacct_start(manifest))
    else:
        states = StateQuery({}, "local" if manifest.cells and any(e.last for e in manifest.cells.values()) else "none")
    runner = runner_alive(exp_dir)
    epochs = int((manifest.spec.get("train") or {}).get("epochs") or 0)
    rows = []
    for entry in manifest.cells.values():
        job = states.states.get(entry.last.job_id) if entry.last and entry.last.cluster == "slurm" else None
        if job is not None and job.name not in ("", job_name(manifest.experiment, entry.cell_id)):
            job = None  # the id now belongs to someone else's job (SLURM restarted its ids): ours is gone
        rows.append(cell_row(entry, exp_dir, job, epochs, runner_pending=runner is not None,
                             queue_read=states.queue_read))
    note = states.note
    if runner is not None:
        note = (note + "; " if note else "") + f"local run in progress (pid {runner['pid']})"
    return StatusReport(manifest.experiment, manifest_path, rows, states.source, note, epochs)


# --------------------------------------------------------------------------- rendering


def render_table(report: StatusReport) -> Table:
    table = Table(title=f"{report.experiment}  ({report.manifest})", title_justify="left", expand=False)
    for name, justify in (("cell", "left"), ("job", "right"), ("state", "left"), ("node", "left"),
                          ("elapsed", "right"), ("epoch", "right"), ("val acc", "right"), ("img/s", "right"),
                          ("ETA", "right"), ("error / log", "left")):
        table.add_column(name, justify=justify, no_wrap=name != "error / log")  # type: ignore[arg-type]
    for r in report.rows:
        style = _STYLE.get(r.state, "red" if r.failed else "")
        state = r.state + (f" ({r.restarts} requeue{'s' if r.restarts != 1 else ''})" if r.restarts else "")
        note = ""
        if r.failed:
            note = r.error + (f"\nlog: {r.log}" if r.log else "")
        table.add_row(
            r.cell_id, r.job_id or "-", Text(state, style=style), r.node, r.elapsed,
            f"{r.epoch}/{r.epochs}" if r.epochs else "",
            f"{r.val_acc:.2f}%" if isinstance(r.val_acc, int | float) else "",
            f"{r.images_per_s:.0f}" if isinstance(r.images_per_s, int | float) else "",
            format_duration(r.eta_s), note)
    caption = report.summary() + (f"\n{report.note}" if report.note else "")
    table.caption = caption
    table.caption_justify = "left"
    return table


def watch(get_report: Callable[[], StatusReport], interval_s: float, console: Any = None,
          until_ended: bool = True) -> StatusReport:
    """Refresh the table in place (rich Live) until every cell has ended or Ctrl-C; return the last report."""
    from rich.console import Console
    from rich.live import Live

    console = console or Console()
    report = get_report()
    with Live(render_table(report), console=console, refresh_per_second=4, transient=False) as live:
        try:
            while not (until_ended and report.all_ended):
                time.sleep(interval_s)
                report = get_report()
                live.update(render_table(report))
        except KeyboardInterrupt:
            pass
    return report
