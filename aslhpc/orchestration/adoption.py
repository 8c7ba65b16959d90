"""How each backend adopts the jobs of interrupted submissions, so that a cell never gets a second live job.

Submit writes an :class:`~aslhpc.orchestration.manifest.Intent` (a token) into the manifest before
each sbatch and the job id right after; the job carries the token in its ``--comment``
(:func:`aslhpc.slurm.accounting.job_comment`). A submit killed in between, or one whose manifest
write failed on a full disk, leaves an intent with no attempt.
:func:`~aslhpc.orchestration.reconcile.reconcile_manifest` hands each backend its intents
(:func:`adopt_slurm`, :func:`adopt_local`), which settle them from what SLURM (or this machine) says:

* a queued/running job of this user named for the cell whose tag carries the intent's token
  (``squeue --me``) is adopted: recorded as the cell's attempt, exactly as if submit had lived;
* else a job that already ended (``sacct -X --name``) is adopted too, so status shows how it ended, if
  it is this attempt's: its tag carries the token, or, where accounting keeps no comments
  (``AccountingStoreFlags`` without ``job_comment``), the attempt's own folder
  ``jobs/<cell>/<token>/`` holds files of that job id. A job some attempt already records is never
  adopted again (an older attempt's job of the same name is not this one).
* else the sbatch never happened: the intent is dropped and the cell can be submitted.

Job arrays: the cells of one array share one intent token (the array's tag,
``aslhpc:<experiment>:array:<token>``) and each intent names the cell's task index; a task
``<array>_<task>`` of a job named :func:`~aslhpc.slurm.executor.array_name` carrying that token
is the cell's job (its files are ``jobs/array-<token>/<array>_<task>_*``).

Each attempt has its own folder, created (0700) before its sbatch: ``jobs/<cell>/<token>/`` for a plain
job, ``jobs/array-<token>/`` for an array; submitit writes ``<id>_submitted.pkl``, ``<id>_0_log.out`` ...
there, so a job that starts at once finds the folder of its logs.

Local cells (submitit's LocalExecutor) are found the same way by their controller process
(``python -m submitit.local._local <experiment>/jobs/<cell>/%j``, which outlives a killed submit).

If squeue does not answer, nobody can tell whether a job exists: that is a :class:`ClusterError`
and nothing is submitted. These are the backends' internals, below :mod:`aslhpc.orchestration.backend`;
the folder helpers and the submit lock are shared with submission.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aslhpc.errors import ClusterError
from aslhpc.orchestration.manifest import Attempt, Intent, Manifest, now_iso
from aslhpc.slurm.accounting import (
    Runner,
    TaggedJob,
    array_base,
    ended_jobs_named,
    queued_jobs_named,
    run_slurm_command,
)
from aslhpc.slurm.executor import array_name, job_name, stray_pickles, submitted_pickle
from aslhpc.states import CellState

SUBMIT_LOCK = ".submit.lock"
LOCAL_CONTROLLER = "submitit.local._local"
#: seconds a job's sacct Submit time may precede its intent (clock rounding; sacct shows whole seconds)
SLACK_S = 60


@contextlib.contextmanager
def submit_lock(experiment_dir: Path, *, wait: bool = False) -> Iterator[bool]:
    """Hold ``<experiment>/.submit.lock``: one submit (or reconcile) per experiment at a time.

    Yields True when held; with ``wait=False`` yields False at once if another process holds it."""
    experiment_dir.mkdir(parents=True, exist_ok=True)
    with open(experiment_dir / SUBMIT_LOCK, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True


@dataclass
class Reconciled:
    """What a reconcile did: jobs adopted, intents found to have started nothing."""

    adopted: list[tuple[str, str, str]] = field(default_factory=list)  # (cell_id, job_id, state)
    dropped: list[str] = field(default_factory=list)
    busy: bool = False  # a submit holds the lock: it records its own jobs, nothing was done here
    note: str = ""  # why nothing could be saved (status without write access), else ''

    @property
    def changed(self) -> bool:
        return bool(self.adopted or self.dropped)

    def lines(self) -> list[str]:
        out = [f"{cell:<16} adopted     job {job} ({state}), left by an interrupted submit"
               for cell, job, state in self.adopted]
        if self.note:
            out.append(f"warning: {self.note}")
        return out


def _utc(text: str) -> dt.datetime | None:
    try:
        t = dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return t if t.tzinfo else t.astimezone()  # sacct prints local time without a zone


def _sacct_since(intents: list[Intent]) -> str:
    times = [t for t in (_utc(i.since) for i in intents) if t is not None]
    start = min(times, default=dt.datetime.now(dt.UTC)) - dt.timedelta(seconds=SLACK_S)
    return start.astimezone().strftime("%Y-%m-%dT%H:%M:%S")


def array_folder(token: str) -> str:
    """The submitit folder of the job array tagged ``token``, relative to the experiment directory."""
    return f"jobs/array-{token}"


def cell_folder(cell_id: str, token: str) -> str:
    """The folder of a cell's job submitted with ``token``, relative to the experiment directory."""
    return f"jobs/{cell_id}/{token}"


