"""The Python API: the functions the ``aslhpc`` commands call, for notebooks and scripts.

    from aslhpc import api

    spec = api.load_experiment("smoke", data="demo/asl", results="demo/results")
    result = api.submit(spec, api.SubmitOptions(cluster="local"))
    report = api.status(api.experiment_dir("smoke", "demo/results"))    # rows, read-only
    out = api.collect(api.experiment_dir("smoke", "demo/results"))      # frames + report.md
    api.cancel(api.experiment_dir("smoke", "demo/results"))             # every live job of it

Every function raises :class:`~aslhpc.errors.AslhpcError` (one line: what is wrong; how to fix it) on
bad input, before any cluster time is spent. The CLIs are thin layers over these (docs/python-api.md).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aslhpc.atomic import append_jsonl, ensure_writable_dir, remove_orphaned_temps
from aslhpc.errors import ConfigError
from aslhpc.invocation import aslhpc_command
from aslhpc.orchestration.backend import BACKENDS, Stop, backend_for
from aslhpc.orchestration.cellrecord import Damaged, inside
from aslhpc.orchestration.cellstate import CellRow, StatusReport, experiment_status, read_manifest
from aslhpc.orchestration.experiment import (
    ExperimentSpec,
    Overrides,
    apply_overrides,
    find_job_file,
    load_spec,
)
from aslhpc.orchestration.manifest import MANIFEST, find_manifests
from aslhpc.orchestration.submission import SubmitOptions, SubmitResult, submit_experiment
from aslhpc.states import LIVE, CellState

if TYPE_CHECKING:
    from rich.console import Console

    from aslhpc.analysis import CollectOutput
    from aslhpc.rounds import Decision

__all__ = ["SubmitOptions", "cancel", "cell_logs", "collect", "collect_reference", "experiment_dir",
           "experiment_file", "live_states", "load_experiment", "status", "submit", "submit_until_conclusive"]

DEFAULT_RESULTS = "results"
#: the record of every ``cancel`` of an experiment, one JSON line each, beside its manifest
CANCELLED_LOG = "cancelled.jsonl"


# --------------------------------------------------------------------------- experiments


def is_experiment_file(text: str) -> bool:
    """``--experiment`` names a file (``x.toml`` or an existing path) rather than an experiment's name."""
    return text.endswith(".toml") or os.sep in text or Path(text).is_file()


def experiment_file(name_or_toml: str | Path) -> Path:
    """The experiment file: ``jobs/NAME.toml`` (yours, else the shipped one) or the path given."""
    p = Path(name_or_toml)
    if p.is_dir():
        raise ConfigError(f"{p} is a directory, not an experiment file; name a .toml file in it (e.g. "
                          f"{p / 'lad2020.toml'}) or an experiment by name (aslhpc submit --list)")
    return find_job_file(str(name_or_toml))


def load_experiment(name_or_toml: str | Path, overrides: Overrides | None = None,
                    train: dict[str, Any] | None = None, **flags: Any) -> ExperimentSpec:
    """Read and check an experiment file; ``overrides``/``flags`` (Overrides fields, e.g. ``data=``) and
    ``train`` (any [train] key) win over the file."""
    spec = load_spec(experiment_file(name_or_toml))
    given = {k: v for k, v in flags.items() if v is not None}
    if overrides is not None or given:
        spec = apply_overrides(spec, replace(overrides or Overrides(), **given))
    train = {k: v for k, v in (train or {}).items() if v is not None}
    if train:
        spec = replace(spec, train=replace(spec.train, **train))
    return spec


def experiment_dir(experiment: str | None = None, results: str | Path | None = None, *,
                   latest: bool = False) -> Path:
    """The folder ``<results>/<name>`` of an experiment, named or given by its .toml file (then the file's
    results folder unless ``results`` is given). Without a name: the only one under ``results``
    (``latest``: the most recently submitted one)."""
    name = experiment
    if experiment and (Path(experiment) / MANIFEST).is_file():
        return Path(experiment)  # the experiment's folder itself
    if experiment and is_experiment_file(experiment):
        spec = load_experiment(experiment)
        name, results = spec.name, results or spec.results
    root = Path(results or DEFAULT_RESULTS)
    found = [p.parent.name for p in find_manifests(root)]
    if name:
        d = root / name
        if not (d / MANIFEST).is_file() and not d.is_dir():
            listing = f"found: {', '.join(sorted(found))}" if found else "none found"
            raise ConfigError(f"no experiment {name!r} under {root}/ ({listing}); check --experiment and "
                              f"--results, or run {aslhpc_command('submit')} first")
        return d
    if not found:
        raise ConfigError(f"no experiment with a {MANIFEST} under {root}/; run {aslhpc_command('submit')} "
                          "first or pass --results DIR")
    if latest or len(found) == 1:
        return root / found[0]
    raise ConfigError(f"{len(found)} experiments under {root}/ ({', '.join(sorted(found))}); pick one with "
                      "--experiment NAME")


