"""One cell's files, read once and checked once: the record both ``status`` and ``collect`` start from.

:func:`load_cell` reads ``result.json``, ``error.json``, ``progress.json``, ``epochs.jsonl`` and
``config.json`` (names in :mod:`aslhpc.cellfiles`) into a :class:`CellRecord`. Every value the
readers use is type-checked here, so nothing downstream needs ``isinstance`` guards, and a
damaged file becomes ``CellRecord.damaged`` ("<file>: <what is wrong>") instead of a traceback
that takes the whole experiment's status down. Nothing is unpickled, and manifest paths that
leave the experiment directory are refused (results directories are shared on purpose).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aslhpc.cellfiles import CellPaths
from aslhpc.orchestration.manifest import Attempt, CellEntry, Manifest


class Damaged(ValueError):
    """A cell file (or its manifest entry) does not have the shape the trainer/submit write."""

    def __init__(self, file: str, problem: str) -> None:
        super().__init__(f"{file}: {problem}")


# --------------------------------------------------------------------------- schema
# Types of the values readers use; any key may be absent or null (older or newer writers).
# "int" excludes bool; "num" is int or float; "scalar" is any JSON scalar.

_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,), "num": (int, float), "str": (str,), "bool": (bool,), "dict": (dict,), "list": (list,),
    "scalar": (str, int, float, bool),
}
_NUMS = dict.fromkeys(("train_acc", "val_acc", "test_acc", "train_loss", "val_loss", "test_loss",
                       "exec_time_s", "data_prep_s", "images_per_s"), "num")
_GPU = {"mem_peak_gb": "num", "proc_mem_peak_gb": "num", "mem_total_gb": "num"}
RESULT_FIELDS: dict[str, Any] = {
    "status": "str", "experiment": "str", "cell_id": "str", "epochs": "int", "best_epoch": "int",
    "gpus_requested": "int", "gpus_used": "int", "world_size": "int", "device": "str",
    "device_names": ["str"], "data_parallel": "bool", "strategy": "str", "pipeline": "str", "amp": "str",
    "host": "str", "started_at": "str", "attempt_started_at": "str", "finished_at": "str", **_NUMS,
    "config": {"gpus": "int", "batch_size": "int", "epochs": "int", "seed": "int", "max_steps": "int",
               "pipeline": "str", "split": "str", "strategy": "str"},
    "split": {"kind": "str", "seed": "int", "hash": "str", "train": "int", "val": "int", "test": "int"},
    "batches": {"train": "int", "val": "int", "test": "int"},
    "extra_test": {"acc": "num", "n": "int"},
    "ranks": {"in_sync": "bool"},
    "telemetry": {"nvml": "bool", "reason": "str", "data_device_gb": "num", "gpus": [_GPU],
                  "torch": [{"max_reserved_gb": "num"}]},
    "versions": dict.fromkeys(("python", "torch", "cuda", "cudnn", "aslhpc"), "scalar"),
    "slurm": {"job_id": "scalar", "partition": "str", "nodelist": "str", "restarts": "int"},
    "provenance": {**dict.fromkeys(("hostname", "driver_version", "python", "torch", "cuda", "cudnn"),
                                   "scalar"),
                   "gpu_models": ["str"],
                   "slurm": {"job_id": "scalar", "partition": "str", "nodelist": "str", "restarts": "int"}},
}
CONFIG_FIELDS = RESULT_FIELDS["config"]
PROGRESS_FIELDS = {"epoch": "int", "epochs": "int", "batch": "int", "batches": "int", "phase": "str"}
EPOCH_FIELDS = {"epoch": "int", "val_acc": "num", "images_per_s": "num", "epoch_s": "num"}
ERROR_FIELDS = {"error": "scalar", "time": "str"}


def _kind(value: Any) -> str:
    return "null" if value is None else {"dict": "an object", "list": "a list"}.get(
        type(value).__name__, f"{type(value).__name__} {json.dumps(value)[:40]}")


def check(value: Any, schema: Any, where: str = "") -> None:
    """Raise ``ValueError("<where> is <what>, expected <type>")`` where ``value`` does not fit ``schema``.

    ``schema`` is a type name (see :data:`_TYPES`), a dict of key -> schema (an object; keys
    optional, null allowed) or a one-element list (a list of such items)."""
    if value is None and where:
        return
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            raise ValueError(f"{where or 'the file'} is {_kind(value)}, expected an object")
        for key, sub in schema.items():
            check(value.get(key), sub, f"{where}.{key}" if where else key)
        return
    if isinstance(schema, list):
        if not isinstance(value, list):
            raise ValueError(f"{where} is {_kind(value)}, expected a list")
        for i, item in enumerate(value):
            check(item, schema[0], f"{where}[{i}]")
        return
    bad_bool = isinstance(value, bool) and schema not in ("bool", "scalar")
    if bad_bool or not isinstance(value, _TYPES[schema]):
        raise ValueError(f"{where} is {_kind(value)}, expected {schema}")


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
    result: dict[str, Any] | None = None  # checked against RESULT_FIELDS
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


def _read_json(path: Path, schema: dict[str, Any]) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise Damaged(path.name, f"unreadable ({type(exc).__name__}: {exc})") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        what = "empty" if not text.strip() else f"not valid JSON ({exc})"
        raise Damaged(path.name, f"{what}; the write was cut short or the file was edited") from None
    try:
        check(data, schema)
    except ValueError as exc:
        raise Damaged(path.name, str(exc)) from None
    return data


def _read_epochs(path: Path) -> list[EpochLine]:
    """epochs.jsonl; a torn last line (a crash while appending) is ignored, any other bad line is damage."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise Damaged(path.name, f"unreadable ({type(exc).__name__}: {exc})") from None
    lines = [ln for ln in lines if ln.strip()]
    out = []
    for n, line in enumerate(lines, 1):
        try:
            data = json.loads(line)
        except ValueError:
            if n == len(lines):
                break
            raise Damaged(path.name, f"line {n} is not valid JSON") from None
        try:
            check(data, EPOCH_FIELDS)
            if data.get("epoch") is None:
                raise ValueError("'epoch' is missing")
        except ValueError as exc:
            raise Damaged(path.name, f"line {n}: {exc}") from None
        out.append(EpochLine(data["epoch"], data.get("val_acc"), data.get("images_per_s"),
                             data.get("epoch_s")))
    return out


