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
import functools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, Strict, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from aslhpc.atomic import atomic_write_json
from aslhpc.cellfiles import experiment_dir
from aslhpc.errors import ConfigError
from aslhpc.orchestration.experiment import Cell, ExperimentSpec, spec_problems
from aslhpc.schema import FileProblem, clean_text, parse_json, read_text_file
from aslhpc.schema.adapter import problem_lines

MANIFEST = "manifest.json"
SCHEMA = 1
CLUSTER_KINDS = ("slurm", "local")


def _printable(value: str) -> str:
    """Manifest text is what submit wrote: never a control character (an ESC would reach the terminal)."""
    if not value.isprintable():
        raise PydanticCustomError("control_characters",
                                  "holds control characters ({shown}); submit never writes them",
                                  {"shown": clean_text(repr(value), 40)})
    return value


# The manifest's types, as pydantic checks them at load (the dataclasses below stay plain to construct):
# strict (no "1" for 1, no true for 1), text printable and bounded, ids safe names.
Text = Annotated[str, Strict(), Field(max_length=4096), AfterValidator(_printable)]
Path_ = Annotated[str, Strict(), Field(min_length=1, max_length=4096), AfterValidator(_printable)]
CellId = Annotated[str, Strict(), Field(max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
Int = Annotated[int, Strict()]
Bool = Annotated[bool, Strict()]
Float = Annotated[float, Field(allow_inf_nan=False)]
Cluster = Literal["slurm", "local"]
Scalar = Annotated[str, Strict(), Field(max_length=200), AfterValidator(_printable)] | \
    Annotated[int, Strict()] | Annotated[float, Strict(), Field(allow_inf_nan=False)]
_LOOSE = ConfigDict(extra="ignore")  # a newer writer's keys are ignored, never an error
_REQUIRED: Any = object()


def _doc(help: str, default: Any = _REQUIRED) -> Any:
    """A manifest field with its documentation (docs/result-files.md); ``{}`` / ``[]`` defaults are fresh."""
    if default is _REQUIRED:
        return field(metadata={"help": help})
    if isinstance(default, dict | list):
        return field(default_factory=type(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def manifest_path(results: str | Path, experiment: str) -> Path:
    return experiment_dir(results, experiment) / MANIFEST


@dataclass
class Attempt:
    """One submission of a cell. ``folder`` is submitit's job folder, relative to the experiment dir.

    ``token`` is the submission's tag (also in the job's ``--comment``); '' in manifests written
    before tags existed. ``request`` is what the job asked for (e.g. ``{"mem": "16G", "time_min": 120,
    "gpus": 2, "cpus": 8}``, as the backend records it); empty, and then left out, in older manifests."""

    __pydantic_config__ = _LOOSE

    job_id: Text = _doc("SLURM job id (``<array_id>_<task_id>`` for an array task), or the local pid")
    cluster: Cluster = _doc("slurm | local")
    submitted_at: Text = _doc("ISO-8601 UTC")
    folder: Path_ = _doc("submitit's job folder, relative to the experiment directory")
    token: Text = _doc("the submission's tag, also in the job's --comment ('' before tags existed)", "")
    array_id: Text = _doc("the SLURM job array this cell ran in ('' for a job of its own)", "")
    task_id: Int | None = _doc("its task in that array", None)
    request: dict[Annotated[str, Strict(), Field(max_length=64)], Scalar] = _doc(
        "what the job asked for, e.g. {mem, time_min, gpus, cpus} (left out when empty)", {})


@dataclass
class Intent:
    """A submission begun but not yet recorded: written before sbatch, replaced by an Attempt after.

    Found in a manifest, it means the submit that wrote it died (or could not write) in between:
    a job tagged ``token`` may or may not exist, and must be looked for before submitting again."""

    __pydantic_config__ = _LOOSE

    token: Text = _doc("the tag the job carries in its --comment")
    cluster: Cluster = _doc("slurm | local")
    since: Text = _doc("when the intent was written (sacct --starttime for the search)")
    state: Text = _doc("submitting", "submitting")
    #: the cell's task in a job array submitted under ``token`` (the cells sharing a token are that array's
    #: cell list, in task order); None: a job of its own
    task: Int | None = _doc("the cell's task in the job array submitted under token (left out: a job of its "
                            "own)", None)


@dataclass
class CellEntry:
    __pydantic_config__ = _LOOSE

    cell_id: CellId = _doc("the cell's id, the same as its key")
    gpus: Int = _doc("GPUs of the cell")
    batch_size: Int = _doc("global batch size")
    repeat: Int = _doc("repeat index")
    seed: Int = _doc("train.seed + repeat")
    strategy: Text = _doc("dp | ddp")
    out_dir: Path_ = _doc("the cell's folder, relative to the experiment directory")
    attempts: list[Attempt] = _doc("every job submitted for the cell, the last one live", [])
    intent: Intent | None = _doc("a submission in flight (left out when none)", None)
    split_hash: Text = _doc("the split.hash submit made of the data for the cell's last submission: its "
                            "result must carry it (left out when not recorded)", "")

    @property
    def last(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @classmethod
    def from_cell(cls, cell: Cell) -> CellEntry:
        return cls(cell.cell_id, cell.gpus, cell.batch_size, cell.repeat, cell.seed, cell.strategy,
                   f"cells/{cell.cell_id}")


@dataclass
class Round:
    """One round of ``submit --until-conclusive``: the cells it added, then (once its cells ended and the
    verdicts were read) what was still open and what it cost; the last round also says why it stopped."""

    __pydantic_config__ = _LOOSE

    round: Int = _doc("1, 2, ...")
    started_at: Text = _doc("ISO-8601 UTC: when the round was planned")
    cells: list[CellId] = _doc("the cells this round added (round 1: the matrix as submitted)", [])
    decided: Bool = _doc("whether the verdicts after this round have been read", False)
    open: list[Text] = _doc("hypotheses still open after it that more runs could settle", [])
    gpu_hours: Float | None = _doc("GPU-hours its cells spent (exec time x GPUs, completed cells)", None)
    outcome: Text = _doc("on the round the study stopped after: why ('' while it goes on)", "")

    def record(self) -> dict[str, Any]:
        """The round as verdicts.json lists it (``cells_added``: the cells it added)."""
        return {"round": self.round, "started_at": self.started_at, "cells_added": list(self.cells),
                "decided": self.decided, "open": list(self.open), "gpu_hours": self.gpu_hours,
                "outcome": self.outcome}


@dataclass
class Rounds:
    """``submit --until-conclusive``: its limits and every round so far."""

    __pydantic_config__ = _LOOSE

    max_rounds: Int = _doc("at most this many rounds (--max-rounds)")
    budget_gpu_hours: Float | None = _doc("stop before a round would pass this (--budget-gpu-hours)", None)
    rounds: list[Round] = _doc("the rounds, first to last", [])

    @property
    def spent(self) -> float:
        """GPU-hours of the rounds decided so far."""
        return sum(r.gpu_hours or 0.0 for r in self.rounds)


@dataclass
class Manifest:
    __pydantic_config__ = _LOOSE

    experiment: CellId = _doc("the experiment's name")
    spec: dict[str, Any] = _doc("the experiment as submitted (ExperimentSpec.to_dict()), checked as a whole")
    created_at: Text = _doc("ISO-8601 UTC")
    updated_at: Text = _doc("ISO-8601 UTC")
    cells: dict[CellId, CellEntry] = _doc("cell id -> its entry", {})
    schema: Int = _doc("1", SCHEMA)
    collect: Attempt | None = _doc("the dependent collect job of submit --collect (left out when none)", None)
    rounds: Rounds | None = _doc("submit --until-conclusive: limits and rounds (left out when none)", None)

    @classmethod
    def new(cls, spec: ExperimentSpec) -> Manifest:
        t = now_iso()
        return cls(spec.name, spec.to_dict(), t, t)

    def ensure_cells(self, cells: list[Cell]) -> None:
        """Add cells the manifest does not know yet (a grown matrix); existing entries keep their history."""
        for cell in cells:
            self.cells.setdefault(cell.cell_id, CellEntry.from_cell(cell))

    def start_rounds(self, cells: list[str], max_rounds: int, budget_gpu_hours: float | None) -> None:
        """``submit --until-conclusive``: round 1 (``cells``, the matrix as submitted) the first time; later
        calls only take the new limits."""
        if self.rounds is None:
            self.rounds = Rounds(max_rounds, budget_gpu_hours, [Round(1, now_iso(), list(cells))])
        else:
            self.rounds.max_rounds, self.rounds.budget_gpu_hours = max_rounds, budget_gpu_hours

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
            if not cell.get("split_hash"):
                cell.pop("split_hash", None)
            if cell.get("intent") is None:
                cell.pop("intent", None)
            elif cell["intent"].get("task") is None:
                cell["intent"].pop("task", None)
            for a in cell["attempts"]:
                _drop_empty(a)
        if self.collect is None:
            data.pop("collect", None)
        else:
            _drop_empty(data["collect"])
        if self.rounds is None:
            data.pop("rounds", None)
        return data

    @classmethod
    def from_dict(cls, data: Any, source: str = "manifest") -> Manifest:
        """Build from parsed JSON, checking every field; ConfigError names ``source`` and the bad field."""
        return _parse(data, source)

    def save(self, path: str | Path) -> None:
        self.updated_at = now_iso()
        atomic_write_json(path, self.to_dict())


def _drop_empty(attempt: dict[str, Any]) -> None:
    for key in ("token", "array_id", "task_id", "request"):
        if attempt.get(key) in ("", None, {}):
            attempt.pop(key, None)


# --------------------------------------------------------------------------- schema check


@functools.cache
def _adapter() -> TypeAdapter[Manifest]:
    return TypeAdapter(Manifest)


def _invalid(source: str, problem: str) -> ConfigError:
    return ConfigError(f"{source} is not a valid aslhpc manifest: {problem}; restore it (or move it away) or "
                       "use another --results")


def _parse(data: Any, source: str) -> Manifest:
    """The manifest in ``data``, every field checked by the dataclasses' types (pydantic) and the spec by
    :func:`~aslhpc.orchestration.experiment.spec_problems`; the first problem is one ConfigError line."""
    if not isinstance(data, dict):
        raise _invalid(source, f"it holds a JSON {type(data).__name__}, not an object")
    if data.get("schema") != SCHEMA:
        raise ConfigError(f"{source}: manifest schema {clean_text(repr(data.get('schema')), 40)} is not "
                          f"{SCHEMA}; use the aslhpc version that wrote it or another --results directory")
    try:
        manifest = _adapter().validate_python(data)
    except ValidationError as exc:
        raise _invalid(source, problem_lines(exc)[0]) from None
    for cid, entry in manifest.cells.items():
        if entry.cell_id != cid:
            raise _invalid(source, f"cells.{cid}.cell_id is {entry.cell_id!r}, not its key {cid!r}")
    problems = spec_problems(manifest.spec)
    if problems:
        raise _invalid(source, problems[0])
    return manifest


def load_manifest(path: str | Path) -> Manifest | None:
    """The manifest at ``path``, or None when there is none yet; a damaged one is a ConfigError naming it.

    Read as a cell file is (a regular file, at most 16 MiB, nesting depth-limited), so a FIFO, a link to
    /dev/zero or JSON 2,000 deep is one error line, not a hang or a traceback."""
    path = Path(path)
    try:
        text = read_text_file(path)
        if text is None:
            return None
        data = parse_json(text)
    except FileProblem as exc:
        raise ConfigError(f"{path} is not a valid aslhpc manifest ({exc}); restore it (or move it away) "
                          "or use another --results") from None
    return Manifest.from_dict(data, str(path))


def find_manifests(results: str | Path) -> list[Path]:
    """Every ``<results>/<experiment>/manifest.json``, most recently modified first."""
    root = Path(results)
    if not root.is_dir():
        return []
    found = [p for p in root.glob(f"*/{MANIFEST}") if p.is_file()]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)