# --------------------------------------------------------------------------- submit and status


def submit(spec: ExperimentSpec, options: SubmitOptions | None = None, out: Callable[[str], None] = print,
           on_local_tick: Callable[[], None] | None = None) -> SubmitResult:
    """Validate everything, then one job per cell (or run them here); safe to repeat (module
    :mod:`aslhpc.orchestration.submission`). The results folder is checked writable first."""
    ensure_writable_dir(spec.results, "results folder")
    return submit_experiment(spec, options or SubmitOptions(), out=out, on_local_tick=on_local_tick)


def submit_until_conclusive(spec: ExperimentSpec, options: SubmitOptions | None = None, *,
                            max_rounds: int = 3, budget_gpu_hours: float | None = None,
                            out: Callable[[str], None] = print) -> Decision:
    """``aslhpc submit --until-conclusive --wait``: rounds of one more repeat of just the configurations whose
    overlapping intervals keep a verdict open, in the foreground, until none is left (:mod:`aslhpc.rounds`).
    On SLURM each round's jobs are waited for here; the returned decision says why it stopped."""
    from aslhpc.orchestration.submission import RoundPolicy
    from aslhpc.rounds import run_rounds

    ensure_writable_dir(spec.results, "results folder")
    policy = RoundPolicy(max_rounds, budget_gpu_hours)
    options = replace(options or SubmitOptions(), until=policy, chain=False)

    def one_round(s: ExperimentSpec, o: SubmitOptions) -> SubmitResult:
        result = submit_experiment(s, o, out=out)
        while not result.backend.runs_here and not experiment_status(result.manifest).all_ended:
            time.sleep(30)  # polite to a shared controller
        return result

    return run_rounds(spec, options, out, submit=one_round)


def status(exp_dir: str | Path) -> StatusReport:
    """One row per cell (state, job, epoch, accuracy, ETA), from the manifest, SLURM and the cell files.

    Read-only: nothing is written (only submit records jobs; an interrupted submit's cells are shown by
    :func:`interrupted_submissions`)."""
    return experiment_status(Path(exp_dir) / MANIFEST)


def interrupted_submissions(exp_dir: str | Path) -> dict[str, tuple[str, str]]:
    """Cells whose submit was killed between sbatch and recording the job: cell -> (job id or '', state).

    Looked up read-only (squeue, by the submission's tag); '' where no job is found (or SLURM does not
    answer). ``aslhpc submit`` adopts them into the manifest."""
    from aslhpc.slurm.accounting import queued_jobs_named
    from aslhpc.slurm.executor import array_name, job_name

    manifest = read_manifest(Path(exp_dir) / MANIFEST)
    pending = manifest.pending()
    if not pending:
        return {}
    exp = manifest.experiment
    names = {cid: array_name(exp) if i.task is not None else job_name(exp, cid) for cid, i in pending.items()}
    slurm = any(backend_for(i.cluster).queued for i in pending.values())
    try:
        queued = queued_jobs_named(names.values()) if slurm else []
    except RuntimeError:
        queued = []
    out = {}
    for cid, intent in pending.items():
        match = [j for j in queued if j.name == names[cid] and j.token == intent.token
                 and (intent.task is None or j.job_id.endswith(f"_{intent.task}"))]
        out[cid] = (match[0].job_id, match[0].state) if match else ("", "")
    return out


def cell_logs(exp_dir: str | Path, cell_id: str) -> list[Path]:
    """The log files of a cell's jobs (every attempt's stdout/stderr and the trainer's error file), oldest
    first; an unknown cell is an error naming the cells there are."""
    exp_dir = Path(exp_dir)
    manifest = read_manifest(exp_dir / MANIFEST)
    entry = manifest.cells.get(cell_id)
    if entry is None:
        raise ConfigError(f"no cell {cell_id!r} in {exp_dir.name} (cells: {', '.join(manifest.cells)}); "
                          "see aslhpc status")
    logs: list[Path] = []
    for attempt in entry.attempts:
        try:
            folder = inside(exp_dir, attempt.folder, "attempt folder")
        except Damaged:
            continue  # a path leading out of the experiment: not this cell's logs
        for pattern in ("*.out", "*.err", "*.log"):
            logs += sorted(p for p in folder.parent.glob(pattern) if attempt.job_id in p.name)
            logs += sorted(folder.glob(pattern)) if folder.is_dir() else []
    cell_dir = exp_dir / "cells" / cell_id
    logs += sorted(p for p in cell_dir.glob("*.log")) if cell_dir.is_dir() else []
    logs += [p for p in (cell_dir / "error.txt",) if p.is_file()]
    return list(dict.fromkeys(p for p in logs if p.is_file()))


# --------------------------------------------------------------------------- collect


