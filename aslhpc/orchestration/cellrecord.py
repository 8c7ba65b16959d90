"""One cell's files, read once and checked once: the record both ``status`` and ``collect`` start from.

:func:`load_cell` reads ``result.json``, ``error.json``, ``progress.json``, ``epochs.jsonl`` and
``config.json`` (names in :mod:`aslhpc.cellfiles`, schemas in :mod:`aslhpc.schema.results`) into a
:class:`CellRecord`. Every file is read only if it is a regular file of sane size
(:func:`aslhpc.schema.read_text_file`), parsed with a depth limit, and every figure range-checked,
so a damaged, planted or hostile file becomes ``CellRecord.damaged`` ("<file>: <what is wrong>")
instead of a traceback or a hang that takes the whole experiment's status down. A result counts only
when it is complete and matches its cell (:func:`result_problem`). Free text is cleaned at read time
(:func:`aslhpc.schema.clean_text`). Nothing is unpickled, and manifest paths that leave the
experiment directory are refused (results directories are shared on purpose).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from aslhpc.cellfiles import CellPaths
from aslhpc.orchestration.manifest import Attempt, CellEntry, Manifest
from aslhpc.schema import (
    EPOCHS_CAP,
    JSON_CAP,
    FileProblem,
    clean_text,
    clean_tree,
    parse_json,
    read_text_file,
)
from aslhpc.schema.adapter import JSON_TYPES, json_kind, problem_lines
from aslhpc.schema.results import (
    RESULT_REQUIRED,
    ConfigFile,
    ErrorFile,
    ProgressFile,
    ResultFile,
)
from aslhpc.schema.results import (
    EpochLine as EpochSchema,
)
from aslhpc.training.config import NOT_IDENTITY, PER_CELL, TrainConfig

#: the longest error line a record keeps (status shows one line of it)
ERROR_LIMIT = 500
# result.json fields shown as text by status/collect: one clean short line each
_SHOWN = ("status", "experiment", "cell_id", "host", "device", "strategy", "pipeline", "amp")
# TrainConfig fields a result must agree on with its manifest's [train] table: what it computes (identity),
# less what differs per cell (the matrix's, the seed: seed + repeat, the split: an axis may set it)
_SPEC_KEYS = tuple(f.name for f in fields(TrainConfig)
                   if f.name not in NOT_IDENTITY | set(PER_CELL) | {"seed", "split"})


class Damaged(ValueError):
    """A cell file (or its manifest entry) does not have the shape the trainer/submit write."""

    def __init__(self, file: str, problem: str) -> None:
        super().__init__(f"{file}: {problem}")


def _problem(exc: ValidationError) -> str:
    return problem_lines(exc, JSON_TYPES, json_kind)[0]


# --------------------------------------------------------------------------- the record


@dataclass(frozen=True)
class ErrorInfo:
    """error.json: the trainer's one-line error and when it was written ('' when it has no time)."""

    error: str
    time: str


@dataclass(frozen=True)
class Progress:
    """progress.json: where a running cell is."""

    epoch: int | None
    epochs: int | None
    phase: str


@dataclass(frozen=True)
class EpochLine:
    """One line of epochs.jsonl."""

    epoch: int
    val_acc: float | None
    images_per_s: float | None
    epoch_s: float | None


@dataclass
class CellRecord:
    """Everything a cell's directory (and its manifest entry) says, checked; ``damaged`` names what is not."""

    cell_id: str
    paths: CellPaths
    entry: CellEntry | None = None
    result: dict[str, Any] | None = None  # checked against aslhpc.schema.results.ResultFile; text cleaned
    error: ErrorInfo | None = None
    progress: Progress | None = None
    epochs: list[EpochLine] = field(default_factory=list)
    config: dict[str, Any] | None = None  # result.json's config, else config.json; checked
    touched: float | None = None  # newest mtime of progress.json / epochs.jsonl (None: neither exists)
    exists: bool = False  # the cell directory exists
    damaged: str = ""  # "<file>: <what is wrong>"; the other fields then hold what was read before it
    log: Path | None = None  # submitit's stderr log of the last attempt (inside the experiment dir)

    @property
    def last(self) -> Attempt | None:
        return self.entry.last if self.entry else None

    @property
    def ranks_diverged(self) -> bool:
        """DDP ranks that ended with different weights (result.json ``ranks.in_sync`` false)."""
        return self.result is not None and (self.result.get("ranks") or {}).get("in_sync") is False

    @property
    def restarts(self) -> int:
        """How often SLURM requeued the job that wrote result.json (0 without a result)."""
        res = self.result or {}
        slurm = res.get("slurm") or (res.get("provenance") or {}).get("slurm") or {}
        return int(slurm.get("restarts") or 0)


