"""The per-experiment manifest ``results/<experiment>/manifest.json`` (schema in docs/design.md).

It is the only thing status and collect need to find an experiment's jobs: every cell, where
its files are, and every SLURM (or local) job ever submitted for it, the last one being live.
Submit rewrites it atomically after each successful sbatch, so a crash mid-submit loses nothing.
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


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def manifest_path(results: str | Path, experiment: str) -> Path:
    return experiment_dir(results, experiment) / MANIFEST


@dataclass
class Attempt:
    """One submission of a cell. ``folder`` is submitit's job folder, relative to the experiment dir."""

    job_id: str
    cluster: str  # "slurm" | "local"
    submitted_at: str
    folder: str


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

    @classmethod
    def new(cls, spec: ExperimentSpec) -> Manifest:
        t = now_iso()
        return cls(spec.name, spec.to_dict(), t, t)

    def ensure_cells(self, cells: list[Cell]) -> None:
        """Add cells the manifest does not know yet (a grown matrix); existing entries keep their history."""
        for cell in cells:
            self.cells.setdefault(cell.cell_id, CellEntry.from_cell(cell))

    def record(self, cell_id: str, attempt: Attempt) -> None:
        self.cells[cell_id].attempts.append(attempt)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        if data.get("schema") != SCHEMA:
            raise ConfigError(f"manifest schema {data.get('schema')!r} is not {SCHEMA}; "
                              "use the aslhpc version that wrote it or another --results directory")
        cells = {}
        for cid, c in data.get("cells", {}).items():
            attempts = [Attempt(**a) for a in c.get("attempts", [])]
            cells[cid] = CellEntry(**{**c, "attempts": attempts})
        return cls(data["experiment"], data.get("spec", {}), data["created_at"], data["updated_at"], cells, SCHEMA)

    def save(self, path: str | Path) -> None:
        self.updated_at = now_iso()
        atomic_write_json(path, self.to_dict())


def load_manifest(path: str | Path) -> Manifest | None:
    """The manifest at ``path``, or None when there is none yet."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return Manifest.from_dict(read_json(path))
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a valid aslhpc manifest ({exc}); restore it or use another --results") from exc


def find_manifests(results: str | Path) -> list[Path]:
    """Every ``<results>/<experiment>/manifest.json``, most recently modified first."""
    root = Path(results)
    if not root.is_dir():
        return []
    found = [p for p in root.glob(f"*/{MANIFEST}") if p.is_file()]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)
