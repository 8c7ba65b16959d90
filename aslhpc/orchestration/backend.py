"""Where cells run, behind one protocol: SLURM or this machine, as submitit's ``Executor`` hides sbatch vs a
subprocess.

Submit plans (:func:`~aslhpc.orchestration.submission.plan_cells`: a pure function of the spec and the
cells' states); a :class:`Backend` carries the plan out and answers for the attempts it started: what they
are doing now, how to adopt what a killed submit left, how to stop them. A backend is looked up once by
name (:func:`backend_for`: the manifest attempt's ``cluster`` word, or the cluster submit resolved), and
the code above it asks the backend instead of comparing that word. The word itself stays what the
manifest has always stored (``slurm`` | ``local``).

Adding a backend: implement :class:`Backend` (name, the two capability flags, and the methods) and add it
to :data:`BACKENDS`; the manifest's ``Cluster`` literal names it.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from aslhpc.atomic import ensure_writable_dir
from aslhpc.errors import ClusterError, ConfigError
from aslhpc.orchestration.actions import CellAction, Out, SubmitOptions
from aslhpc.orchestration.adoption import LOCAL_CONTROLLER, Reconciled, adopt_local, adopt_slurm
from aslhpc.orchestration.experiment import ExperimentSpec
from aslhpc.orchestration.local_run import run_cells
from aslhpc.orchestration.manifest import Attempt, Intent, Manifest
from aslhpc.orchestration.requestchecks import (
    TorchBuild,
    cluster_checks,
    host_memory_warnings,
    local_machine_problems,
    v100_check,
)
from aslhpc.orchestration.slurm_submit import submit_cells, submit_collect_job
from aslhpc.slurm.accounting import JobState, Runner, StateQuery
from aslhpc.slurm.cluster import ClusterInfo, slurm_installed, slurm_reachable
from aslhpc.slurm.executor import array_name, job_name, result_pickle
from aslhpc.slurm.local import process_alive, runner_alive, visible_gpus
from aslhpc.states import CellState

CLUSTERS = ("auto", "slurm", "local")
#: why an array task that SLURM neither queues nor accounts for reads CANCELLED
NEVER_STARTED = "cancelled before it started (SLURM keeps no record of an array task that never ran)"
#: ``stop(job_ids)``: the command that stops SLURM jobs (scancel; tests replace it)
Stop = Callable[[list[str]], None]


@dataclass(frozen=True)
class AttemptView:
    """What a backend needs to say what one cell's last attempt is doing now."""

    experiment: str
    experiment_dir: Path
    cell_id: str
    states: StateQuery  # the one batched SLURM query of this status (empty off SLURM)
    damaged: bool = False  # the cell's files are damaged: nothing of this machine is read for it


@dataclass(frozen=True)
class CheckContext:
    """What a backend's checks of a submission see: the problems found so far (a request that cannot be
    sized is not checked against the cluster), the dataset's image count (None: unreadable), a dry run
    (only warns: it starts nothing), the SLURM probe and the torch the jobs will run."""

    problems: list[str]
    n_images: int | None
    dry_run: bool
    query: Callable[[], ClusterInfo]
    torch_info: Callable[[], TorchBuild | None]

    def v100(self, spec: ExperimentSpec) -> tuple[list[str], list[str]]:
        """(problems, warnings) of the torch build on the cells' ``gpu_type`` (a dry run only warns)."""
        found = v100_check(spec.cluster.gpu_type, spec.train.allow_cpu, self.torch_info())
        if found is None:
            return [], []
        kind, line = found
        return ([line], []) if kind == "problem" and not self.dry_run else ([], [line])


@dataclass(frozen=True)
class Adopting:
    """How the backends look for the jobs of interrupted submits: ``run`` runs SLURM's commands,
    ``local_jobs(folder)`` finds this machine's controllers; ``whole_queue``: adopt live jobs the manifest
    lost too (submit on SLURM)."""

    run: Runner
    local_jobs: Callable[[str], list[int]]
    whole_queue: bool = False


