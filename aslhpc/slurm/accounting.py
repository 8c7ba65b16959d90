"""Job states from SLURM: one batched ``sacct`` call, ``squeue`` when accounting is off.

sacct rows come in several shapes, all handled here: job steps (``12.batch``, ``12.0``,
``12.extern``) are skipped; array tasks (``5_2``) are keyed by their own id, and an array's tasks that
have not started yet (one row, ``5_[3-7%4]``) are expanded to one PENDING row per task; states carry
extra words (``CANCELLED by 0``); with ``--duplicates`` a requeued job has one ``REQUEUED``
row per restart before its current row, so the latest row (by submit time) wins and the
others count as restarts.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from aslhpc.states import CellState

SACCT_FIELDS = ("JobID", "JobIDRaw", "State", "NodeList", "Elapsed", "ExitCode", "Start", "End", "Submit",
                "Reason", "JobName")
SQUEUE_FORMAT = "%i|%T|%N|%M|%r|%j"  # the name last: it is the only free-text field

Runner = Callable[[list[str]], subprocess.CompletedProcess]


@dataclass(frozen=True)
class JobState:
    """What SLURM says about one job (its latest incarnation)."""

    job_id: str
    state: CellState  # RUNNING, CANCELLED, ... (UNKNOWN for a word SLURM added since; raw_state has it)
    raw_state: str = ""
    node: str = ""
    elapsed: str = ""
    exit_code: str = ""
    reason: str = ""
    restarts: int = 0
    source: str = "sacct"  # sacct | squeue
    name: str = ""  # the job name: tells our job from another that got the same id (ids restart)


@dataclass(frozen=True)
class StateQuery:
    """States of the asked job ids plus where they came from: sacct, squeue, or none (no answer)."""

    states: dict[str, JobState]
    source: str  # "sacct" | "squeue" | "none"
    note: str = ""
    # squeue answered: a job in neither answer is not queued any more (it ended, however SLURM lost track)
    queue_read: bool = False


def run_slurm_command(cmd: list[str]) -> subprocess.CompletedProcess:
    """Run one SLURM client command (sacct, squeue, scontrol, scancel): text output, never raises for a
    non-zero exit, and gives up after 60 s so a hung controller cannot hang a command."""
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


#: the old private name, kept until analysis/efficiency.py and orchestration/collectjob.py import
#: run_slurm_command (other owners: the integrator drops this alias after the merge)
_run = run_slurm_command


_PENDING_TASKS = re.compile(r"(?P<array>\d+)_\[(?P<ranges>[\d,\-]+)(%\d+)?\]")


def array_base(job_id: str) -> str:
    """``'123_4'`` -> ``'123'`` (the array's id); a plain job id as it is."""
    return job_id.split("_", 1)[0]


def expand_task_ids(job_id: str) -> list[str]:
    """``'5_[0-2,7%4]'`` -> ['5_0', '5_1', '5_2', '5_7'] (sacct/squeue's row for an array's waiting tasks);
    any other id as it is."""
    m = _PENDING_TASKS.fullmatch(job_id)
    if not m:
        return [job_id]
    out = []
    for part in m["ranges"].split(","):
        lo, _, hi = part.partition("-")
        if lo.isdigit() and (hi.isdigit() or not hi):
            out += [f"{m['array']}_{t}" for t in range(int(lo), int(hi or lo) + 1)]
    return out


def parse_sacct(text: str) -> dict[str, JobState]:
    """Parse ``sacct --parsable2`` output (header line first) into the latest state per job id."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return {}
    names = lines[0].split("|")
    if "JobID" not in names or "State" not in names:
        raise ValueError(f"sacct output has no JobID/State header: {lines[0]!r}")
    best: dict[str, tuple[str, dict[str, str]]] = {}
    requeues: dict[str, int] = {}
    for order, line in enumerate(lines[1:]):
        row = dict(zip(names, line.split("|"), strict=False))
        raw_id = row.get("JobID", "").strip()
        if not raw_id or "." in raw_id:  # steps: 12.batch, 12.0, 12.extern
            continue
        for job_id in expand_task_ids(raw_id):
            if CellState.parse(row.get("State", "")) == CellState.REQUEUED:
                requeues[job_id] = requeues.get(job_id, 0) + 1
            # latest row wins: submit time, then position (sacct lists a job's rows oldest first)
            key = f"{row.get('Submit', '')}|{order:09d}"
            if job_id not in best or key >= best[job_id][0]:
                best[job_id] = (key, row)
    out = {}
    for job_id, (_, row) in best.items():
        node = row.get("NodeList", "")
        out[job_id] = JobState(
            job_id=job_id, state=CellState.parse(row.get("State", "")), raw_state=row.get("State", ""),
            node="" if node in ("None assigned", "(null)") else node, elapsed=row.get("Elapsed", ""),
            exit_code=row.get("ExitCode", ""),
            reason="" if row.get("Reason") == "None" else row.get("Reason", ""),
            restarts=requeues.get(job_id, 0), source="sacct", name=_job_name(row.get("JobName", "")))
    return out


def _job_name(name: str) -> str:
    """sacct's JobName, '' where it does not name the job: slurmdbd shows a starting job as "allocation"."""
    return "" if name == "allocation" else name


def parse_squeue(text: str) -> dict[str, JobState]:
    """Parse ``squeue -h -o '%i|%T|%N|%M|%r|%j'`` output (no header); an array's waiting tasks listed as one
    row (``5_[1-3]``, without ``-r``) become one row per task."""
    out = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 2 or not parts[0]:
            continue
        parts += [""] * (6 - len(parts))
        raw_id, state, node, elapsed, reason = parts[:5]
        for job_id in expand_task_ids(raw_id):
            out[job_id] = JobState(job_id, CellState.parse(state), state, node, elapsed, "",
                                   "" if reason == "None" else reason, 0, "squeue", "|".join(parts[5:]))
    return out


def query_ids(job_ids: Iterable[str]) -> list[str]:
    """The ids to name on sacct/squeue's ``--jobs``: an array once (its id lists every task), plain jobs as
    they are. 10,000 cells in 10 arrays are 10 ids on the command line, not 10,000."""
    return sorted({array_base(j) for j in job_ids if j}, key=lambda j: (len(j), j))


def sacct_command(job_ids: Iterable[str], starttime: str = "") -> list[str]:
    """One sacct call for all of ``job_ids`` (``-X``: allocations only, no step rows to read and skip)."""
    cmd = ["sacct", "-X", "--parsable2", "--duplicates", "-o", ",".join(SACCT_FIELDS)]
    if starttime:
        cmd += ["--starttime", starttime]
    cmd += ["--jobs", ",".join(query_ids(job_ids))]
    return cmd


def squeue_command(job_ids: Iterable[str]) -> list[str]:
    """squeue for this user's jobs among ``job_ids`` only, array tasks one per line (``-r``): never the
    whole cluster's queue, which site admins ask tools not to poll."""
    return ["squeue", "--me", "-h", "-a", "-r", f"--jobs={','.join(query_ids(job_ids))}", "-o", SQUEUE_FORMAT]


def _squeue(ids: list[str], run: Runner) -> subprocess.CompletedProcess | None:
    """squeue's answer for ``ids``; None if it did not answer. squeue exits 1 with "Invalid job id" when
    none of them is queued any more: that is an answer (nothing queued), not a failure."""
    try:
        proc = run(squeue_command(ids))
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        if "invalid job id" in (proc.stderr + proc.stdout).lower():
            return subprocess.CompletedProcess(proc.args, 0, "", "")
        return None
    return proc


def _overlay_queue(states: dict[str, JobState], ids: list[str],
                   run: Runner) -> tuple[dict[str, JobState], bool]:
    """Live jobs as the controller sees them now: slurmdbd lags a moment (a started job can still read
    PENDING in sacct), so squeue's state wins for the jobs it lists; sacct keeps node, restarts, history.
    Also whether squeue answered."""
    proc = _squeue(ids, run)
    if proc is None:
        return states, False
    out = dict(states)
    wanted = set(ids)
    for job_id, q in parse_squeue(proc.stdout).items():
        if job_id not in wanted:
            continue
        old = states.get(job_id)
        if old is None:
            out[job_id] = q
        elif old.state != q.state:
            out[job_id] = replace(old, state=q.state, raw_state=q.raw_state, node=q.node or old.node,
                                  elapsed=old.elapsed, reason=q.reason)
    return out, True


def query_states(job_ids: Iterable[str], starttime: str = "", run: Runner = run_slurm_command) -> StateQuery:
    """States of ``job_ids`` from one sacct call; squeue if accounting is off; 'none' if neither answers.

    ``starttime`` (sacct ``--starttime``) should predate the first submission: sacct's default
    window can start at today's midnight and miss older jobs.
    """
    ids = sorted({str(j) for j in job_ids if j})
    if not ids:
        return StateQuery({}, "none", "no jobs")
    wanted = set(ids)
    notes = []
    try:
        proc = run(sacct_command(ids, starttime))
        if proc.returncode == 0:
            states = {j: s for j, s in parse_sacct(proc.stdout).items() if j in wanted}
            merged, queue_read = _overlay_queue(states, ids, run)
            return StateQuery(merged, "sacct", queue_read=queue_read)
        notes.append(f"sacct: {(proc.stderr or proc.stdout).strip().splitlines()[-1:] or ['failed']}")
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        notes.append(f"sacct: {exc}")
    proc = _squeue(ids, run)
    if proc is not None:
        states = parse_squeue(proc.stdout)
        return StateQuery({j: s for j, s in states.items() if j in wanted}, "squeue",
                          "accounting unavailable: finished jobs are unknown to SLURM, cell files decide",
                          queue_read=True)
    notes.append("squeue: no answer")
    return StateQuery({}, "none", "; ".join(notes))


# --------------------------------------------------------------------------- finding our jobs by their tag

TAG = "aslhpc"
# squeue: id, state, name, batch script path (submitit writes it in the cell's job folder), comment (the tag;
# free text last)
TAG_QUEUE_FORMAT = "%i|%T|%j|%o|%k"
TAG_SACCT_FIELDS = ("JobID", "JobName", "State", "Submit", "Comment")  # JobID: an array task's 5_2


def job_comment(experiment: str, cell_id: str, token: str, site_comment: str = "") -> str:
    """The ``--comment`` a cell's job carries: ``aslhpc:<experiment>:<cell_id>:<token>``, then the site's own
    ``cluster.comment`` after a space when it sets one (the tag must stay first: it finds the job again).

    Experiment names and cell ids are ``[A-Za-z0-9._-]`` (validated), so ``:`` separates them."""
    tag = f"{TAG}:{experiment}:{cell_id}:{token}"
    return f"{tag} {site_comment}" if site_comment else tag


def parse_comment(text: str) -> tuple[str, str, str] | None:
    """(experiment, cell_id, token) from :func:`job_comment`'s text; None for any other comment."""
    parts = (text.split() or [""])[0].split(":")
    if len(parts) != 4 or parts[0] != TAG or not all(parts[1:]):
        return None
    return parts[1], parts[2], parts[3]


@dataclass(frozen=True)
class TaggedJob:
    """A job of ours found by name (and tag) rather than by id: what an interrupted submit left."""

    job_id: str
    name: str
    state: CellState
    token: str = ""  # from the comment; '' where SLURM did not keep it (sacct without job_comment)
    submit: str = ""  # sacct's Submit (local time), '' from squeue
    source: str = "squeue"
    script: str = ""  # the batch script sbatch was given (squeue only): tells which results directory


def queued_jobs_named(names: Iterable[str], run: Runner = run_slurm_command) -> list[TaggedJob]:
    """This user's queued/running jobs with one of ``names``, with the token of their tag.

    Raises RuntimeError when squeue does not answer: then nobody can tell whether such a job exists."""
    names = sorted(set(names))
    if not names:
        return []
    cmd = ["squeue", "--me", "-h", "-a", "-r", f"--name={','.join(names)}", "-o", TAG_QUEUE_FORMAT]
    try:
        proc = run(cmd)
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"squeue: {exc}") from exc
    if proc.returncode != 0:
        said = (proc.stderr or proc.stdout).strip().splitlines()
        raise RuntimeError(said[-1] if said else f"squeue: exit {proc.returncode}")
    found = []
    for line in proc.stdout.splitlines():
        parts = line.strip().split("|", 4)
        if len(parts) != 5 or parts[2] not in names:
            continue
        tag = parse_comment(parts[4])
        for job_id in expand_task_ids(parts[0]):
            found.append(TaggedJob(job_id, parts[2], CellState.parse(parts[1]), tag[2] if tag else "",
                                   script=parts[3]))
    return found


def ended_jobs_named(names: Iterable[str], starttime: str,
                     run: Runner = run_slurm_command) -> list[TaggedJob]:
    """Allocations with one of ``names`` that sacct has seen since ``starttime``; [] if sacct does not answer
    (accounting off: the cells' own files then say what happened)."""
    names = sorted(set(names))
    if not names:
        return []
    cmd = ["sacct", "-X", "-n", "--parsable2", "--duplicates", f"--name={','.join(names)}",
           "--starttime", starttime, "-o", ",".join(TAG_SACCT_FIELDS)]
    try:
        proc = run(cmd)
    except (OSError, subprocess.SubprocessError):
        return []
    if proc.returncode != 0:
        return []
    found = []
    for line in proc.stdout.splitlines():
        parts = line.strip().split("|", 4)
        if len(parts) != 5 or parts[1] not in names or "." in parts[0] or "[" in parts[0]:
            continue
        tag = parse_comment(parts[4])
        found.append(TaggedJob(parts[0], parts[1], CellState.parse(parts[2]), tag[2] if tag else "",
                               parts[3], "sacct"))
    return found
