"""Which cells go into one SLURM job array, and how long submit waits out the site's submit limits.

Cells whose jobs ask for exactly the same thing (the :class:`~aslhpc.slurm.request.JobRequest` less
its name: nodes, tasks, gres, CPUs, memory, time, site options, setup lines) can be one job array:
one sbatch instead of one per cell, one line per array in ``squeue`` until its tasks start, and a
throttle (``%N``) so a sweep does not take a shared reservation at once. The 2020 matrix is four
arrays, one per GPU count. An array holds at most :meth:`SubmitLimits.chunk` cells (the site's
``MaxArraySize`` and the association's ``MaxSubmitJobs`` where visible); a group of one cell is a
plain job.

A site that refuses sbatch for a submit limit (``AssocMaxSubmitJobLimit``, ...) is waited out with
:class:`Patience`: bounded, with backoff, saying what it waits for.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from aslhpc.slurm.request import JobRequest

T = TypeVar("T")

#: sbatch's words when a submit limit (not the request) is the problem: waiting helps
SUBMIT_LIMIT_WORDS = ("MaxSubmitJobs", "AssocMaxSubmitJobLimit", "QOSMaxSubmitJobPerUserLimit",
                      "QOSMaxSubmitJobPerAccountLimit", "AssocGrpSubmitJobsLimit", "job submit limit",
                      "MaxSubmitJobsPerUser")
#: default --array-parallelism: tasks of one array running at once (a shared reservation keeps room)
DEFAULT_PARALLELISM = 4
#: default --submit-timeout: seconds submit waits in all for submit limits to let it queue more
DEFAULT_SUBMIT_TIMEOUT_S = 1800.0


def _sleep(seconds: float) -> None:
    """Patience's default sleep (a module function, so a test can replace it alone)."""
    time.sleep(seconds)


def shape_key(req: JobRequest) -> JobRequest:
    """What makes two cells' jobs the same job: the request without its (per-cell) name."""
    return replace(req, name="")


def group_cells(items: Sequence[tuple[T, JobRequest]], chunk: int = 0,
                arrays: bool = True) -> list[list[tuple[T, JobRequest]]]:
    """``items`` (anything, with its request) grouped by job shape in first-seen order, each group cut into
    pieces of at most ``chunk`` (0 = no limit). ``arrays=False``: every item alone."""
    if not arrays:
        return [[it] for it in items]
    by_shape: dict[JobRequest, list[tuple[T, JobRequest]]] = {}
    for it in items:
        by_shape.setdefault(shape_key(it[1]), []).append(it)
    out = []
    for group in by_shape.values():
        size = chunk if chunk > 0 else len(group)
        out += [group[i:i + size] for i in range(0, len(group), size)]
    return out


def is_submit_limit(message: str) -> bool:
    """Did sbatch refuse because of how many jobs this user (account, QOS) may have queued?"""
    low = message.lower()
    return any(w.lower() in low for w in SUBMIT_LIMIT_WORDS)


@dataclass
class Patience:
    """How long submit still waits for submit limits, in all: ``timeout_s`` from the first wait, sleeping
    ``first_s``, doubled after every refusal up to ``max_s``."""

    timeout_s: float = DEFAULT_SUBMIT_TIMEOUT_S
    first_s: float = 5.0
    max_s: float = 60.0
    sleep: Callable[[float], None] | None = None  # None: :func:`_sleep` (looked up at each wait)
    clock: Callable[[], float] = time.monotonic
    waited_s: float = 0.0
    _next_s: float = field(default=0.0, repr=False)

    def wait(self, what: str, out: Callable[[str], None]) -> bool:
        """Sleep before the next try, saying ``what`` it waits for; False when the budget is spent."""
        left = self.timeout_s - self.waited_s
        if left <= 0:
            return False
        step = min(self._next_s or self.first_s, self.max_s, left)
        out(f"waiting: {what}; trying again in {step:.0f} s ({left:.0f} s of --submit-timeout left)")
        t0 = self.clock()
        (self.sleep or _sleep)(step)
        self.waited_s += max(self.clock() - t0, step)
        self._next_s = min(step * 2, self.max_s)
        return True
