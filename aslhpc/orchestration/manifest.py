"""The per-experiment manifest ``results/<experiment>/manifest.json`` (schema in docs/design.md).

It is the only thing status and collect need to find an experiment's jobs: every cell, where
its files are, and every SLURM (or local) job ever submitted for it, the last one being live.

Crash safety: before each sbatch (or local start) submit records an :class:`Intent` for the cell
(a ``submitting`` state with a unique token, which the job also carries in its ``--comment``),
and right after it the :class:`Attempt` with the job id. A crash in between leaves the intent,
from which the next submit (or status) finds the job in SLURM and adopts it
(:func:`aslhpc.orchestration.submission.reconcile`). Both fields are optional: a manifest with
no submission in flight is written exactly as schema 1 always was, and old manifests load as they are.

Job arrays (submit groups cells of one job shape into one array): an attempt then also records
``array_id`` and ``task_id`` (its ``job_id`` is ``<array_id>_<task_id>``, as SLURM names the task),
and the intents of an array's cells share one token (the array's ``--comment`` tag) with each
cell's ``task`` index. ``collect`` (optional, top level) is the dependent job of ``submit
--collect``: an attempt that is no cell. All of these are left out when empty.

:func:`load_manifest` checks the file's shape once, so a damaged manifest is one
:class:`ConfigError` naming the file and the bad field, never a traceback further on.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aslhpc.atomic import atomic_write_json, read_json
from aslhpc.cellfiles import experiment_dir
from aslhpc.errors import ConfigError
from aslhpc.orchestration.experiment import Cell, ExperimentSpec

MANIFEST = "manifest.json"
SCHEMA = 1
CLUSTER_KINDS = ("slurm", "local")


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def manifest_path(results: str | Path, experiment: str) -> Path:
    return experiment_dir(results, experiment) / MANIFEST


@dataclass
class Attempt:
    """One submission of a cell. ``folder`` is submitit's job folder, relative to the experiment dir.

    ``token`` is the submission's tag (also in the job's ``--comment``); '' in manifests written
    before tags existed."""

    job_id: str
    cluster: str  # "slurm" | "local"
    submitted_at: str
    folder: str
    token: str = ""
    array_id: str = ""  # the SLURM job array this cell ran in ('' for a job of its own)
    task_id: int | None = None  # its task in that array: job_id is ``<array_id>_<task_id>``


@dataclass
class Intent:
    """A submission begun but not yet recorded: written before sbatch, replaced by an Attempt after.

    Found in a manifest, it means the submit that wrote it died (or could not write) in between:
    a job tagged ``token`` may or may not exist, and must be looked for before submitting again."""

    token: str
    cluster: str  # "slurm" | "local"
    since: str  # when the intent was written (sacct --starttime for the search)
    state: str = "submitting"
    #: the cell's task in a job array submitted under ``token`` (the cells sharing a token are that array's
    #: cell list, in task order); None: a job of its own
    task: int | None = None


@dataclass
class CellEntry:
    cell_id: str
    gpus: int
    batch_size: int
    repeat: int
    seed: int
    strategy: str
    out_dir: str  # relative to the experiment dir
    attempts: list[Attempt] = field(default_factory=list)
    intent: Intent | None = None  # a submission in flight (see Intent)

    @property
    def last(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @classmethod
    def from_cell(cls, cell: Cell) -> CellEntry:
        return cls(cell.cell_id, cell.gpus, cell.batch_size, cell.repeat, cell.seed, cell.strategy,
                   f"cells/{cell.cell_id}")


@dataclass
class Manifest:
    experiment: str
    spec: dict[str, Any]
    created_at: str
    updated_at: str
    cells: dict[str, CellEntry] = field(default_factory=dict)
    schema: int = SCHEMA
    collect: Attempt | None = None  # the dependent job that runs collect after the cells (submit --collect)

    @classmethod
    def new(cls, spec: ExperimentSpec) -> Manifest:
        t = now_iso()
        return cls(spec.name, spec.to_dict(), t, t)

    def ensure_cells(self, cells: list[Cell]) -> None:
        """Add cells the manifest does not know yet (a grown matrix); existing entries keep their history."""
        for cell in cells:
            self.cells.setdefault(cell.cell_id, CellEntry.from_cell(cell))

    def record(self, cell_id: str, attempt: Attempt) -> None:
        """Append ``attempt``; it settles the cell's intent (if any), in the same write."""
        entry = self.cells[cell_id]
        entry.attempts.append(attempt)
        entry.intent = None

    def pending(self) -> dict[str, Intent]:
        """Cells with a submission in flight (or interrupted): cell id -> intent."""
        return {cid: e.intent for cid, e in self.cells.items() if e.intent is not None}

    def to_dict(self) -> dict[str, Any]:
        """As JSON; the optional fields are left out when empty, so such a file is plain schema 1."""
        data = asdict(self)
        for cell in data["cells"].values():
            if cell.get("intent") is None:
                cell.pop("intent", None)
            elif cell["intent"].get("task") is None:
                cell["intent"].pop("task", None)
            for a in cell["attempts"]:
                for key in ("token", "array_id", "task_id"):
                    if a.get(key) in ("", None):
                        a.pop(key, None)
        if self.collect is None:
            data.pop("collect", None)
        return data

    @classmethod
    def from_dict(cls, data: Any, source: str = "manifest") -> Manifest:
        """Build from parsed JSON, checking every field; ConfigError names ``source`` and the bad field."""
        return _parse(data, source)

    def save(self, path: str | Path) -> None:
        self.updated_at = now_iso()
        atomic_write_json(path, self.to_dict())