def intent_folder(experiment_dir: Path, cell_id: str, intent: Intent) -> Path:
    """The attempt folder of ``intent``: where its job's files are (or will be)."""
    rel = array_folder(intent.token) if intent.task is not None else cell_folder(cell_id, intent.token)
    return experiment_dir / rel


def has_files_of(folder: Path, job_id: str) -> bool:
    """Does ``folder`` hold any file submitit names for ``job_id`` (``<id>_submitted.pkl``, ``<id>_0_log.*``)?
    Only this attempt's jobs write there."""
    try:
        return any(p.name.startswith(f"{job_id}_") for p in folder.iterdir())
    except OSError:
        return False


def _is_task(job: TaggedJob, intent: Intent) -> bool:
    """Is ``job`` the intent's array task (``<array>_<task>``)? Plain intents match plain job ids only."""
    base, sep, task = job.job_id.partition("_")
    if intent.task is None:
        return not sep
    return bool(sep) and task == str(intent.task) and base.isdigit()


def _slurm_match(cell_id: str, intent: Intent, queued: list[TaggedJob], ended: list[TaggedJob],
                 name: str, experiment_dir: Path, known: set[str]) -> TaggedJob | None:
    """The intent's job: queued with its token, else ended with its token or, untagged, with files in the
    attempt's own folder; never a job in ``known`` (ids some attempt records already)."""
    for job in queued:
        if job.name == name and job.token == intent.token and _is_task(job, intent):
            return job
    since = _utc(intent.since)
    folder = intent_folder(experiment_dir, cell_id, intent)
    for job in ended:
        if job.job_id in known or job.name != name or (job.token and job.token != intent.token):
            continue
        if not _is_task(job, intent):
            continue
        submitted = _utc(job.submit)
        if since is not None and (submitted is None or submitted < since - dt.timedelta(seconds=SLACK_S)):
            continue
        if job.token == intent.token or has_files_of(folder, job.job_id):
            return job
    return None


def finish_array_handoff(experiment_dir: Path, token: str, job_ids: list[str]) -> bool:
    """:func:`finish_handoff` for a job array: submitit dumps one ``<uuid>.pkl`` per task, in task order,
    into ``jobs/array-<token>/``, runs sbatch, then renames each to ``<array>_<task>_submitted.pkl``.
    The strays left by a submit killed in between are matched to the tasks still missing theirs by age
    (oldest first, as they were written). True when every task's pickle is (now) in place."""
    folder = experiment_dir / array_folder(token)
    missing = [j for j in sorted(job_ids, key=lambda j: int(j.partition("_")[2] or 0))
               if not submitted_pickle(folder, j).exists()]
    if not missing:
        return True
    strays = stray_pickles(folder)
    if len(strays) != len(missing):
        return False
    try:
        for job_id, stray in zip(missing, strays, strict=True):
            stray.rename(submitted_pickle(folder, job_id))
    except OSError:
        return False
    return True


def finish_handoff(folder: Path, job_id: str) -> bool:
    """Put the job's pickle where the job looks for it, if submit died before submitit did.

    submitit dumps the call to ``<folder>/<uuid>.pkl``, runs sbatch, then renames it to
    ``<folder>/<id>_submitted.pkl``; a job that starts without it waits 60 s and fails. A submit killed
    (or out of disk) in between leaves the uuid pickle behind: the attempt's folder holds only its own
    call, so the newest stray is this job's. Only files are renamed; nothing is unpickled.
    True when the job's pickle is (now) in place."""
    target = submitted_pickle(folder, job_id)
    if target.exists():
        return True
    strays = stray_pickles(folder)
    if not strays:
        return False
    try:
        strays[-1].rename(target)
    except OSError:
        return False
    return True


def find_local_controllers(folder: str, proc: Path = Path("/proc")) -> list[int]:
    """Pids of live submitit local controllers for ``folder`` (the job folder pattern,
    ``.../jobs/<cell>/%j``).

    A controller started through a shell (setup lines) shows twice, shell and python: the outermost
    is the job (its pid is submitit's job id)."""
    found: dict[int, int] = {}
    for d in proc.iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if LOCAL_CONTROLLER not in cmd or folder not in cmd:
                continue
            stat = (d / "stat").read_text()
            found[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])  # ppid, after "(comm)"
        except (OSError, ValueError, IndexError):
            continue  # ended meanwhile, or not ours to read
    return sorted(pid for pid, ppid in found.items() if ppid not in found)