def inside(exp_dir: Path, rel: str, what: str) -> Path:
    """``exp_dir / rel``, refused when it leads out of the experiment dir (``..``, absolute elsewhere).

    Checked on the path as written, not through symlinks: a site may link ``cells/`` to scratch."""
    base = Path(os.path.normpath(os.path.abspath(exp_dir)))
    path = Path(os.path.normpath(base / rel))
    if path != base and base not in path.parents:
        raise Damaged("manifest.json", f"{what} {rel!r} leaves the experiment directory {exp_dir}; "
                      "restore the manifest (submit writes paths inside it)")
    return exp_dir / rel


# --------------------------------------------------------------------------- reading and checking


def _read_json(path: Path, model: type[BaseModel]) -> dict[str, Any] | None:
    """The file's object, checked against ``model``, strings cleaned; None when there is no file."""
    try:
        text = read_text_file(path, JSON_CAP)
        if text is None:
            return None
        data = parse_json(text)
    except FileProblem as exc:
        raise Damaged(path.name, str(exc)) from None
    try:
        model.model_validate(data)
    except ValidationError as exc:
        raise Damaged(path.name, _problem(exc)) from None
    return clean_tree(data)


def _read_epochs(path: Path) -> list[EpochLine]:
    """epochs.jsonl; a torn last line (a crash while appending) is ignored, any other bad line is damage."""
    try:
        text = read_text_file(path, EPOCHS_CAP)
    except FileProblem as exc:
        raise Damaged(path.name, str(exc)) from None
    lines = [ln for ln in (text or "").splitlines() if ln.strip()]
    out = []
    for n, line in enumerate(lines, 1):
        try:
            data = parse_json(line)
        except FileProblem as exc:
            if n == len(lines) and "deep" not in str(exc):
                break
            reason = "is not valid JSON" if "deep" not in str(exc) else f"is {exc}"
            raise Damaged(path.name, f"line {n} {reason}") from None
        try:
            epoch = EpochSchema.model_validate(data)
        except ValidationError as exc:
            raise Damaged(path.name, f"line {n}: {_problem(exc)}") from None
        out.append(EpochLine(epoch.epoch, epoch.val_acc, epoch.images_per_s, epoch.epoch_s))
    return out


def spec_expectations(spec: Mapping[str, Any] | None) -> dict[str, Any]:
    """What every result of an experiment must agree on: its manifest's ``[train]`` values that decide what a
    cell computes (those the manifest records; an older one records fewer)."""
    train = (spec or {}).get("train")
    return {k: train[k] for k in _SPEC_KEYS if k in train} if isinstance(train, dict) else {}


#: the config keys that name a cell (the manifest entry's): every result must carry them
CELL_KEYS = ("gpus", "batch_size", "strategy", "seed")


def _cell_expectations(rec: CellRecord, spec: Mapping[str, Any]) -> dict[str, Any]:
    expect = dict(spec)
    if rec.entry is not None:
        e = rec.entry
        expect.update(gpus=e.gpus, batch_size=e.batch_size, strategy=e.strategy, seed=e.seed)
    if "-blocked-" in f"-{rec.cell_id}-":
        expect["split"] = "blocked"
    return expect


def result_problem(result: Mapping[str, Any], rec: CellRecord, spec: Mapping[str, Any] | None = None) -> str:
    """Why a checked result.json is not this cell's complete result ('' when it is).

    Complete: every :data:`~aslhpc.schema.results.RESULT_REQUIRED` field is there (a ``{}`` or a forged
    minimal file is not a result). Its cell's: the cell id is the cell's, the config agrees with the
    manifest's entry (GPUs, batch size, strategy, seed) and with ``spec`` (:func:`spec_expectations`),
    and the split recorded agrees with the config's and is the one submit made of the data (the
    entry's ``split_hash``, when recorded): one forged or stale split is one DAMAGED cell, not a
    matrix that collect refuses as trained on mixed splits."""
    missing = [k for k in RESULT_REQUIRED if result.get(k) is None]
    if missing:
        return (f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing; not a complete result "
                "(the trainer writes every one); remove the file, then submit --retry-failed")
    if result["status"] != "completed":
        return f"status is {result['status']!r:.40}, not 'completed'"
    if result["cell_id"] != rec.cell_id:
        return (f"cell_id is {result['cell_id']!r}, not this cell's {rec.cell_id!r}: another cell's result; "
                "remove the file, then submit --retry-failed")
    config = result["config"]
    for key, want in _cell_expectations(rec, spec or {}).items():
        if config.get(key) is None:
            if key in CELL_KEYS:  # what makes it this cell's: a config without it is no one's result
                return (f"config.{key} is missing; not a complete result (the trainer writes every one); "
                        "remove the file, then submit --retry-failed")
            continue  # a key newer than the file (an older aslhpc wrote it)
        if config[key] != want:
            return (f"config.{key} is {config[key]!r:.40}, but the experiment's cell has {want!r:.40}: "
                    "another run's result; remove the file, then submit --retry-failed")
    split = result.get("split") or {}
    for key, cfg_key in (("kind", "split"), ("seed", "split_seed")):
        if split.get(key) is not None and config.get(cfg_key) is not None and split[key] != config[cfg_key]:
            return f"split.{key} is {split[key]!r:.40}, but config.{cfg_key} is {config[cfg_key]!r:.40}"
    want = rec.entry.split_hash if rec.entry is not None else ""
    if want and split.get("hash") != want:
        return (f"split.hash {str(split.get('hash'))[:12]!r} is not the split submit made of the data for "
                f"this cell ({want[:12]!r}): the data changed after submit, or the file is not this cell's; "
                "submit --retry-failed re-runs it")
    return ""