# --------------------------------------------------------------------------- schema check


class _Bad(Exception):
    """A field of the manifest that is not what schema 1 says (caught and reworded by _parse)."""


def _field(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str,
           default: Any = ...) -> Any:
    if key not in obj:
        if default is ...:
            raise _Bad(f"{where}{key} is missing")
        return default
    value = obj[key]
    ints = kind is int or (isinstance(kind, tuple) and int in kind)
    if not isinstance(value, kind) or (isinstance(value, bool) and ints):
        want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise _Bad(f"{where}{key} is {type(value).__name__} {value!r:.40}, expected {want}")
    return value


def _relative(value: str, where: str) -> str:
    """A path meant to lie inside the experiment directory. One that leaves it (``..``, absolute) damages
    that cell alone: :func:`aslhpc.orchestration.cellrecord.inside` refuses it wherever a path is used,
    and status/collect show the cell DAMAGED while the rest of the matrix is still read."""
    if not value:
        raise _Bad(f"{where} is empty")
    return value


def _cluster(obj: dict[str, Any], where: str) -> str:
    value = _field(obj, "cluster", str, where)
    if value not in CLUSTER_KINDS:
        raise _Bad(f"{where}cluster is {value!r}, expected one of {', '.join(CLUSTER_KINDS)}")
    return value


def _attempt(a: Any, where: str) -> Attempt:
    if not isinstance(a, dict):
        raise _Bad(f"{where[:-1]} is {type(a).__name__}, expected an object")
    task = _field(a, "task_id", (int, type(None)), where, None)
    return Attempt(_field(a, "job_id", str, where), _cluster(a, where), _field(a, "submitted_at", str, where),
                   _relative(_field(a, "folder", str, where), f"{where}folder"),
                   _field(a, "token", str, where, ""), _field(a, "array_id", str, where, ""), task)


def _intent(i: Any, where: str) -> Intent | None:
    if i is None:
        return None
    if not isinstance(i, dict):
        raise _Bad(f"{where[:-1]} is {type(i).__name__}, expected an object or null")
    return Intent(_field(i, "token", str, where), _cluster(i, where), _field(i, "since", str, where),
                  _field(i, "state", str, where, "submitting"),
                  _field(i, "task", (int, type(None)), where, None))


def _cell(cid: str, c: Any) -> CellEntry:
    where = f"cells.{cid}."
    if not isinstance(c, dict):
        raise _Bad(f"cells.{cid} is {type(c).__name__}, expected an object")
    if _field(c, "cell_id", str, where) != cid:
        raise _Bad(f"{where}cell_id is {c['cell_id']!r}, not its key {cid!r}")
    attempts = _field(c, "attempts", list, where, [])
    return CellEntry(
        cid, _field(c, "gpus", int, where), _field(c, "batch_size", int, where),
        _field(c, "repeat", int, where), _field(c, "seed", int, where), _field(c, "strategy", str, where),
        _relative(_field(c, "out_dir", str, where), f"{where}out_dir"),
        [_attempt(a, f"{where}attempts[{i}].") for i, a in enumerate(attempts)],
        _intent(c.get("intent"), f"{where}intent."))


def _parse(data: Any, source: str) -> Manifest:
    try:
        if not isinstance(data, dict):
            raise _Bad(f"it holds a JSON {type(data).__name__}, not an object")
        if data.get("schema") != SCHEMA:
            raise ConfigError(f"{source}: manifest schema {data.get('schema')!r} is not {SCHEMA}; use the "
                              "aslhpc version that wrote it or another --results directory")
        cells = {cid: _cell(cid, c) for cid, c in _field(data, "cells", dict, "", {}).items()}
        collect = data.get("collect")
        return Manifest(_field(data, "experiment", str, ""), _field(data, "spec", dict, "", {}),
                        _field(data, "created_at", str, ""), _field(data, "updated_at", str, ""),
                        cells, SCHEMA, None if collect is None else _attempt(collect, "collect."))
    except _Bad as exc:
        raise ConfigError(f"{source} is not a valid aslhpc manifest: {exc}; restore it (or move it away) "
                          "or use another --results") from None


def load_manifest(path: str | Path) -> Manifest | None:
    """The manifest at ``path``, or None when there is none yet; a damaged one is a ConfigError naming it."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        data = read_json(path)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{path} is not a valid aslhpc manifest ({reason}); restore it (or move it away) "
                          "or use another --results") from None
    return Manifest.from_dict(data, str(path))


def find_manifests(results: str | Path) -> list[Path]:
    """Every ``<results>/<experiment>/manifest.json``, most recently modified first."""
    root = Path(results)
    if not root.is_dir():
        return []
    found = [p for p in root.glob(f"*/{MANIFEST}") if p.is_file()]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)