@dataclass
class SubmitRun:
    """Everything a backend's :meth:`Backend.submit` needs beyond the cells to submit. ``live``: (cluster,
    job id) of the cells' jobs live before this submit; ``outcome(cell_id)``: (completed, error line) of a
    cell that ran here, judged from its own files (by submission, which reads cell records)."""

    spec: ExperimentSpec
    manifest: Manifest
    path: Path
    python: str
    options: SubmitOptions
    out: Out
    outcome: Callable[[str], tuple[bool, str]]
    why: str = ""  # why this backend was chosen ('' when SLURM answered)
    live: list[tuple[str, str]] = field(default_factory=list)
    on_tick: Callable[[], None] | None = None


@dataclass
class Submitted:
    """What a backend's submit did beyond each action's job id."""

    arrays: list[str] = field(default_factory=list)  # job arrays submitted (ids)
    failed: list[str] = field(default_factory=list)  # cells that ran here and failed
    collect_job: str = ""  # the dependent collect job (submit --collect / the round chain)


@dataclass
class Stopped:
    """What a backend's :meth:`Backend.cancel` stopped: SLURM job ids, local runner pids."""

    jobs: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)


class Backend(Protocol):
    """Where cells run. ``name`` is the manifest's ``cluster`` word; ``runs_here``: submit runs the cells
    itself and returns once they ended; ``queued``: its jobs are SLURM's (sacct/squeue report them, they
    outlive submit, a dependent job can wait for them)."""

    name: str
    runs_here: bool
    queued: bool

    def check(self, spec: ExperimentSpec, ctx: CheckContext) -> tuple[list[str], list[str]]:
        """(problems, warnings) of running ``spec``'s cells here, found without side effects."""
        ...

    def submit(self, run: SubmitRun, todo: list[CellAction]) -> Submitted:
        """Submit (or run, and wait for) ``todo``: per batch, intents saved, jobs started, attempts saved."""
        ...

    def adopt(self, manifest: Manifest, experiment_dir: Path, intents: dict[str, Intent], done: Reconciled,
              how: Adopting) -> None:
        """Settle ``intents`` (this backend's, cell -> intent) that a killed submit left, in memory, into
        ``done``: adopt the job it started, or drop the intent."""
        ...

    def observe(self, attempt: Attempt, view: AttemptView) -> tuple[JobState | None, str | None]:
        """(SLURM's answer, this machine's answer) for ``attempt``; the one that does not apply is None.
        Raises OSError when the attempt's folder cannot be read (that cell is DAMAGED)."""
        ...

    def still_running(self, manifest: Manifest, experiment_dir: Path) -> str:
        """A problem line when an earlier run of this backend still owns the experiment, else ''."""
        ...

    def cancel(self, experiment_dir: Path, job_ids: list[str], stop: Stop | None = None) -> Stopped:
        """Stop this backend's live work in the experiment (``job_ids``: its live jobs there)."""
        ...