def live_states(exp_dir: str | Path) -> dict[str, tuple[str, str]] | None:
    """Each unfinished cell's (state, reason) exactly as ``status`` shows it (one sacct call), so holes
    say why and collect never disagrees with status."""
    manifest = Path(exp_dir) / MANIFEST
    if not manifest.is_file():
        return None
    report = experiment_status(manifest)
    # UNKNOWN (SLURM unreachable or the job forgotten) says less than the cell's own files: leave those
    # holes to them.
    return {r.cell_id: (r.state, _reason(r)) for r in report.rows
            if r.state not in (CellState.COMPLETED, CellState.UNKNOWN)}


def _reason(row: CellRow) -> str:
    """The hole's reason: the error line of a failed cell, else where its job stands."""
    if row.failed:
        return row.error + (f" (log: {row.log})" if row.log else "")
    job = f"{row.cluster} job {row.job_id}".strip() if row.job_id else ""
    parts = [job + (f" on {row.node}" if row.node else "")] if job else []
    if row.slurm_state and row.slurm_state.split(" ")[0] != row.state:
        parts.append(f"SLURM: {row.slurm_state}")
    if row.state == CellState.RUNNING and row.epochs:
        parts.append(f"epoch {row.epoch}/{row.epochs} done")
    if row.elapsed and row.state != CellState.PENDING:
        parts.append(f"elapsed {row.elapsed}")
    if row.state == CellState.PENDING and not job:
        parts.append("waiting for the local run to start it")
    return ", ".join(p for p in parts if p)


def collect(exp_dir: str | Path, *, reference: Any = None, console: Console | None = None,
            write: bool = True, **settings: Any) -> CollectOutput:
    """Load an experiment's cells, analyse them (tables, verdicts), write report.md and the files beside
    it (``write=False``: compute only). ``settings``: ci, h1_threshold, h3_metric, h4_r2,
    allow_mixed_splits, plots, verbose. The one call of the analysis' collect driver."""
    from aslhpc.collecting import collect_experiment

    exp_dir = Path(exp_dir)
    if write:
        ensure_writable_dir(exp_dir, "experiment folder")
        remove_orphaned_temps(exp_dir)  # a killed collect's half-written files (never a live writer's)
    return collect_experiment(exp_dir, reference=reference, states=live_states(exp_dir), console=console,
                              write=write, **settings)


def collect_reference(reference: Any, out_dir: str | Path, *, console: Console | None = None,
                      write: bool = True, **settings: Any) -> CollectOutput:
    """The same analysis on the published 2020 figures alone (``collect --reference-only``)."""
    from aslhpc.collecting import collect_reference as collect_ref

    if write:
        ensure_writable_dir(out_dir, "output folder")
        remove_orphaned_temps(out_dir)
    return collect_ref(reference, out_dir, console=console, write=write, **settings)


def collect_job(exp_dir: str) -> None:
    """What ``submit --collect``'s job runs once the cells have ended: :func:`collect`, with the reference
    beside it when the experiment's results folder has one, the summary in the job's log."""
    from aslhpc.cli import console

    collect(exp_dir, console=console())


# --------------------------------------------------------------------------- cancel


@dataclass
class Cancelled:
    """What :func:`cancel` stopped: SLURM job ids, local runner pids, and the cells they carried."""

    jobs: list[str] = field(default_factory=list)
    local_pids: list[int] = field(default_factory=list)
    cells: list[str] = field(default_factory=list)


def cancel(exp_dir: str | Path, scancel: Stop | None = None) -> Cancelled:
    """Cancel every queued and running job of an experiment (its cells' and its collect job), and stop a
    local runner of it; recorded in ``cancelled.jsonl`` beside the manifest. status then shows the cells
    CANCELLED, and ``submit --retry-failed`` resumes them (a cell resumes after its last finished epoch).

    Each backend stops its own (``scancel``: the command that stops SLURM jobs, replaceable in tests)."""
    exp_dir = Path(exp_dir)
    report = status(exp_dir)
    done = Cancelled()
    live = [r for r in report.rows if r.state in LIVE and r.job_id]
    jobs = {name: sorted({r.job_id for r in live if r.cluster == name}) for name in BACKENDS}
    collect = report.collect
    if collect is not None and collect.state in LIVE and collect.job_id:
        jobs[backend_for(collect.cluster).name].append(collect.job_id)
    done.cells = [r.cell_id for r in live]
    for name, backend in BACKENDS.items():
        stopped = backend.cancel(exp_dir, jobs[name], scancel)
        done.jobs += stopped.jobs
        done.local_pids += stopped.pids
        if stopped.pids:  # a runner stopped: its cells are cancelled and recorded by the runner
            done.cells += [r.cell_id for r in report.rows if r.cluster == name and r.state in LIVE]
    if done.jobs or done.local_pids:
        append_jsonl(exp_dir / CANCELLED_LOG, {"at": datetime.now(UTC).isoformat(timespec="seconds"),
                                               "jobs": done.jobs, "local_pids": done.local_pids,
                                               "cells": sorted(set(done.cells))})
    return done
