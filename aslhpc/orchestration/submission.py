"""Submit an experiment: validate everything, then the cells' jobs (arrays by shape), recorded in the manifest

Order matters and is the point of this module:

1. :func:`check_submission` finds every problem (spec, dataset, preamble, partition, reservation,
   GPUs per node, CPUs, memory, an incompatible earlier run) without side effects, so a bad
   request submits nothing and leaves the manifest byte-for-byte as it was;
2. :func:`plan_cells` decides per cell from its files and SLURM state: completed and live cells
   are skipped, failed ones are resubmitted only with ``retry_failed``, so a cell never has two
   live jobs;
3. :func:`submit_experiment` first adopts the jobs of an interrupted earlier submit
   (:mod:`aslhpc.orchestration.reconcile`), then hands the cells to submit to the backend the cluster
   resolved to (:func:`~aslhpc.orchestration.backend.backend_for`: SLURM or this machine), or renders
   them for ``dry_run``. A backend writes each cell's intent (a token) into the manifest before it starts
   the cell's job and the job id right after: a crash or a full disk at any step leaves either nothing
   submitted for the cell or an intent from which the next submit finds the job: never a second live job.

On SLURM, cells of one job shape go into one job array (:mod:`aslhpc.orchestration.slurm_submit`); here,
they run through submitit's LocalExecutor (:mod:`aslhpc.orchestration.local_run`). Nothing in this module
compares the backend's name: it asks the backend.

Tests kill submit between those steps through :data:`CRASH_ENV` (see
:func:`aslhpc.orchestration.actions.crash_point`).
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

from aslhpc.atomic import read_json
from aslhpc.errors import AslhpcError, ClusterError, ConfigError, DataError
from aslhpc.orchestration.actions import CellAction, Ledger, Out, SubmitOptions, action_request
from aslhpc.orchestration.actions import RoundPolicy as RoundPolicy  # re-exported: the Python API's name
from aslhpc.orchestration.adoption import submit_lock
from aslhpc.orchestration.backend import (
    BACKENDS,
    Backend,
    CheckContext,
    SubmitRun,
    backend_for,
    resolve_cluster,
)
from aslhpc.orchestration.cellstate import (
    DAMAGED,
    NOT_SUBMITTED,
    UNKNOWN,
    CellRow,
    StatusReport,
    damaged_file,
    experiment_status,
    set_aside_damaged,
)
from aslhpc.orchestration.experiment import (
    Cell,
    ExperimentSpec,
    SpecErrors,
    TrainSettings,
    job_request,
    parse_time_min,
    validate_spec,
)
from aslhpc.orchestration.manifest import Attempt, Manifest, load_manifest, manifest_path
from aslhpc.orchestration.reconcile import reconcile_manifest
from aslhpc.orchestration.requestchecks import TorchBuild, torch_build
from aslhpc.orchestration.requestchecks import host_memory_warnings as host_memory_warnings  # re-exported
from aslhpc.orchestration.requestchecks import v100_check as v100_check  # re-exported
from aslhpc.orchestration.retry import LEARNS, Caps, partition_caps, plan_retry
from aslhpc.slurm.cluster import ClusterInfo, query_cluster, slurm_reachable
from aslhpc.slurm.executor import cell_command, default_python, render_sbatch
from aslhpc.states import FAILED as FAILED_STATES
from aslhpc.states import LIVE as LIVE_STATES
from aslhpc.states import CellState
from aslhpc.training.config import NOT_IDENTITY, TrainConfig

if TYPE_CHECKING:
    from aslhpc.data import DatasetIndex

# TrainSettings fields that do not change what a cell computes: TrainConfig.identity()'s own set, less the
# per-cell paths (out, cache_dir) that TrainSettings does not have
_NOT_IDENTITY = NOT_IDENTITY & {f.name for f in fields(TrainSettings)}


@dataclass
class SubmitResult:
    experiment: str
    manifest: Path
    cluster: str  # slurm | local
    actions: list[CellAction] = field(default_factory=list)
    dry_run_dir: Path | None = None
    warnings: list[str] = field(default_factory=list)
    failed_local: list[str] = field(default_factory=list)
    arrays: list[str] = field(default_factory=list)  # the job arrays submitted (ids)
    collect_job: str = ""  # the dependent collect job submitted (submit --collect)

    @property
    def backend(self) -> Backend:
        """Where the cells went: ask it (``runs_here``, ``queued``) rather than compare ``cluster``."""
        return backend_for(self.cluster)


# --------------------------------------------------------------------------- 1. validation


def normalized_spec(spec: ExperimentSpec) -> ExperimentSpec:
    """Data path made absolute, so the manifest and the jobs do not depend on the working directory."""
    return replace(spec, data=str(Path(spec.data).expanduser().resolve()))


def spec_conflicts(old: dict, new: ExperimentSpec) -> list[str]:
    """Differences that make an existing experiment directory hold a different experiment."""
    diffs = []
    old_train = old.get("train", {})
    for key, value in asdict(new.train).items():
        if key in _NOT_IDENTITY or key not in old_train:
            continue
        if old_train[key] != value:
            diffs.append(f"train.{key} {old_train[key]!r} -> {value!r}")
    if old.get("data") and Path(new.data).exists() and str(Path(old["data"])) != str(Path(new.data)):
        diffs.append(f"data {old['data']} -> {new.data}")
    return diffs


def kept_extra_repeats(spec: ExperimentSpec) -> ExperimentSpec:
    """``spec`` with the extra repeats earlier --until-conclusive rounds gave its configurations (the most
    of the two per configuration): a later plain submit never drops cells a round added."""
    try:
        old = load_manifest(manifest_path(spec.results, spec.name))
    except ConfigError:
        return spec  # check_submission reports the damaged manifest
    if old is None or not old.spec.get("extra_repeats"):
        return spec
    known = set(spec.config_keys().values())
    merged = dict(spec.extra_repeats)
    for key, n in ExperimentSpec.from_dict({**old.spec, "name": spec.name}).extra_repeats:
        if key in known:
            merged[key] = max(merged.get(key, 0), n)
    return replace(spec, extra_repeats=tuple(sorted(merged.items())))


def check_submission(spec: ExperimentSpec, cluster: str, *, dry_run: bool = False,
                     query: Callable[[], ClusterInfo] = query_cluster,
                     torch_info: Callable[[], TorchBuild | None] | None = None,
                     notes: list[str] | None = None,
                     scanned: list[DatasetIndex] | None = None) -> tuple[list[str], list[str]]:
    """(problems, warnings): everything wrong with submitting ``spec``, found before any side effect;
    ``notes`` (when given) gets what the checks learnt that a user should see (the model's size), and
    ``scanned`` the dataset's index (submit records each cell's split from it).

    ``torch_info`` describes the torch the jobs will run (default :func:`torch_build`, this interpreter's:
    the jobs run it too). A dry run only warns about it, since it starts nothing."""
    problems = list(validate_spec(spec))
    warnings: list[str] = []
    index = _check_data_and_model(spec, problems, notes)
    if scanned is not None and index is not None:
        scanned.append(index)
    warnings += _time_warnings(spec)
    if not any(p.startswith("cluster.preamble") for p in problems):
        problems += _preamble_problems(spec)
    n_images = len(index.files) if index is not None else None
    ctx = CheckContext(list(problems), n_images, dry_run, query, torch_info or torch_build)
    p, w = backend_for(cluster).check(spec, ctx)  # where the cells go: its limits, its GPUs
    problems += p
    warnings += w
    problems += _earlier_run_problems(spec)
    return problems, warnings


def _check_data_and_model(spec: ExperimentSpec, problems: list[str],
                          notes: list[str] | None) -> DatasetIndex | None:
    """The dataset's index (None when it cannot be read); appends the dataset's and the model's problems.

    The model is built (on the meta device) only when its settings are valid, to learn its size."""
    from aslhpc.data import scan_dataset

    index = None
    try:
        index = scan_dataset(spec.data)
    except DataError as exc:
        problems.append(f"{exc} (pass --data DIR)")
    if not any(p.startswith(("train.model", "train.image_size")) for p in problems):
        from aslhpc.training.models import describe, model_info

        try:
            info = model_info(spec.train.model, len(index.classes) if index else 29, spec.train.image_size)
        except ConfigError as exc:
            problems.append(f"train.model: {exc}")
        else:
            if notes is not None:
                notes.append(f"model {describe(info)}")
    return index


def _time_warnings(spec: ExperimentSpec) -> list[str]:
    """A time limit of 10 minutes or less: submitit then counts every preemption as a timeout."""
    try:
        if parse_time_min(spec.cluster.time) <= 10:
            return [f"cluster.time={spec.cluster.time!r} is 10 minutes or less: submitit then "
                    "counts every preemption as a timeout, and a cell is requeued at most "
                    f"cluster.max_requeues={spec.cluster.max_requeues} times"]
    except ConfigError:
        pass  # reported by validate_spec
    return []


def _preamble_problems(spec: ExperimentSpec) -> list[str]:
    """The job preamble file must be readable: every job sources it."""
    from aslhpc.slurm.executor import read_preamble

    try:
        read_preamble(spec.cluster.preamble)
    except ConfigError as exc:
        return [str(exc)]
    return []


def _earlier_run_problems(spec: ExperimentSpec) -> list[str]:
    """An existing experiment directory that holds other settings, or a local run of it still going."""
    path = manifest_path(spec.results, spec.name)
    try:
        old = load_manifest(path)
    except ConfigError as exc:
        return [str(exc)]
    if old is None:
        return []
    problems = []
    diffs = spec_conflicts(old.spec, spec)
    if diffs:
        problems.append(f"{path.parent} already holds experiment {spec.name!r} with other settings "
                        f"({'; '.join(diffs)}); use --results DIR for a separate run")
    problems += [line for b in BACKENDS.values() if (line := b.still_running(old, path.parent))]
    return problems


# --------------------------------------------------------------------------- 2. planning


def finished_outside(spec: ExperimentSpec, cell: Cell) -> bool:
    """True if the cell's result.json exists for this very configuration though no submit recorded a job
    for it (run by hand from a --dry-run script, or with aslhpc.train): submitting it again would
    only start a job that finds the cell done."""
    path = spec.experiment_dir / "cells" / cell.cell_id / "result.json"
    try:
        config = read_json(path).get("config") or {}
        return TrainConfig.from_dict(config).identity() == spec.train_config(cell).identity()
    except (OSError, ValueError, TypeError, AttributeError, AslhpcError):
        return False


def plan_cells(spec: ExperimentSpec, report: StatusReport | None, retry_failed: bool,
               done: Callable[[ExperimentSpec, Cell], bool] = finished_outside,
               history: Mapping[str, Sequence[Attempt]] | None = None,
               caps: Caps | None = None) -> list[CellAction]:
    """What to do with each cell, given the current status rows (None = nothing submitted yet).

    ``history`` (each cell's attempts) and ``caps`` (the partition's limits; None: not on SLURM) let a
    retry learn: more memory after OUT_OF_MEMORY, more time after TIMEOUT (:func:`retry_action`)."""
    rows: dict[str, CellRow] = {r.cell_id: r for r in report.rows} if report else {}
    # squeue lists every live job, so a job it does not list has ended (sacct would have said how)
    queue_says_ended = report is not None and report.source == "squeue"
    actions = []
    for cell in spec.cells():
        row = rows.get(cell.cell_id)
        state = row.state if row else NOT_SUBMITTED
        job = f" (job {row.job_id})" if row and row.job_id else ""
        if state == NOT_SUBMITTED and done(spec, cell):
            actions.append(CellAction(cell, "skip",
                                      "completed (its result.json is there, from a run outside submit)"))
        elif state == NOT_SUBMITTED:
            actions.append(CellAction(cell, "submit"))
        elif state == CellState.COMPLETED:
            actions.append(CellAction(cell, "skip", f"completed{job}"))
        elif state in LIVE_STATES:
            actions.append(CellAction(cell, "skip", f"{state}{job}"))
        elif state == DAMAGED:  # a garbled file: a new job would trip over it too; never a second live job
            actions.append(damaged_action(cell, row, job, retry_failed))
        elif state in FAILED_STATES or (state == UNKNOWN and queue_says_ended):
            if retry_failed:
                attempts = (history or {}).get(cell.cell_id, ())
                actions.append(retry_action(spec, cell, state, f"was {state}{job}", attempts, caps))
            else:
                actions.append(CellAction(cell, "skip", f"{state}{job}; resubmit with --retry-failed"))
        else:  # UNKNOWN: SLURM cannot tell whether the job still lives; never risk a second live job
            actions.append(CellAction(cell, "skip", f"{state}{job}: SLURM does not report it; check "
                                                    "`sacct -j ID` and cancel or wait before resubmitting"))
    return actions


def damaged_action(cell: Cell, row: CellRow, job: str, retry_failed: bool) -> CellAction:
    """A DAMAGED cell: with ``retry_failed`` re-run once its damaged files are set aside (submit moves them,
    :func:`~aslhpc.orchestration.cellstate.set_aside_damaged`); damage that is no cell file only a person
    can fix."""
    if damaged_file(row.error) and retry_failed:
        return CellAction(cell, "retry", f"was DAMAGED{job}: {row.error}", retry_of=DAMAGED)
    how = (" or submit with --retry-failed to move it aside and re-run the cell" if damaged_file(row.error)
           else "")
    return CellAction(cell, "skip", f"DAMAGED{job}: {row.error}; fix or remove that file{how}, then submit "
                                    "again")


def retry_action(spec: ExperimentSpec, cell: Cell, state: str, reason: str, attempts: Sequence[Attempt],
                 caps: Caps | None) -> CellAction:
    """The retry of a failed cell: a bigger request where the failure says which (on SLURM), or a skip
    when it failed that way twice with the request it would make again."""
    if caps is None or state not in LEARNS:
        return CellAction(cell, "retry", reason)
    plan = plan_retry(state, attempts, job_request(spec, cell), caps)
    if plan.refused:
        return CellAction(cell, "skip", f"{reason[len('was '):]}: {plan.refused}")
    return CellAction(cell, "retry", f"{reason}; {plan.note}", mem=plan.mem, time_min=plan.time_min,
                      retry_of=state)


def retry_caps(spec: ExperimentSpec, cluster: str, retry_failed: bool,
               query: Callable[[], ClusterInfo]) -> Caps | None:
    """The partition's limits for learning retries (None off SLURM; unknown limits if scontrol fails)."""
    if not backend_for(cluster).queued or not retry_failed:
        return None
    try:
        return partition_caps(query(), spec.cluster.partition, spec.cluster.gpu_type)
    except (RuntimeError, OSError):
        return Caps(spec.cluster.partition)


