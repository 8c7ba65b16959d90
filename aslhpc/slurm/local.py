"""Run cells on this machine through submitit's LocalExecutor when there is no SLURM.

Same CellJob, same folders, same manifest (cluster "local"); at most ``max_parallel`` cells at
once. Local jobs are child processes of the submitting process and may die with its session,
so the runner waits for them (status from another shell still works meanwhile: it reads the
manifest, the cell files, and ``local_runner.json``).
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit

from ..atomic import atomic_write_json, read_json
from .executor import JobRequest, local_executor

RUNNER_FILE = "local_runner.json"


@dataclass
class LocalTask:
    cell_id: str
    fn: Callable[[], Any]
    request: JobRequest
    folder: Path  # submitit folder pattern, e.g. results/exp/jobs/<cell_id>/%j


@dataclass
class LocalOutcome:
    cell_id: str
    job_id: str
    ok: bool
    error: str = ""


def process_alive(pid: int, needle: str = "") -> bool:
    """True if ``pid`` runs and (when given) its command line contains ``needle`` (pids get reused)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError, OverflowError):
        return False
    if not needle:
        return True
    try:
        return needle in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return True  # no /proc (macOS): trust kill(0)


def runner_alive(experiment_dir: Path) -> dict[str, Any] | None:
    """The local runner record if its process still runs on this host, else None."""
    path = experiment_dir / RUNNER_FILE
    try:
        info = read_json(path)
    except (OSError, ValueError):
        return None
    if info.get("host") != socket.gethostname() or not process_alive(int(info.get("pid", 0))):
        return None
    return info


class RunnerLock:
    """``local_runner.json`` while a local run is in progress: status shows queued cells as PENDING,
    and a second submit refuses to start the same cells twice."""

    def __init__(self, experiment_dir: Path) -> None:
        self.path = experiment_dir / RUNNER_FILE

    def __enter__(self) -> RunnerLock:
        atomic_write_json(self.path, {"pid": os.getpid(), "host": socket.gethostname(),
                                      "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")})
        return self

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)


def run_local(tasks: list[LocalTask], max_parallel: int, on_start: Callable[[LocalTask, str, Path], None],
              on_tick: Callable[[], None] | None = None, poll_s: float = 0.5) -> list[LocalOutcome]:
    """Start ``tasks`` with at most ``max_parallel`` running; call ``on_start(task, job_id, folder)`` as each
    starts (to record it in the manifest) and ``on_tick()`` every poll; return when all have ended.
    Ctrl-C cancels the running ones and re-raises."""
    queue = list(tasks)
    running: list[tuple[LocalTask, submitit.local.local.LocalJob]] = []
    outcomes: list[LocalOutcome] = []
    try:
        while queue or running:
            while queue and len(running) < max(1, max_parallel):
                task = queue.pop(0)
                job = local_executor(task.folder, task.request).submit(task.fn)
                running.append((task, job))
                on_start(task, str(job.job_id), job.paths.folder)
            for task, job in list(running):
                if job.done():
                    running.remove((task, job))
                    outcomes.append(_outcome(task, job))
            if on_tick is not None:
                on_tick()
            if queue or running:
                time.sleep(poll_s)
    except KeyboardInterrupt:
        for _, job in running:
            job.cancel()
        raise
    return outcomes


def _outcome(task: LocalTask, job: submitit.local.local.LocalJob) -> LocalOutcome:
    try:
        job.results()
        return LocalOutcome(task.cell_id, str(job.job_id), True)
    except Exception as exc:  # noqa: BLE001 - the cell's own error.json has the details
        lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
        return LocalOutcome(task.cell_id, str(job.job_id), False, lines[-1] if lines else type(exc).__name__)