def scancel(job_ids: list[str]) -> None:
    """``scancel`` these jobs; one-line errors that say how to cancel by hand."""
    try:
        proc = subprocess.run(["scancel", *job_ids], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ClusterError(f"scancel could not run ({exc}); cancel by hand: scancel "
                           f"{' '.join(job_ids)}") from None
    if proc.returncode != 0:
        said = " ".join((proc.stderr or proc.stdout).split()) or f"exit {proc.returncode}"
        raise ClusterError(f"scancel refused ({said}); check squeue --me and cancel by hand")


def never_started(attempt: Attempt, states: StateQuery) -> JobState | None:
    """An array task cancelled while it waited leaves no accounting record at all (SLURM records a task
    when it starts): with accounting on and squeue answering, a task in neither was cancelled pending."""
    if states.source != "sacct" or not states.queue_read:
        return None
    return JobState(attempt.job_id, CellState.CANCELLED, "CANCELLED", reason=NEVER_STARTED, source="sacct")


def local_job_state(attempt: Attempt, experiment_dir: Path) -> CellState:
    """RUNNING while submitit's local controller lives; ENDED once it wrote its result file; else CANCELLED.

    The result file is a pickle and is never opened (anyone who can write the results directory
    could plant one): whether the cell succeeded is what its own JSON files say."""
    if attempt.job_id.isdigit() and process_alive(int(attempt.job_id), LOCAL_CONTROLLER):
        return CellState.RUNNING
    if result_pickle(experiment_dir / attempt.folder, attempt.job_id).exists():
        return CellState.ENDED
    return CellState.CANCELLED  # the process is gone and left no result: killed


class SlurmBackend:
    """Cells as SLURM jobs (job arrays by shape): sbatch through submitit, state from sacct/squeue."""

    name = "slurm"
    runs_here = False
    queued = True

    def check(self, spec: ExperimentSpec, ctx: CheckContext) -> tuple[list[str], list[str]]:
        """The request against sinfo, the torch build on the cells' ``gpu_type``, a node's host memory."""
        problems, warnings = cluster_checks(spec, ctx.problems, ctx.query)
        p, w = ctx.v100(spec)
        problems += p
        warnings += w
        if ctx.n_images is not None:
            warnings += host_memory_warnings(spec, ctx.n_images)
        return problems, warnings

    def submit(self, run: SubmitRun, todo: list[CellAction]) -> Submitted:
        """Job arrays by shape (or a job per cell), then the dependent collect job when asked for."""
        o = run.options
        done = Submitted(arrays=submit_cells(run.spec, run.manifest, run.path, todo, run.python, run.out, o))
        if o.collect or o.chain:
            live = [job for cluster, job in run.live if cluster == self.name]
            done.collect_job = submit_collect_job(run.spec, run.manifest, run.path, live, todo, run.python,
                                                  run.out, next_round=o.chain)
        return done

    def adopt(self, manifest: Manifest, experiment_dir: Path, intents: dict[str, Intent], done: Reconciled,
              how: Adopting) -> None:
        """Find each intent's job by its tag (squeue, else sacct); ``whole_queue``: lost live jobs too."""
        adopt_slurm(manifest, experiment_dir, intents, done, run=how.run, whole_queue=how.whole_queue)

    def observe(self, attempt: Attempt, view: AttemptView) -> tuple[JobState | None, str | None]:
        """SLURM's answer for the attempt's job, if the job of that id is still ours (by its name)."""
        job = view.states.states.get(attempt.job_id)
        name = array_name(view.experiment) if attempt.array_id else job_name(view.experiment, view.cell_id)
        ours = ("", name)
        if job is not None and job.name not in ours:
            job = None  # the id now belongs to someone else's job (SLURM restarted its ids): ours is gone
        if job is None and attempt.array_id:
            job = never_started(attempt, view.states)
        return job, None

    def still_running(self, manifest: Manifest, experiment_dir: Path) -> str:
        """'' : SLURM jobs of an earlier submit are planned around (skipped while live), never a conflict."""
        return ""

    def cancel(self, experiment_dir: Path, job_ids: list[str], stop: Stop | None = None) -> Stopped:
        """scancel ``job_ids`` (the experiment folder is checked writable first: the record follows)."""
        if job_ids:
            ensure_writable_dir(experiment_dir, "experiment folder")  # the record is written after scancel
            (stop or scancel)(job_ids)
        return Stopped(jobs=list(job_ids))


class LocalBackend:
    """Cells on this machine through submitit's LocalExecutor, each on its own GPUs; submit waits."""

    name = "local"
    runs_here = True
    queued = False

    def check(self, spec: ExperimentSpec, ctx: CheckContext) -> tuple[list[str], list[str]]:
        """This machine's GPUs and room for the cells; a dry run instead writes scripts for the cluster's
        ``gpu_type`` (so judges the torch build there) and needs nothing here."""
        if ctx.dry_run:
            return ctx.v100(spec)
        return local_machine_problems(spec, ctx.problems), []

    def submit(self, run: SubmitRun, todo: list[CellAction]) -> Submitted:
        """Run ``todo`` here, ``max_parallel`` at a time, each on its own of the visible GPUs; returns when
        they (and any left running by a killed submit) have ended."""
        gpus = visible_gpus() if todo else []
        share = f", each on its own of GPUs {','.join(gpus)}" if gpus else ""
        n = run.options.max_parallel
        run.out(f"running {len(todo)} cell(s) on this machine, {n} at a time{share} "
                f"({run.why or 'local'}); waiting for them (status works from another shell)")
        failed = run_cells(run.spec, run.manifest, run.path, todo, n, run.on_tick, gpus, run.outcome)
        return Submitted(failed=failed)

    def adopt(self, manifest: Manifest, experiment_dir: Path, intents: dict[str, Intent], done: Reconciled,
              how: Adopting) -> None:
        """Find each intent's controller process by its command line (it outlives a killed submit)."""
        adopt_local(manifest, experiment_dir, intents, done, how.local_jobs)

    def observe(self, attempt: Attempt, view: AttemptView) -> tuple[JobState | None, str | None]:
        """The controller process's state (None for a damaged cell: its folder is not read)."""
        if view.damaged:
            return None, None
        return None, local_job_state(attempt, view.experiment_dir)

    def still_running(self, manifest: Manifest, experiment_dir: Path) -> str:
        """A local run of this experiment still going: a second would run its cells twice."""
        ran_here = any(e.last and e.last.cluster == self.name for e in manifest.cells.values())
        if ran_here and (r := runner_alive(experiment_dir)):
            return (f"a local run of {manifest.experiment!r} is still going (pid {r['pid']}); wait for it "
                    "to end or stop it before submitting again")
        return ""

    def cancel(self, experiment_dir: Path, job_ids: list[str], stop: Stop | None = None) -> Stopped:
        """SIGTERM the experiment's local runner, if one lives: it cancels and records its own cells."""
        runner = runner_alive(experiment_dir)
        if runner and runner.get("pid"):
            os.kill(int(runner["pid"]), signal.SIGTERM)
            return Stopped(pids=[int(runner["pid"])])
        return Stopped()


#: every backend by its manifest word, in the order cancel stops them
BACKENDS: dict[str, Backend] = {b.name: b for b in (SlurmBackend(), LocalBackend())}


def backend_for(name: str) -> Backend:
    """The backend a manifest attempt's (or intent's) ``cluster`` word names."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise ConfigError(f"unknown cluster {name!r}; use one of {', '.join(BACKENDS)}") from None


def runs_here(choice: str) -> bool:
    """Whether a ``--cluster`` choice (``auto`` included) certainly runs the cells on this machine."""
    return choice in BACKENDS and BACKENDS[choice].runs_here


def resolve_cluster(choice: str, reachable: Callable[[], tuple[bool, str]] = slurm_reachable,
                    installed: Callable[[], bool] = slurm_installed) -> tuple[str, str]:
    """('slurm' | 'local', why) for --cluster auto|slurm|local.

    ``auto`` runs here only where SLURM is not installed at all: on a login node whose controller
    is briefly down, training the whole matrix on the login node is the last thing anyone wants."""
    if choice not in CLUSTERS:
        raise ConfigError(f"--cluster {choice!r} is not valid; use one of {', '.join(CLUSTERS)}")
    if runs_here(choice):
        return choice, f"--cluster {choice}"
    ok, why = reachable()
    if ok:
        return SlurmBackend.name, ""
    if choice != "auto":
        raise ClusterError(f"SLURM is not reachable ({why}); start it (scripts/minislurm.sh up) "
                           "or use --cluster local")
    if installed():
        raise ClusterError(f"SLURM is installed here but not answering ({why}); submit again when it is "
                           "back, or pass --cluster local to run the cells on this machine")
    return LocalBackend.name, f"no SLURM here ({why})"
