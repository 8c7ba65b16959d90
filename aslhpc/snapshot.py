"""One read of an experiment: the manifest, every cell's files and the accounting figures, read once.

collect (and the Python API) call :func:`load_snapshot`; everything in :mod:`aslhpc.analysis` is then a
pure function of what it returns, and imports nothing from ``orchestration/`` or ``slurm/``. Each cell's
files are read and checked once (:mod:`aslhpc.orchestration.cellrecord`: a damaged file is a DAMAGED
row with the file and what is wrong, a path leaving the experiment directory damages only that cell) and
its state derived once (:func:`aslhpc.orchestration.cellstate.derive_state`), as status does. Accounting
(sacct) is one query for every job of the matrix, and only when asked for.
"""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from aslhpc.analysis import efficiency, extras, matrix, paired
from aslhpc.errors import AslhpcError
from aslhpc.orchestration.backend import backend_for
from aslhpc.orchestration.cellrecord import CellRecord, load_cells
from aslhpc.orchestration.cellstate import derive_state, one_line
from aslhpc.orchestration.manifest import MANIFEST, Manifest, load_manifest
from aslhpc.schema.files import FileProblem, read_text_file
from aslhpc.states import CellState

Runner = Callable[[list[str]], subprocess.CompletedProcess]


@dataclass(frozen=True)
class Snapshot:
    """An experiment as collect sees it: the matrix frame (one row per cell, holes included, with the
    per-cell extras), each completed cell's checked result.json, its per-image test predictions, and
    what each finished cell asked for and used."""

    exp_dir: Path
    cells: pd.DataFrame
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    predictions: dict[str, pd.DataFrame] = field(default_factory=dict)
    usage: pd.DataFrame = field(default_factory=lambda: efficiency.efficiency_frame([]))
    #: submit --until-conclusive's rounds, as verdicts.json lists them (empty without rounds)
    rounds: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.exp_dir.name


def load_snapshot(exp_dir: str | Path, states: Mapping[str, tuple[str, str]] | None = None, *,
                  allow_mixed_splits: bool = False, accounting: bool = True, run: Runner | None = None,
                  now: float | None = None) -> Snapshot:
    """Read the experiment in ``exp_dir`` once. ``states``: status's (state, reason) per cell for the holes
    (see :func:`load_matrix`); ``accounting``: ask sacct for the finished jobs' CPU time (one call)."""
    exp_dir = Path(exp_dir)
    manifest, records = _read(exp_dir)
    cells = _matrix(exp_dir, manifest, records, states, allow_mixed_splits, now)
    placed = set(cells["cell_id"])
    done = {cid: rec for cid, rec in records.items()
            if rec.result is not None and not rec.damaged and cid in placed}
    results = {cid: rec.result for cid, rec in done.items() if rec.result is not None}
    cells = extras.attach_extras(cells, results)
    predictions = {cid: f for cid, rec in done.items()
                   if (f := _predictions(rec.paths.root / paired.PREDICTIONS_FILE)) is not None}
    usage = usage_frame(manifest, results, use_sacct=accounting, run=run)
    rounds = [r.record() for r in manifest.rounds.rounds] if manifest and manifest.rounds else []
    return Snapshot(exp_dir, cells, results, predictions, usage, rounds)


def load_matrix(exp_dir: str | Path, states: Mapping[str, tuple[str, str]] | None = None, *,
                allow_mixed_splits: bool = False, now: float | None = None) -> pd.DataFrame:
    """The matrix frame alone: one row per cell (completed or hole), columns :data:`matrix.BASE_COLUMNS`
    plus ``gpu<i>_gb``/``gpu<i>_proc_gb``. ``states`` maps cell_id -> (state, reason) as
    :func:`aslhpc.orchestration.cellstate.experiment_status` resolved them (files first, then SLURM); a
    cell without a usable result.json takes that state, lower-cased. Completed cells trained on
    different splits of one kind are refused unless ``allow_mixed_splits``."""
    exp_dir = Path(exp_dir)
    manifest, records = _read(exp_dir)
    return _matrix(exp_dir, manifest, records, states, allow_mixed_splits, now)