def _clean_result(result: dict[str, Any]) -> dict[str, Any]:
    """Short one-line text where status/collect show it (the rest is cleaned by clean_tree)."""
    for key in _SHOWN:
        if isinstance(result.get(key), str):
            result[key] = clean_text(result[key])
    for block, key in (("telemetry", "reason"), ("slurm", "nodelist"), ("provenance", "hostname")):
        if isinstance(result.get(block), dict) and isinstance(result[block].get(key), str):
            result[block][key] = clean_text(result[block][key])
    return result


def _fill(rec: CellRecord, spec: Mapping[str, Any] | None) -> None:
    """Read the files into ``rec``; a damaged result.json raises, other damage is recorded.

    A checked result.json is the cell's outcome, so damage in the files a running cell leaves
    (error/progress/epochs/config) does not hide it; without a result, the first damage counts."""
    paths = rec.paths
    rec.exists = paths.root.is_dir()
    result = _read_json(paths.result, ResultFile)
    if result is not None:
        problem = result_problem(result, rec, spec)
        if problem:
            raise Damaged(paths.result.name, problem)
        result = _clean_result(result)
    rec.result = result
    problems: list[str] = []

    def read(reader: Callable[[], Any]) -> Any:
        try:
            return reader()
        except Damaged as exc:
            problems.append(str(exc))
            return None

    for error_file in paths.error_files():  # error.json, else the first rank's error.rank<r>.json
        err = read(lambda f=error_file: _read_json(f, ErrorFile))
        if err is not None:
            rec.error = ErrorInfo(clean_text(err.get("error") or "", ERROR_LIMIT),
                                  clean_text(err.get("time") or ""))
            break
    prog = read(lambda: _read_json(paths.progress, ProgressFile))
    if prog is not None:
        rec.progress = Progress(prog.get("epoch"), prog.get("epochs"),
                                clean_text(prog.get("phase") or "training"))
    rec.epochs = read(lambda: _read_epochs(paths.epochs)) or []
    rec.config = (result or {}).get("config") or read(lambda: _read_json(paths.config, ConfigFile))
    times = [p.stat().st_mtime for p in (paths.progress, paths.epochs) if p.exists()]
    rec.touched = max(times) if times else None
    if problems and result is None:
        rec.damaged = problems[0]


def load_cell(exp_dir: Path, cell_id: str, entry: CellEntry | None = None,
              spec: Mapping[str, Any] | None = None) -> CellRecord:
    """Read one cell's files once; a damaged file (or manifest path) is recorded, never raised.

    ``spec`` is the manifest's spec (``Manifest.spec``): a result must agree with its ``[train]`` table."""
    rec = CellRecord(clean_text(cell_id), CellPaths(exp_dir / "cells" / cell_id), entry)
    try:
        if entry is not None:
            rec.paths = CellPaths(inside(exp_dir, entry.out_dir, "out_dir"))
            if entry.last is not None:
                folder = inside(exp_dir, entry.last.folder, "folder")
                rec.log = folder / f"{entry.last.job_id}_0_log.err"
        _fill(rec, spec_expectations(spec))
    except Damaged as exc:
        rec.damaged = str(exc)
    except OSError as exc:  # an unreadable cell folder (chmod 000): this cell only
        reason = exc.strerror or type(exc).__name__
        rec.damaged = f"{rec.paths.root.name}/: unreadable ({reason}); fix its permissions"
    return rec


def load_cells(exp_dir: Path, manifest: Manifest | None) -> dict[str, CellRecord]:
    """Every cell of the manifest, then any other directory under ``cells/`` (a run outside submit)."""
    spec = manifest.spec if manifest else None
    out = {cid: load_cell(exp_dir, cid, entry, spec)
           for cid, entry in (manifest.cells if manifest else {}).items()}
    cells_root = exp_dir / "cells"
    try:
        found = sorted(d for d in cells_root.iterdir() if d.is_dir()) if cells_root.is_dir() else []
    except OSError:  # cells/ unreadable: the manifest's cells are each DAMAGED already
        found = []
    for d in found:
        if d.name not in out and not d.name.startswith("."):
            rec = load_cell(exp_dir, d.name, spec=spec)
            if clean_text(d.name) != d.name:
                rec.damaged = f"{rec.cell_id}: a cell folder name aslhpc never writes (control characters)"
            out[rec.cell_id] = rec
    return out