def _history(manifest: Manifest | None) -> dict[str, list[Attempt]]:
    return {cid: e.attempts for cid, e in manifest.cells.items()} if manifest else {}


# --------------------------------------------------------------------------- 3. submission


@contextlib.contextmanager
def experiment_lock(experiment_dir: Path) -> Iterator[None]:
    """One submit per experiment at a time (two would race to give a cell two live jobs)."""
    with submit_lock(experiment_dir) as held:
        if not held:
            raise ClusterError(f"another submit of {experiment_dir.name!r} is running; wait for it to finish")
        yield


def submit_experiment(spec: ExperimentSpec, options: SubmitOptions, out: Out = print,
                      on_local_tick: Callable[[], None] | None = None, *,
                      reachable: Callable[[], tuple[bool, str]] = slurm_reachable,
                      cluster_query: Callable[[], ClusterInfo] = query_cluster) -> SubmitResult:
    """Validate, plan, then submit / render / run each cell; raise :class:`SpecErrors` with every problem.

    ``reachable`` and ``cluster_query`` are the SLURM probes (replaceable in tests)."""
    spec = kept_extra_repeats(normalized_spec(spec))
    try:
        cluster, why = resolve_cluster(options.cluster, reachable)
    except ClusterError as exc:
        if not options.dry_run:
            raise
        # A dry run only writes scripts: without an answering controller they are not checked against it.
        cluster, why = "local", str(exc)
        out(f"warning: {str(exc).split(';')[0]}: the sbatch scripts are written but not checked against "
            "the cluster")
    # a dry run checks against SLURM when it can, else only what needs no cluster
    notes: list[str] = []
    scanned: list[DatasetIndex] = []
    problems, warnings = check_submission(spec, cluster, dry_run=options.dry_run, query=cluster_query,
                                          notes=notes, scanned=scanned)
    if problems:
        raise SpecErrors(problems)
    for w in warnings:
        out(f"warning: {w}")
    for note in notes:
        out(note)
    path = manifest_path(spec.results, spec.name)
    result = SubmitResult(spec.name, path, cluster, warnings=warnings)
    python = options.python or default_python()

    if options.dry_run:
        report = experiment_status(path) if path.exists() else None
        caps = retry_caps(spec, cluster, options.retry_failed, cluster_query)
        result.actions = plan_cells(spec, report, options.retry_failed, history=_history(load_manifest(path)),
                                    caps=caps)
        result.dry_run_dir = _write_dry_run(spec, result.actions, python)
        return result

    with experiment_lock(path.parent):
        manifest = load_manifest(path) or Manifest.new(spec)
        # an earlier submit died between sbatch and recording (or the manifest lost a job): adopt first
        queued = backend_for(cluster).queued  # a queue can hold jobs the manifest lost: look for them too
        if manifest.pending() or (queued and path.exists()):
            adopted = reconcile_manifest(manifest, path.parent, whole_queue=queued)
            if adopted.changed:
                Ledger(path, []).save(manifest)
            for line in adopted.lines():
                out(line)
        report = experiment_status(path) if path.exists() else None
        caps = retry_caps(spec, cluster, options.retry_failed, cluster_query)
        result.actions = plan_cells(spec, report, options.retry_failed, history=_history(manifest), caps=caps)
        _set_aside(spec, manifest, result.actions, out)
        manifest.spec = spec.to_dict()
        manifest.ensure_cells(spec.cells())
        if options.until is not None:
            manifest.start_rounds([c.cell_id for c in spec.cells()], options.until.max_rounds,
                                  options.until.budget_gpu_hours)
        todo = [a for a in result.actions if a.submits]
        record_splits(spec, manifest, [a.cell for a in todo], scanned[0])
        if todo or not path.exists():
            Ledger(path, [a.cell.cell_id for a in todo]).save(manifest)
        live = [(r.cluster, r.job_id) for r in (report.rows if report else []) if r.state in LIVE_STATES]
        run = SubmitRun(spec, manifest, path, python, options, out, functools.partial(_local_outcome, spec),
                        why, live, on_local_tick)
        done = backend_for(cluster).submit(run, todo)
        result.arrays, result.failed_local, result.collect_job = done.arrays, done.failed, done.collect_job
    return result