def find_experiments(results: str | Path) -> list[str]:
    """Experiment names under ``results`` (directories holding a manifest.json), sorted."""
    root = Path(results)
    if not root.is_dir():
        return []
    return sorted(d.name for d in root.iterdir() if d.is_dir() and (d / MANIFEST).is_file())


# --------------------------------------------------------------------------- the matrix


def _read(exp_dir: Path) -> tuple[Manifest | None, dict[str, CellRecord]]:
    if not exp_dir.is_dir():
        raise AslhpcError(f"experiment directory {exp_dir} does not exist; check --results/--experiment")
    manifest = load_manifest(exp_dir / MANIFEST)  # its errors are one line (ConfigError)
    records = load_cells(exp_dir, manifest)
    if not records:
        raise AslhpcError(f"no cells in {exp_dir} (no manifest cells, no cells/*/); "
                          "submit the experiment first")
    return manifest, records


def _matrix(exp_dir: Path, manifest: Manifest | None, records: Mapping[str, CellRecord],
            states: Mapping[str, tuple[str, str]] | None, allow_mixed_splits: bool,
            now: float | None) -> pd.DataFrame:
    now = time.time() if now is None else now
    states = states or {}
    rows = [_cell_row(rec, states.get(cid), now) for cid, rec in records.items()]
    spec = manifest.spec if manifest else {}
    return matrix.assemble_matrix(rows, manifest.experiment if manifest else exp_dir.name, spec,
                                  _axis_splits(spec), exp_dir, allow_mixed_splits=allow_mixed_splits)


def _identity(rec: CellRecord) -> dict[str, Any]:
    """What the manifest entry says the cell is (the authority), else what its config.json says."""
    cfg = rec.config or {}
    pairs = [("pipeline", "pipeline"), ("split_kind", "split"), ("seed", "seed")]
    entry = rec.entry
    if entry is None:
        pairs += [("gpus", "gpus"), ("batch_size", "batch_size"), ("strategy", "strategy")]
    ident: dict[str, Any] = {col: cfg[key] for col, key in pairs if cfg.get(key) is not None}
    if entry is not None:
        ident.update(gpus=entry.gpus, batch_size=entry.batch_size, repeat=entry.repeat,
                     strategy=entry.strategy, seed=entry.seed)
    return ident


def _cell_row(rec: CellRecord, given: tuple[str, str] | None, now: float) -> dict[str, Any]:
    """One frame row: the result's figures, or a hole with state and reason.

    ``given`` is status's (state, reason) for the cell, which already weighed SLURM; it is taken
    as it is unless the files make the cell completed or damaged."""
    state, reason = derive_state(rec, now=now)
    if rec.result is not None and not rec.damaged:
        row = matrix.row_from_result(rec.result)  # a run whose ranks diverged keeps its figures in cells.csv
        ident = _identity(rec)  # the manifest is authoritative where the result lacks a value
        row.update({k: ident[k] for k in ("gpus", "batch_size", "strategy")
                    if k in ident and matrix.missing(row.get(k))})
        if "repeat" in ident:
            row["repeat"] = ident["repeat"]
        row.setdefault("repeat", math.nan)
    else:
        if given is not None and not rec.damaged:
            given_state, given_reason = given
            if given_state == CellState.COMPLETED:  # only a readable result.json makes a cell completed
                given_state, given_reason = CellState.INCOMPLETE, (
                    f"status says COMPLETED but there is no usable result.json ({given_reason})")
            state, reason = given_state, given_reason or reason
        row = _identity(rec)
    row.update(state=str(state), reason=one_line(reason), cell_id=rec.cell_id,
               in_manifest=rec.entry is not None, source="aslhpc")
    return row


