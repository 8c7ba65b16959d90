"""Retries that learn (``submit --retry-failed``): what the next attempt of a failed cell asks for.

A cell that ran OUT_OF_MEMORY is resubmitted with twice its last attempt's memory, one that hit its time
limit (TIMEOUT: it could not requeue) with twice its time, each capped at what the partition allows (its
nodes' memory, its MaxTime) so that sbatch never refuses the retry. Each attempt's request is recorded in
the manifest (:attr:`~aslhpc.orchestration.manifest.Attempt.request`, with ``retry_of``: the state the
retry answered), which is how the next retry knows what was tried. A cell that failed the same way twice
with the same request, and would be asked to run that very request again, is not retried blindly: the
line says why and which flag changes the request.

Pure functions of the cell's history and the partition's limits: :func:`plan_retry` decides, submit acts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aslhpc.errors import ConfigError
from aslhpc.orchestration.experiment import parse_mem_mb, parse_time_min
from aslhpc.orchestration.manifest import Attempt
from aslhpc.slurm.cluster import ClusterInfo
from aslhpc.slurm.request import JobRequest
from aslhpc.states import CellState

OUT_OF_MEMORY, TIMEOUT = CellState.OUT_OF_MEMORY, CellState.TIMEOUT
#: the failures a bigger request can cure, and the flag that sets that request by hand
LEARNS = {OUT_OF_MEMORY: "--mem", TIMEOUT: "--time"}


@dataclass(frozen=True)
class Caps:
    """What one job may ask for on the partition: memory per node (MB) and time (minutes); 0 = unknown."""

    partition: str = ""
    mem_mb: int = 0
    time_min: int = 0


def partition_caps(info: ClusterInfo, partition: str, gpu_type: str = "") -> Caps:
    """The partition's limits from scontrol: its nodes' largest memory and its MaxTime (UNLIMITED: 0)."""
    try:
        time_min = parse_time_min(info.max_time.get(partition, ""))
    except ConfigError:  # UNLIMITED, or not reported
        time_min = 0
    return Caps(partition, info.max_memory_mb(partition, gpu_type), time_min)


def request_record(req: JobRequest, retry_of: str = "") -> dict[str, str | int]:
    """The manifest's record of what a job asked for (``retry_of``: the state its retry answered)."""
    record: dict[str, str | int] = {"mem": req.mem, "time_min": req.time_min, "gpus": req.gpus,
                                    "cpus": req.cpus_per_task * req.tasks_per_node * req.nodes}
    if retry_of:
        record["retry_of"] = retry_of
    return record


@dataclass(frozen=True)
class RetryPlan:
    """The next attempt's request (``mem``/``time_min``: '' / 0 = the experiment's own) and why."""

    mem: str = ""
    time_min: int = 0
    note: str = ""  # what changed, for the cell's line
    refused: str = ""  # set: do not retry; the line says why and how to override


def plan_retry(state: str, attempts: Sequence[Attempt], base: JobRequest, caps: Caps) -> RetryPlan:
    """How to retry a cell whose last attempt ended ``state``, given its attempts (oldest first)."""
    if state not in LEARNS:
        return RetryPlan()
    last = attempts[-1].request if attempts else {}
    if state == OUT_OF_MEMORY:
        plan = _more_memory(last, base, caps)
    else:
        plan = _more_time(last, base, caps)
    if _failed_twice_alike(state, attempts) and _same(plan, last, base):
        what = _shown(last, base)
        return RetryPlan(refused=f"{state} twice with the same request ({what}): not retried again; "
                                 f"raise {LEARNS[state]} past it{_cap_hint(state, caps)} to retry it")
    return plan


def _more_memory(last: dict, base: JobRequest, caps: Caps) -> RetryPlan:
    before = _mb(last.get("mem"), base.mem)
    want = max(_mb(base.mem, base.mem), 2 * before)
    note = f"memory {_mem_text(before)} -> {_mem_text(want)}"
    if caps.mem_mb and want >= caps.mem_mb:
        want = caps.mem_mb
        note = (f"memory {_mem_text(before)} -> {_mem_text(want)}, the most a node of partition "
                f"{caps.partition!r} has: at the cap")
    return RetryPlan(mem=_mem_text(want), note=note)


def _more_time(last: dict, base: JobRequest, caps: Caps) -> RetryPlan:
    before = int(last.get("time_min") or base.time_min)
    want = max(base.time_min, 2 * before)
    note = f"time limit {before} -> {want} min"
    if caps.time_min and want >= caps.time_min:
        want = caps.time_min
        note = f"time limit {before} -> {want} min, partition {caps.partition!r}'s MaxTime: at the cap"
    return RetryPlan(time_min=want, note=note)


def _failed_twice_alike(state: str, attempts: Sequence[Attempt]) -> bool:
    """The last two attempts both ended ``state`` (the last one's record says what it retried) with the same
    memory and time."""
    if len(attempts) < 2:
        return False
    last, before = attempts[-1].request, attempts[-2].request
    return bool(last and before) and last.get("retry_of") == state and _key(last) == _key(before)


def _same(plan: RetryPlan, last: dict, base: JobRequest) -> bool:
    """Whether ``plan`` would ask for exactly what the last attempt asked for."""
    mem = plan.mem or base.mem
    time_min = plan.time_min or base.time_min
    return (_mb(mem, base.mem), time_min) == _key(last)


def _key(request: dict) -> tuple[int, int]:
    return _mb(request.get("mem"), "0"), int(request.get("time_min") or 0)


def _shown(last: dict, base: JobRequest) -> str:
    return f"mem {last.get('mem') or base.mem}, time {last.get('time_min') or base.time_min} min"


def _cap_hint(state: str, caps: Caps) -> str:
    if state == OUT_OF_MEMORY and caps.mem_mb:
        return (f" (partition {caps.partition!r}'s nodes have {_mem_text(caps.mem_mb)}: else make the cell "
                "smaller, e.g. --batch-sizes, or use another --partition)")
    if state == TIMEOUT and caps.time_min:
        return (f" (partition {caps.partition!r} allows {caps.time_min} min: else fewer --epochs, or "
                "another --partition)")
    return ""


def _mb(mem: object, default: str) -> int:
    try:
        return parse_mem_mb(str(mem or default))
    except ConfigError:
        return 0


def _mem_text(mb: int) -> str:
    """MB as sbatch --mem writes it: whole gigabytes as ``G``, else ``M``."""
    return f"{mb // 1024}G" if mb % 1024 == 0 else f"{mb}M"
