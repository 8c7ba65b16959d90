"""Run cells on this machine through submitit's LocalExecutor when there is no SLURM.

Same CellJob, same folders, same manifest (cluster "local"); at most ``max_parallel`` cells at
once. Local jobs are child processes of the submitting process and may die with its session,
so the runner waits for them (status from another shell still works meanwhile: it reads the
manifest, the cell files, and ``local_runner.json``).

GPUs: submitit's LocalExecutor would give every job ``CUDA_VISIBLE_DEVICES=0..N-1``, replacing
the user's own, so two concurrent 1-GPU cells would share GPU 0. Here each cell gets a disjoint
share of the GPUs this process sees (:func:`visible_gpus`: the user's CUDA_VISIBLE_DEVICES, else
all of them) and starts only when its share is free (:func:`next_start`); a cell asking for more
GPUs than exist runs alone with all of them (the trainer then errors, or falls back per
allow_cpu). Without GPUs the cells run on the CPU, ``max_parallel`` at a time, as before.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit

from aslhpc.atomic import atomic_write_json, read_json
from aslhpc.errors import ConfigError
from aslhpc.slurm.executor import local_executor
from aslhpc.slurm.request import JobRequest

RUNNER_FILE = "local_runner.json"
TASKS_PER_CORE = 4  # processes per core (or GPU) a local cell may start before it is refused as a typo


#: how a cell ended, read from its own files (never from submitit's result pickle): (ok, error line)
Judge = Callable[[], tuple[bool, str]]


@dataclass
class LocalTask:
    cell_id: str
    fn: Callable[[], Any]
    request: JobRequest
    folder: Path  # submitit folder pattern, e.g. results/exp/jobs/<cell_id>/%j
    judge: Judge | None = None  # None: the controller's exit alone (a task with no cell files)


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
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        return needle in cmdline.decode(errors="replace")
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


def _cuda_device_count() -> int:
    try:
        import torch  # lazily: only a local run needs it

        return int(torch.cuda.device_count())
    except Exception:  # noqa: BLE001 - no torch / no driver: no GPUs
        return 0


def visible_gpus(environ: Mapping[str, str] | None = None,
                 device_count: Callable[[], int] = _cuda_device_count) -> list[str]:
    """The GPUs local cells may share out, as CUDA_VISIBLE_DEVICES entries of this process.

    The user's CUDA_VISIBLE_DEVICES (``2,3`` -> ["2", "3"]; UUIDs kept as they are) cut to the
    devices CUDA really finds; without it, ``0 .. device_count()-1``. [] when there is no GPU."""
    env = os.environ if environ is None else environ
    count = device_count()
    if count <= 0:
        return []
    raw = env.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return [str(i) for i in range(count)]
    return [t.strip() for t in raw.split(",") if t.strip()][:count]


def next_start(needs: Sequence[int], free: Sequence[str], gpus: Sequence[str], running: int,
               max_parallel: int) -> tuple[int, tuple[str, ...] | None] | None:
    """Which queued cell to start now, and its GPUs; None = wait for a running cell to end.

    ``needs`` are the queued cells' GPU counts in queue order, ``free`` the GPUs no running cell
    holds, ``gpus`` all of them (:func:`visible_gpus`), ``running`` how many cells run. The first
    cell whose GPUs are free starts, with the first free ones; a cell asking for more GPUs than
    exist starts alone, with all of them. With no GPUs at all, the first cell starts with
    ``None`` (leave its devices alone: it runs on the CPU) while fewer than ``max_parallel`` run."""
    if not needs or running >= max(1, max_parallel):
        return None
    if not gpus:
        return 0, None
    for i, need in enumerate(needs):
        if need <= len(free):
            return i, tuple(free[:need])
        if need > len(gpus) and running == 0:
            return i, tuple(gpus)
    return None


def local_problems(requests: Sequence[tuple[str, JobRequest]], gpus: Sequence[str],
                   cpus: int | None = None) -> list[str]:
    """One line per cell this machine cannot even start: more processes (a ddp cell runs one per GPU) than
    :data:`TASKS_PER_CORE` per CPU core or GPU here. A cell asking more GPUs than exist still runs (alone,
    on the CPU with allow_cpu): that is the trainer's call, not the runner's."""
    cpus = cpus or os.cpu_count() or 1
    limit = TASKS_PER_CORE * max(cpus, len(gpus))
    wide = [(cell, r.nodes * r.tasks_per_node) for cell, r in requests if r.nodes * r.tasks_per_node > limit]
    if not wide:
        return []
    cell, tasks = max(wide, key=lambda w: w[1])
    ids = ", ".join(c for c, _ in wide[:3]) + (" ..." if len(wide) > 3 else "")
    return [f"cell{'s' * (len(wide) > 1)} {ids}: a local run starts one process per GPU of a ddp cell "
            f"({tasks}) but this machine has {cpus} CPU cores and {len(gpus)} GPUs (at most {limit} "
            "processes); use fewer --gpus or submit to SLURM (--cluster slurm)"]


def run_local(tasks: list[LocalTask], max_parallel: int, on_start: Callable[[LocalTask, str, Path], None],
              on_tick: Callable[[], None] | None = None, poll_s: float = 0.5,
              gpus: Sequence[str] | None = None) -> list[LocalOutcome]:
    """Start ``tasks`` with at most ``max_parallel`` running, each on its own GPUs (``gpus``, default
    :func:`visible_gpus`; see :func:`next_start`); call ``on_start(task, job_id, folder)`` as each starts
    (to record it in the manifest) and ``on_tick()`` every poll; return when all have ended.
    Ctrl-C cancels the running ones and re-raises."""
    gpus = list(visible_gpus() if gpus is None else gpus)
    problems = local_problems([(t.cell_id, t.request) for t in tasks], gpus)
    if problems:
        raise ConfigError(problems[0])
    with _sigterm_as_interrupt():
        return _run_queue(tasks, max_parallel, on_start, on_tick, poll_s, gpus)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While cells run: ``kill PID`` (SIGTERM) stops the run the way Ctrl-C does, cancelling its cells
    instead of orphaning them. The previous handler comes back after (only the main thread may set one)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_queue(tasks: list[LocalTask], max_parallel: int, on_start: Callable[[LocalTask, str, Path], None],
               on_tick: Callable[[], None] | None, poll_s: float, gpus: list[str]) -> list[LocalOutcome]:
    queue = list(tasks)
    running: list[tuple[LocalTask, submitit.local.local.LocalJob, tuple[str, ...]]] = []
    outcomes: list[LocalOutcome] = []
    try:
        while queue or running:
            while True:
                held = {g for _, _, share in running for g in share}
                free = [g for g in gpus if g not in held]
                pick = next_start([t.request.gpus for t in queue], free, gpus, len(running), max_parallel)
                if pick is None:
                    break
                index, share = pick
                task = queue.pop(index)
                job = local_executor(task.folder, task.request, share).submit(task.fn)
                running.append((task, job, share or ()))
                on_start(task, str(job.job_id), job.paths.folder)
            for entry in list(running):
                task, job, _ = entry
                if job.done():
                    running.remove(entry)
                    outcomes.append(_outcome(task, job))
                    _drop_pattern_folder(task.folder)
            if on_tick is not None:
                on_tick()
            if queue or running:
                time.sleep(poll_s)
    except KeyboardInterrupt:
        for _, job, _ in running:
            job.cancel()
        raise
    return outcomes


def _drop_pattern_folder(folder: Path) -> None:
    """submitit's local controller creates its folder pattern literally (``jobs/<cell>/%j``, empty) beside
    the real ``jobs/<cell>/<job id>``; remove it so the cell's folder holds only real jobs."""
    if "%" in folder.name:
        try:
            folder.rmdir()
        except OSError:
            pass  # absent, or not empty: leave it


def _outcome(task: LocalTask, job: submitit.local.local.LocalJob) -> LocalOutcome:
    """How the task ended, from the cell's own JSON files (``task.judge``), as status reads them.

    Never ``job.results()``: that unpickles ``<id>_0_result.pkl`` from the results directory, which
    anyone who can write there could replace with code that would then run in this process."""
    if task.judge is not None:
        ok, error = task.judge()
        return LocalOutcome(task.cell_id, str(job.job_id), ok, "" if ok else error)
    state = job.state
    ok = state == "FINISHED"
    return LocalOutcome(task.cell_id, str(job.job_id), ok, "" if ok else f"the job ended {state}")