def _axis_splits(spec: Mapping[str, Any]) -> dict[str, str]:
    """cell id -> split kind of an experiment with a splits axis (from the manifest's spec); {} without one
    or when the spec cannot be rebuilt (the cells' own files then tell)."""
    if not spec.get("splits"):
        return {}
    from aslhpc.errors import ConfigError
    from aslhpc.orchestration.experiment import ExperimentSpec

    try:
        return {c.cell_id: c.split for c in ExperimentSpec.from_dict(dict(spec)).cells()}
    except (ConfigError, TypeError, ValueError):
        return {}


def _predictions(path: Path) -> pd.DataFrame | None:
    """One cell's test_predictions.csv, read with the size cap; None when absent or unreadable."""
    try:
        text = read_text_file(path, paired.PREDICTIONS_CAP)
    except FileProblem:
        return None
    return paired.parse_predictions(text) if text else None


# --------------------------------------------------------------------------- what each cell used


def sacct_usage(job_ids: Iterable[str], run: Runner | None = None) -> dict[str, tuple]:
    """job id -> (TotalCPU s, Elapsed s, MaxRSS GB) from one sacct call (CPU time from the allocation row,
    the sum of its steps; MaxRSS the largest step's); {} where accounting does not answer."""
    from aslhpc.slurm.accounting import query_ids, run_slurm_command

    ids = [j for j in job_ids if j]
    if not ids:
        return {}
    cmd = ["sacct", "--parsable2", "-n", "-o", "JobID,TotalCPU,Elapsed,MaxRSS", "--jobs",
           ",".join(query_ids(ids))]
    try:
        proc = (run or run_slurm_command)(cmd)
    except (OSError, subprocess.SubprocessError):
        return {}
    return efficiency.parse_sacct_usage(proc.stdout) if proc.returncode == 0 else {}


def usage_frame(manifest: Manifest | None, results: Mapping[str, Mapping[str, Any]], *,
                use_sacct: bool = True, run: Runner | None = None) -> pd.DataFrame:
    """The efficiency frame of every completed cell: its job's request (rebuilt from the manifest's
    spec) against what its result.json measured, with sacct's CPU time where accounting answers."""
    from aslhpc.orchestration.experiment import ExperimentSpec, job_request, parse_mem_mb

    if manifest is None or not results:
        return efficiency.efficiency_frame([])
    try:
        spec = ExperimentSpec.from_dict(manifest.spec)
    except Exception:  # noqa: BLE001 - a spec this version cannot rebuild: no requests to compare with
        return efficiency.efficiency_frame([])
    cells = {c.cell_id: c for c in spec.cells()}
    slurm_ids = {cid: e.last.job_id for cid, e in manifest.cells.items()
                 if cid in results and e.last and backend_for(e.last.cluster).queued}
    acct = sacct_usage(slurm_ids.values(), run) if use_sacct and slurm_ids else {}
    usages = []
    for cid, res in results.items():
        if cid not in cells:
            continue
        try:
            req = job_request(spec, cells[cid])
        except Exception:  # noqa: BLE001 - a cell the spec cannot lay out: nothing to compare with
            continue
        cores = req.cpus_per_task * req.tasks_per_node * req.nodes
        mem_gb = parse_mem_mb(req.mem) * req.nodes / 1024
        usages.append(efficiency.usage_from_result(cid, cores, mem_gb, req.gpus, res,
                                                   acct.get(slurm_ids.get(cid, ""))))
    return efficiency.efficiency_frame(usages)


def experiment_efficiency(exp_dir: str | Path, *, use_sacct: bool = True,
                          run: Runner | None = None) -> pd.DataFrame:
    """The efficiency frame of the experiment in ``exp_dir`` (what status's "used" block prints)."""
    exp_dir = Path(exp_dir)
    manifest = load_manifest(exp_dir / MANIFEST)
    if manifest is None:
        return efficiency.efficiency_frame([])
    records = load_cells(exp_dir, manifest)
    results = {cid: rec.result for cid, rec in records.items()
               if rec.result is not None and not rec.damaged}
    return usage_frame(manifest, results, use_sacct=use_sacct, run=run)
