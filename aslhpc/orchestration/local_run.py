"""This machine's side of submit: the cells through submitit's LocalExecutor, each on its own GPUs.

Every cell's intent is saved before anything starts, each attempt (the controller's pid) as it starts:
a killed submit leaves controllers that outlive it, which the next submit adopts by their command line
(:mod:`aslhpc.orchestration.reconcile`) and waits for. Reached only through
:class:`aslhpc.orchestration.backend.LocalBackend`.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from pathlib import Path

from aslhpc.orchestration.actions import CellAction, Ledger, cell_job, crash_point, new_token
from aslhpc.orchestration.adoption import LOCAL_CONTROLLER
from aslhpc.orchestration.experiment import Cell, ExperimentSpec, job_request
from aslhpc.orchestration.manifest import Attempt, Intent, Manifest, now_iso
from aslhpc.slurm.local import LocalTask, RunnerLock, process_alive, run_local

#: the manifest's word for an attempt run here
NAME = "local"

def local_job_folder(spec: ExperimentSpec, cell: Cell) -> Path:
    """submitit's local job folder: ``results/<exp>/jobs/<cell_id>/%j`` (one subfolder per process id)."""
    return (spec.experiment_dir / "jobs" / cell.cell_id / "%j").resolve()


def run_cells(spec: ExperimentSpec, manifest: Manifest, path: Path, todo: list[CellAction],
              max_parallel: int, on_tick: Callable[[], None] | None, gpus: list[str],
              outcome: Callable[[str], tuple[bool, str]]) -> list[str]:
    """Intents for every cell first (a crash then leaves them findable), then run; also wait for local jobs
    of this experiment that an earlier, killed submit left running (adopted, or recorded but orphaned).

    ``outcome(cell_id)``: (completed, error line) of a cell that ran, from its own files (submission's)."""
    by_id = {a.cell.cell_id: a for a in todo}
    tasks = [LocalTask(a.cell.cell_id, cell_job(spec, a.cell), job_request(spec, a.cell),
                       local_job_folder(spec, a.cell), functools.partial(outcome, a.cell.cell_id))
             for a in todo]
    orphans = live_local_jobs(manifest, exclude=set(by_id))
    ledger = Ledger(path, list(by_id))
    for cid in by_id:
        manifest.cells[cid].intent = Intent(new_token(), NAME, now_iso())
    if todo:
        ledger.save(manifest)
    crash_point("after-intent")

    def started(task: LocalTask, job_id: str, folder: Path) -> None:
        crash_point("after-sbatch")
        by_id[task.cell_id].job_id = job_id
        rel = os.path.relpath(folder, path.parent.resolve())
        intent = manifest.cells[task.cell_id].intent
        token = intent.token if intent else ""
        manifest.record(task.cell_id, Attempt(job_id, NAME, now_iso(), rel, token))
        ledger.save(manifest, task.cell_id, job_id)
        crash_point("after-record")

    with RunnerLock(path.parent):
        outcomes = run_local(tasks, max_parallel, started, on_tick, gpus=gpus) if tasks else []
        wait_local(orphans, on_tick)
    return [o.cell_id for o in outcomes if not o.ok]


def live_local_jobs(manifest: Manifest, exclude: set[str]) -> list[int]:
    """Pids of this experiment's local jobs still running (not children of this process)."""
    pids = []
    for cid, entry in manifest.cells.items():
        last = entry.last
        if cid in exclude or last is None or last.cluster != NAME or not last.job_id.isdigit():
            continue
        if process_alive(int(last.job_id), LOCAL_CONTROLLER):
            pids.append(int(last.job_id))
    return pids


def wait_local(pids: list[int], on_tick: Callable[[], None] | None, poll_s: float = 0.5) -> None:
    """Until these pids (controllers of an earlier submit) end, calling ``on_tick`` (a live table)."""

    while any(process_alive(p, LOCAL_CONTROLLER) for p in pids):
        if on_tick is not None:
            on_tick()
        time.sleep(poll_s)