def local_folder(experiment_dir: Path, cell_id: str) -> str:
    """submitit's folder pattern for a cell's local jobs, as it appears on the controller's command line."""
    return str((experiment_dir / "jobs" / cell_id / "%j").resolve())


def adopt_slurm(manifest: Manifest, experiment_dir: Path, slurm: dict[str, Intent], done: Reconciled, *,
                run: Runner = run_slurm_command, whole_queue: bool = False) -> None:
    """Settle the SLURM intents ``slurm`` (cell -> intent) in ``manifest`` (in memory), into ``done``.

    ``whole_queue`` (submit): also adopt any live job of this user named for one of the cells whose batch
    script lies in this experiment's job folders though the manifest does not know it (a manifest
    restored from a backup, or written by a version without intents); squeue not answering then only
    matters if there are intents."""
    names = {cid: job_name(manifest.experiment, cid) for cid in (manifest.cells if whole_queue else slurm)}
    names.update({cid: array_name(manifest.experiment) for cid, i in slurm.items() if i.task is not None})
    if not names:
        return
    try:
        queued = queued_jobs_named(names.values(), run)
    except RuntimeError as exc:
        if not slurm:
            return
        cells = ", ".join(sorted(slurm))
        raise ClusterError(f"cannot tell whether the interrupted submission of {cells} started a job "
                           f"({exc}); submit again when SLURM answers (`squeue --me`)") from exc
    ended = []
    if slurm:
        ended = ended_jobs_named({names[c] for c in slurm}, _sacct_since(list(slurm.values())), run)
    handoffs: dict[str, list[str]] = {}
    known = {a.job_id for e in manifest.cells.values() for a in e.attempts}
    for cid, intent in slurm.items():
        job = _slurm_match(cid, intent, queued, ended, names[cid], experiment_dir, known)
        if job is None:
            manifest.cells[cid].intent = None
            done.dropped.append(cid)
            continue
        known.add(job.job_id)
        if intent.task is None:
            # still to start: it finds its pickle; ended: no stray pickle is left behind
            finish_handoff(intent_folder(experiment_dir, cid, intent), job.job_id)
            attempt = Attempt(job.job_id, "slurm", intent.since, cell_folder(cid, intent.token), intent.token)
        else:
            handoffs.setdefault(intent.token, []).append(job.job_id)
            attempt = Attempt(job.job_id, "slurm", intent.since, array_folder(intent.token),
                              intent.token, array_base(job.job_id), intent.task)
        manifest.record(cid, attempt)
        done.adopted.append((cid, job.job_id, job.state))
    for token, ids in handoffs.items():
        finish_array_handoff(experiment_dir, token, ids)
    if whole_queue:
        _adopt_untracked(manifest, experiment_dir, queued, names, done)


def adopt_local(manifest: Manifest, experiment_dir: Path, pending: dict[str, Intent], done: Reconciled,
                local_jobs: Callable[[str], list[int]] = find_local_controllers) -> None:
    """Settle the local intents ``pending``: adopt the controller a killed submit left running (found by
    its command line), else drop the intent (nothing started)."""
    for cid, intent in pending.items():
        pids = local_jobs(local_folder(experiment_dir, cid))
        if pids:
            manifest.record(cid, Attempt(str(pids[0]), "local", intent.since, f"jobs/{cid}/{pids[0]}",
                                         intent.token))
            done.adopted.append((cid, str(pids[0]), CellState.RUNNING))
            with contextlib.suppress(OSError):  # the controller's literal, empty pattern folder (local.py)
                (experiment_dir / "jobs" / cid / "%j").rmdir()
        else:
            manifest.cells[cid].intent = None
            done.dropped.append(cid)


def _adopt_untracked(manifest: Manifest, experiment_dir: Path, queued: list[TaggedJob], names: dict[str, str],
                     done: Reconciled) -> None:
    """Live jobs of these cells, submitted from this experiment directory, that no attempt records."""
    by_name = {n: cid for cid, n in names.items() if n != array_name(manifest.experiment)}
    for job in queued:
        cid = by_name.get(job.name)
        if cid is None or any(a.job_id == job.job_id for a in manifest.cells[cid].attempts):
            continue
        folder = (experiment_dir / "jobs" / cid).resolve()
        script_dir = Path(job.script).parent if job.script else None
        if script_dir is None or folder not in (script_dir, script_dir.parent):
            continue  # the same experiment name in another results directory: not ours
        rel = cell_folder(cid, script_dir.name) if script_dir.parent == folder else f"jobs/{cid}/{job.job_id}"
        manifest.record(cid, Attempt(job.job_id, "slurm", now_iso(), rel, job.token))
        done.adopted.append((cid, job.job_id, job.state))