def _fill(rec: CellRecord) -> None:
    """Read the files into ``rec``; a damaged result.json raises, other damage is recorded.

    A checked result.json is the cell's outcome, so damage in the files a running cell leaves
    (error/progress/epochs/config) does not hide it; without a result, the first damage counts."""
    paths = rec.paths
    rec.exists = paths.root.is_dir()
    result = _read_json(paths.result, RESULT_FIELDS)
    if result is not None and result.get("status", "completed") != "completed":
        raise Damaged(paths.result.name, f"status is {result.get('status')!r}, not 'completed'")
    rec.result = result
    problems: list[str] = []

    def read(reader: Callable[[], Any]) -> Any:
        try:
            return reader()
        except Damaged as exc:
            problems.append(str(exc))
            return None

    for error_file in paths.error_files():  # error.json, else the first rank's error.rank<r>.json
        err = read(lambda f=error_file: _read_json(f, ERROR_FIELDS))
        if err is not None:
            rec.error = ErrorInfo(str(err.get("error") or "").strip(), err.get("time") or "")
            break
    prog = read(lambda: _read_json(paths.progress, PROGRESS_FIELDS))
    if prog is not None:
        rec.progress = Progress(prog.get("epoch"), prog.get("epochs"), prog.get("phase") or "training")
    rec.epochs = read(lambda: _read_epochs(paths.epochs)) or []
    rec.config = (result or {}).get("config") or read(lambda: _read_json(paths.config, CONFIG_FIELDS))
    times = [p.stat().st_mtime for p in (paths.progress, paths.epochs) if p.exists()]
    rec.touched = max(times) if times else None
    if problems and result is None:
        rec.damaged = problems[0]


def load_cell(exp_dir: Path, cell_id: str, entry: CellEntry | None = None) -> CellRecord:
    """Read one cell's files once; a damaged file (or manifest path) is recorded, never raised."""
    rec = CellRecord(cell_id, CellPaths(exp_dir / "cells" / cell_id), entry)
    try:
        if entry is not None:
            rec.paths = CellPaths(inside(exp_dir, entry.out_dir, "out_dir"))
            if entry.last is not None:
                folder = inside(exp_dir, entry.last.folder, "folder")
                rec.log = folder / f"{entry.last.job_id}_0_log.err"
        _fill(rec)
    except Damaged as exc:
        rec.damaged = str(exc)
    return rec


def load_cells(exp_dir: Path, manifest: Manifest | None) -> dict[str, CellRecord]:
    """Every cell of the manifest, then any other directory under ``cells/`` (a run outside submit)."""
    out = {cid: load_cell(exp_dir, cid, entry) for cid, entry in (manifest.cells if manifest else {}).items()}
    cells_root = exp_dir / "cells"
    if cells_root.is_dir():
        for d in sorted(cells_root.iterdir()):
            if d.is_dir() and d.name not in out and not d.name.startswith("."):
                out[d.name] = load_cell(exp_dir, d.name)
    return out