def record_splits(spec: ExperimentSpec, manifest: Manifest, cells: list[Cell], index: DatasetIndex) -> None:
    """Each submitted cell's split as submit makes it of the data (the trainer makes the same one of the
    same files): a result.json carrying another ``split.hash`` is then one DAMAGED cell."""
    from aslhpc.data import make_split

    made: dict[tuple[str, int, str], str] = {}
    for cell in cells:
        cfg = spec.train_config(cell)
        key = (cfg.split, cfg.split_seed, cfg.split_group)
        if key not in made:
            made[key] = make_split(index, cfg.split, cfg.split_seed, group=cfg.split_group).hash
        manifest.cells[cell.cell_id].split_hash = made[key]


def _set_aside(spec: ExperimentSpec, manifest: Manifest, actions: list[CellAction], out: Out) -> None:
    """Move the damaged files of the DAMAGED cells being retried aside (before their jobs can start)."""
    for a in actions:
        if a.submits and a.retry_of == DAMAGED:
            folder, moved = set_aside_damaged(spec.experiment_dir, a.cell.cell_id, manifest)
            if moved:
                rel = os.path.relpath(folder, spec.experiment_dir)
                out(f"{a.cell.cell_id}: moved its damaged {', '.join(moved)} aside into {rel}/ (nothing "
                    "deleted); re-running the cell")


