"""What a plan hands a backend, and the crash-safe record of carrying it out.

A :class:`CellAction` is the plan's decision for one cell (:func:`~aslhpc.orchestration.submission.
plan_cells`); a backend (:mod:`aslhpc.orchestration.backend`) submits the ones that submit. Both backends
write a cell's intent before they start its job and its attempt right after, through one
:class:`Ledger`, which says exactly what was and was not submitted when the manifest cannot be written.
:func:`crash_point` is the tests' kill hook between those steps. This module sits below the backends and
submission, so both share it without an import cycle.
"""

from __future__ import annotations

import os
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from aslhpc.errors import CRASH_ENV, AslhpcError
from aslhpc.orchestration.arrays import DEFAULT_SUBMIT_TIMEOUT_S
from aslhpc.orchestration.experiment import Cell, ExperimentSpec, job_request
from aslhpc.orchestration.manifest import Manifest
from aslhpc.slurm.cell_job import CellJob
from aslhpc.slurm.request import JobRequest

Out = Callable[[str], None]
#: test hook: ``after-intent`` | ``after-sbatch`` | ``after-record``, optionally ``:N`` (the N-th
#: cell, default the first): submit dies there with os._exit(CRASH_EXIT), as a SIGKILL would.
#: Used by tests only (tests/test_submit_crash.py, tests/e2e/test_crash_safety.py, tests/e2e/test_local.py).
CRASH_EXIT = 99
_crash_counts: Counter[str] = Counter()


@dataclass(frozen=True)
class RoundPolicy:
    """``submit --until-conclusive``'s limits: at most ``max_rounds`` rounds, and none that would take the
    GPU-hours spent past ``budget_gpu_hours`` (None: no budget)."""

    max_rounds: int = 3
    budget_gpu_hours: float | None = None


@dataclass(frozen=True)
class SubmitOptions:
    cluster: str = "auto"  # auto | slurm | local
    dry_run: bool = False
    retry_failed: bool = False
    max_parallel: int = 2  # local mode only
    python: str | None = None  # interpreter the jobs run (default: this one)
    arrays: bool = True  # cells of one job shape in one job array (False: --no-array, one job per cell)
    array_parallelism: int | None = None  # tasks of an array at once (None: [cluster] array_parallelism)
    submit_timeout_s: float = DEFAULT_SUBMIT_TIMEOUT_S  # waiting out submit limits, in all
    collect: bool = False  # add the dependent job that runs collect after the cells (submit --collect)
    until: RoundPolicy | None = None  # --until-conclusive: record rounds (aslhpc.rounds)
    chain: bool = False  # with until on SLURM: the dependent job decides and submits the next round


@dataclass
class CellAction:
    """What the plan decided for one cell; the backend that submits it fills in ``job_id``."""

    cell: Cell
    action: str  # submit | retry | skip
    reason: str = ""
    job_id: str = ""
    # a retry that learnt (aslhpc.orchestration.retry): the request it makes instead of the experiment's
    mem: str = ""  # '' = cluster.mem
    time_min: int = 0  # 0 = cluster.time
    retry_of: str = ""  # the state it retries, recorded with its request

    @property
    def submits(self) -> bool:
        return self.action in ("submit", "retry")


def action_request(spec: ExperimentSpec, action: CellAction) -> JobRequest:
    """What the action's job asks for: the cell's request, with a learning retry's memory and time."""
    req = job_request(spec, action.cell)
    return replace(req, mem=action.mem or req.mem, time_min=action.time_min or req.time_min)


def cell_job(spec: ExperimentSpec, cell: Cell) -> CellJob:
    """The submitit callable a cell's job runs (its full config, so the job needs no spec file)."""
    return CellJob(spec.train_config(cell).to_dict(), spec.name, cell.cell_id)


def crash_point(step: str) -> None:
    """Die here, as a SIGKILL would, when :data:`CRASH_ENV` names this step (tests of crash safety only)."""
    want = os.environ.get(CRASH_ENV, "")
    name, _, nth = want.partition(":")
    if not want or name != step:
        return
    _crash_counts[step] += 1
    if _crash_counts[step] == int(nth or 1):
        os._exit(CRASH_EXIT)


def new_token() -> str:
    """A submission's unique tag (random: two submits, hosts or users never share one)."""
    return secrets.token_hex(8)


@dataclass
class Ledger:
    """What this submit has done so far, to say exactly that when the manifest cannot be written."""

    path: Path
    cells: list[str]  # every cell this submit means to submit, in order
    recorded: list[tuple[str, str]] = field(default_factory=list)  # (cell_id, job_id)

    def save(self, manifest: Manifest, cell_id: str = "", job_id: str = "") -> None:
        """Save; on a write error raise one line saying what was and was not submitted."""
        self.save_many(manifest, [(cell_id, job_id)] if job_id else [], cell_id)

    def save_many(self, manifest: Manifest, jobs: list[tuple[str, str]], cell_id: str = "") -> None:
        """Save ``jobs`` (cell, job id) recorded in ``manifest`` at once (a job array's tasks)."""
        try:
            manifest.save(self.path)
        except OSError as exc:
            cells = ", ".join(c for c, _ in jobs) or cell_id
            ids = ", ".join(j for _, j in jobs)
            raise self.error(exc, cells, ids) from exc
        self.recorded += jobs

    @property
    def progress(self) -> str:
        return f"{len(self.recorded)} of {len(self.cells)} cell(s) submitted so far"

    def error(self, exc: OSError, cell_id: str, job_id: str = "") -> AslhpcError:
        """``cell_id``: the cell (or ', '-joined cells of an array) in flight; ``job_id`` its job(s)."""
        where = exc.filename or self.path
        parts = []
        if self.recorded:
            parts.append("submitted and recorded: " + ", ".join(f"{c} (job {j})" for c, j in self.recorded))
        if job_id == "?":
            parts.append(f"perhaps submitted: {cell_id} (SLURM did not answer; the next submit adopts its "
                         "job if there is one)")
        elif job_id:
            parts.append(f"submitted but not recorded: {cell_id} (job {job_id}; the next submit finds it "
                         "by its tag and adopts it)")
        done = {c for c, _ in self.recorded} | (set(cell_id.split(", ")) if job_id else set())
        rest = [c for c in self.cells if c not in done]
        if rest:
            parts.append("not submitted: " + ", ".join(rest))
        if not self.recorded and not job_id:
            parts.insert(0, "nothing was submitted")
        return AslhpcError(f"cannot write {where} ({exc.strerror or exc}): {'; '.join(parts)}; "
                           "free space and run submit again")
