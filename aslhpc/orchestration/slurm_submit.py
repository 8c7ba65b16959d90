"""SLURM's side of submit: cells as sbatch jobs, one job array per job shape, each recorded crash-safely.

Per cell: intent (a token) into the manifest, sbatch with the token in the job's ``--comment``, the job id
into the manifest; a crash or a full disk at any step leaves either nothing submitted for the cell or an
intent from which the next submit finds the job (:mod:`aslhpc.orchestration.reconcile`).

Cells of one job shape go into one job array (:mod:`aslhpc.orchestration.arrays`): the intents of
all its cells (one shared token, each with its task index) are written before the array's sbatch,
all its task ids (``<array>_<task>``) right after, in one manifest write. ``--no-array`` keeps one
job per cell; a group of one cell is a plain job. sbatch refused for a submit limit is retried with
backoff for at most ``submit_timeout_s`` (:class:`~aslhpc.orchestration.arrays.Patience`).
Reached only through :class:`aslhpc.orchestration.backend.SlurmBackend`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from aslhpc.errors import ClusterError
from aslhpc.orchestration.actions import (
    CellAction,
    Ledger,
    Out,
    SubmitOptions,
    action_request,
    cell_job,
    crash_point,
    new_token,
)
from aslhpc.orchestration.adoption import array_folder, cell_folder, finish_array_handoff, finish_handoff
from aslhpc.orchestration.arrays import SUBMIT_LIMIT_WORDS, Patience, group_cells, is_submit_limit
from aslhpc.orchestration.experiment import Cell, ExperimentSpec
from aslhpc.orchestration.manifest import Attempt, Intent, Manifest, now_iso
from aslhpc.orchestration.retry import request_record
from aslhpc.slurm.accounting import job_comment, queued_jobs_named
from aslhpc.slurm.cluster import SubmitLimits, query_submit_limits
from aslhpc.slurm.executor import (
    ARRAY,
    array_executor,
    array_name,
    job_name,
    private_dir,
    slurm_executor,
    stray_pickles,
)


def _job_folder(spec: ExperimentSpec, cell: Cell, token: str) -> Path:
    """A SLURM job's own folder, ``jobs/<cell_id>/<token>`` (0700), created before its sbatch: a job that
    starts at once finds the folder of its log files, and only its own files are in it."""
    return private_dir((spec.experiment_dir / cell_folder(cell.cell_id, token)).resolve(),
                       (spec.experiment_dir / "jobs").resolve())


def submit_cells(spec: ExperimentSpec, manifest: Manifest, path: Path, todo: list[CellAction], python: str,
                 out: Out, options: SubmitOptions,
                 limits: Callable[[str], SubmitLimits] = query_submit_limits) -> list[str]:
    """Job arrays by shape (or one job per cell), each: intents saved, sbatch, job ids saved. See the module
    doc. Returns the ids of the arrays submitted."""
    ledger = Ledger(path, [a.cell.cell_id for a in todo])
    patience = Patience(options.submit_timeout_s)
    items = [(a, action_request(spec, a)) for a in todo]
    # the limit of the account these jobs are charged to (one account per experiment: [cluster] account)
    chunk = limits(items[0][1].account).chunk() if options.arrays and len(todo) > 1 else 0
    parallelism = options.array_parallelism or spec.cluster.array_parallelism
    arrays = []
    for group in group_cells(items, chunk, options.arrays):
        if len(group) == 1:
            _submit_cell(spec, manifest, group[0][0], python, ledger, patience, out)
        else:
            arrays.append(_submit_array(spec, manifest, [a for a, _ in group], python, parallelism, ledger,
                                        patience, out))
    return arrays


def submit_collect_job(spec: ExperimentSpec, manifest: Manifest, path: Path, live: list[str],
                       todo: list[CellAction], python: str, out: Out, next_round: bool = False) -> str:
    """The dependent collect job, after every cell job that is live now (``live``: still queued, ``todo``:
    just submitted); ``next_round``: it runs the round chain's next step (``submit --next-round``) instead
    of collect."""
    from aslhpc.orchestration.collectjob import submit_collect

    after = live + [a.job_id for a in todo if a.job_id]
    attempt = submit_collect(spec, manifest, after, python, out, new_token(), next_round=next_round)
    Ledger(path, []).save(manifest)
    return attempt.job_id


def _refused(msg: str, ledger: Ledger, patience: Patience, out: Out) -> bool:
    """True (after waiting) when sbatch refused for a submit limit and --submit-timeout allows another try."""
    if not is_submit_limit(msg):
        return False
    word = next((w for w in SUBMIT_LIMIT_WORDS if w.lower() in msg.lower()), "a submit limit")
    rest = len(ledger.cells) - len(ledger.recorded)
    return patience.wait(f"sbatch refused for {word} (your queued jobs are at the site's limit); "
                         f"{ledger.progress}, {rest} to go, as your queued jobs end", out)


def _sbatch_errors() -> tuple[type[BaseException], ...]:
    import submitit

    return (submitit.core.utils.FailedJobError, submitit.core.utils.FailedSubmissionError)


def _submit_cell(spec: ExperimentSpec, manifest: Manifest, action: CellAction, python: str, ledger: Ledger,
                 patience: Patience, out: Out) -> None:
    """One cell as a job of its own: intent saved, sbatch (tagged with the intent's token), job id saved."""
    cell = action.cell
    intent = Intent(new_token(), "slurm", now_iso())
    manifest.cells[cell.cell_id].intent = intent
    ledger.save(manifest, cell.cell_id)  # before sbatch: a crash after it leaves a findable token
    crash_point("after-intent")
    folder = _job_folder(spec, cell, intent.token)
    req = action_request(spec, action)
    while True:
        ex = slurm_executor(folder, req, python=python)  # fresh per cell
        ex.update_parameters(comment=job_comment(spec.name, cell.cell_id, intent.token, spec.cluster.comment))
        try:
            job = ex.submit(cell_job(spec, cell))
            break
        except _sbatch_errors() as exc:
            _drop_strays(folder)  # this try's pickle: nothing will ever read it
            msg = " ".join(str(exc).split())
            if _refused(msg, ledger, patience, out):
                continue
            with contextlib.suppress(OSError):
                folder.rmdir()
            manifest.cells[cell.cell_id].intent = None  # sbatch refused: nothing to find later
            with contextlib.suppress(OSError):
                manifest.save(ledger.path)
            raise ClusterError(f"sbatch refused cell {cell.cell_id}: {msg}; the cells submitted before it "
                               f"are recorded in {ledger.path}") from exc
        except OSError as exc:  # submitit could not write the job's files: before its sbatch, or just after
            found = _tagged_job(spec.name, cell.cell_id, intent.token)
            if found not in ("", "?"):
                finish_handoff(folder, found)
            raise ledger.error(exc, cell.cell_id, found) from exc
    crash_point("after-sbatch")
    action.job_id = str(job.job_id)
    manifest.record(cell.cell_id, Attempt(action.job_id, "slurm", now_iso(),
                                          cell_folder(cell.cell_id, intent.token), intent.token,
                                          request=request_record(req, action.retry_of)))
    ledger.save(manifest, cell.cell_id, action.job_id)
    crash_point("after-record")


def _submit_array(spec: ExperimentSpec, manifest: Manifest, group: list[CellAction], python: str,
                  parallelism: int, ledger: Ledger, patience: Patience, out: Out) -> str:
    """Cells of one shape as one job array (task i = group[i]): every cell's intent (one shared token, its
    task index) saved before the sbatch, every task id ``<array>_<i>`` saved right after, in one write."""
    token, since = new_token(), now_iso()
    ids = [a.cell.cell_id for a in group]
    for i, action in enumerate(group):
        manifest.cells[action.cell.cell_id].intent = Intent(token, "slurm", since, task=i)
    ledger.save(manifest, ", ".join(ids))
    crash_point("after-intent")
    req = replace(action_request(spec, group[0]), name=array_name(spec.name))
    folder = private_dir((spec.experiment_dir / array_folder(token)).resolve(),
                         (spec.experiment_dir / "jobs").resolve())
    while True:
        ex = array_executor(folder, req, parallelism, python=python)
        ex.update_parameters(comment=job_comment(spec.name, ARRAY, token, spec.cluster.comment))
        try:
            with ex.batch():
                jobs = [ex.submit(cell_job(spec, a.cell)) for a in group]
            break
        except _sbatch_errors() as exc:
            _drop_strays(folder)  # this try's pickles: nothing will ever read them
            msg = " ".join(str(exc).split())
            if _refused(msg, ledger, patience, out):
                continue
            for cid in ids:
                manifest.cells[cid].intent = None
            with contextlib.suppress(OSError):
                manifest.save(ledger.path)
            raise ClusterError(f"sbatch refused the job array of cells {', '.join(ids)}: {msg}; the cells "
                               f"submitted before it are recorded in {ledger.path}") from exc
        except OSError as exc:
            found = _tagged_tasks(spec.name, token)
            if found:
                finish_array_handoff(spec.experiment_dir, token, found)
            raise ledger.error(exc, ", ".join(ids), ", ".join(found) if found else "?") from exc
    crash_point("after-sbatch")
    recorded = []
    for task, (action, job) in enumerate(zip(group, jobs, strict=True)):
        action.job_id = str(job.job_id)
        base = action.job_id.partition("_")[0]
        attempt = Attempt(action.job_id, "slurm", now_iso(), array_folder(token), token, base, task,
                          request_record(req, action.retry_of))
        manifest.record(action.cell.cell_id, attempt)
        recorded.append((action.cell.cell_id, action.job_id))
    ledger.save_many(manifest, recorded)
    crash_point("after-record")
    return recorded[0][1].partition("_")[0]


def _drop_strays(folder: Path) -> None:
    """Remove the ``<uuid>.pkl`` calls submitit dumped for an array whose sbatch was refused."""
    for p in stray_pickles(folder):
        with contextlib.suppress(OSError):
            p.unlink()


def _tagged_tasks(experiment: str, token: str) -> list[str]:
    """The ids of the queued array tasks tagged ``token`` ([] if none or squeue does not answer)."""
    try:
        jobs = queued_jobs_named([array_name(experiment)])
    except RuntimeError:
        return []
    return [j.job_id for j in jobs if j.token == token]


def _tagged_job(experiment: str, cell_id: str, token: str) -> str:
    """The id of the queued job tagged ``token`` ('' if none, '?' if squeue does not answer)."""
    try:
        jobs = queued_jobs_named([job_name(experiment, cell_id)])
    except RuntimeError:
        return "?"
    return next((j.job_id for j in jobs if j.token == token), "")