def _local_outcome(spec: ExperimentSpec, cell_id: str) -> tuple[bool, str]:
    """(completed, error line) of a local cell from its own JSON files, as status reads them."""
    from aslhpc.orchestration.cellrecord import load_cell
    from aslhpc.orchestration.cellstate import derive_state

    rec = load_cell(spec.experiment_dir, cell_id)
    state, why = derive_state(rec)
    if state == CellState.COMPLETED:
        return True, ""
    error = rec.error.error if rec.error is not None else why
    lines = [ln for ln in (error or "").splitlines() if ln.strip()]
    return False, lines[-1] if lines else f"{state}: the cell wrote no result.json"


def _write_dry_run(spec: ExperimentSpec, actions: list[CellAction], python: str) -> Path:
    """``results/<exp>/dry-run/<cell_id>.sbatch`` for every cell that would be submitted.

    Rendered by submitit's SlurmExecutor with the real submission's parameters. Two
    differences make them runnable by hand with plain ``sbatch``: the command is
    ``python -m aslhpc.slurm.cell_job`` with the cell's full config (a real submission runs
    the pickled CellJob, which only exists after submitit's own sbatch), and the logs go to
    ``dry-run/<job id>_0_log.out`` (SLURM does not create a missing log directory, and a dry run
    creates nothing under ``jobs/``).
    """
    out_dir = spec.experiment_dir / "dry-run"
    out_dir.mkdir(parents=True, exist_ok=True)
    for action in actions:
        if not action.submits:
            continue
        cell = action.cell
        command = cell_command(python, spec.name, cell.cell_id, spec.train_config(cell).to_dict())
        text = render_sbatch(out_dir.resolve(), action_request(spec, action), command, python=python)
        (out_dir / f"{cell.cell_id}.sbatch").write_text(text, encoding="utf-8")
    return out_dir
