"""A cell's place in a DDP job, and the few collectives the trainer needs.

Rank facts come from one place: ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` / ``MASTER_*``, which
:func:`aslhpc.slurm.cell_job.export_dist_env` exports from submitit's ``JobEnvironment`` inside a
SLURM job (torchrun sets the same outside one). The process group is joined only after device
planning, so a rank that fell back to the CPU joins with gloo, not NCCL.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import platform
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as torch_dist
from torch import nn

from aslhpc.errors import AslhpcError
from aslhpc.training.config import TrainConfig
from aslhpc.training.devices import DevicePlan, process_group_backend
from aslhpc.training.modelio import model_state, unwrap


@dataclass(frozen=True)
class Dist:
    """This process's place in a DDP job; ``world == 1`` means no process group."""

    rank: int = 0
    world: int = 1
    local_rank: int | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            torch_dist.all_reduce(t, op=torch_dist.ReduceOp.SUM)
        return t

    def barrier(self) -> None:
        if self.world > 1:
            torch_dist.barrier()


def dist_from_env(cfg: TrainConfig, env: Mapping[str, str] | None = None) -> Dist:
    """Rank, world size and local rank of this process (no process group is joined here)."""
    env = os.environ if env is None else env
    if cfg.strategy != "ddp":
        return Dist()
    if "WORLD_SIZE" not in env and cfg.gpus > 1:
        raise AslhpcError(f"--strategy ddp with {cfg.gpus} GPUs needs one process per GPU; run it under "
                          f"torchrun --nproc-per-node {cfg.gpus} or srun (submit does this), "
                          "or use --strategy dp")
    world = int(env.get("WORLD_SIZE", "1"))
    rank = int(env.get("RANK", "0"))
    return Dist(rank, world, int(env.get("LOCAL_RANK", str(rank))))


def join_process_group(dist: Dist, plan: DevicePlan) -> str | None:
    """Join the job's process group with the backend this rank's device needs; returns it (None: no group)."""
    if dist.world == 1:
        return None
    backend = process_group_backend(plan)
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend=backend, timeout=dt.timedelta(minutes=10))
    return backend


def leave_process_group(dist: Dist) -> None:
    """Leave the group without the teardown deadlock of gloo (seen 1 run in ~12 on torch 2.7.1, CPU DDP).

    A gloo worker thread frees a finished collective's tensors just after the op completes, and needs the
    GIL for that when Python has already dropped them; the group itself is freed later, by the DDP
    model's Reducer, in a destructor that joins those threads while holding the GIL (pytorch#56297,
    #154976). A short sleep releases the GIL with every collective already waited on, so the workers
    finish their frees first; it costs 0.2 s once per cell."""
    if dist.world > 1 and torch_dist.is_initialized():
        time.sleep(0.2)
        torch_dist.destroy_process_group()


def sync_buffers(model: nn.Module, dist: Dist) -> None:
    """BatchNorm running stats drift apart per rank; make every rank use rank 0's before evaluating."""
    if dist.world > 1:
        for buf in unwrap(model).buffers():
            torch_dist.broadcast(buf, src=0)


def merge_rank_telemetry(mine: dict[str, Any], dist: Dist) -> dict[str, Any]:
    """Rank 0's summary with every rank's GPUs in global-rank order (GPU i of the tables = rank i's GPU)."""
    if dist.world == 1:
        return mine
    summaries: list[Any] = [None] * dist.world
    torch_dist.all_gather_object(summaries, {**mine, "node": platform.node(), "rank": dist.rank})
    merged = dict(summaries[0])
    merged["gpus"] = [{**g, "index": i, "rank": s["rank"], "node": s["node"]}
                      for i, (s, g) in enumerate((s, g) for s in summaries for g in s.get("gpus", []))]
    merged["torch"] = [t for s in summaries for t in s.get("torch", [])]
    merged["ranks"] = [{"rank": s["rank"], "node": s["node"], "nvml": s.get("nvml"), "cpu": s.get("cpu"),
                        "csv": s.get("csv"), "attempts": s.get("attempts"),
                        "data_device_gb": s.get("data_device_gb")} for s in summaries]
    # Each rank holds its own copy of the data on its GPU: the cell's total is the sum, not rank 0's.
    per_rank = [s.get("data_device_gb") for s in summaries]
    if all(isinstance(v, int | float) for v in per_rank):
        merged["data_device_gb_total"] = round(sum(per_rank), 3)
    return merged


def rank_digests(model: nn.Module, dist: Dist) -> list[str]:
    """A hash of every rank's final weights and buffers: DDP is only right if they are all equal."""
    h = hashlib.sha256()
    for name, t in sorted(model_state(model).items()):
        h.update(name.encode())
        h.update(t.numpy().tobytes())
    if dist.world == 1:
        return [h.hexdigest()]
    out: list[Any] = [None] * dist.world
    torch_dist.all_gather_object(out, h.hexdigest())
    return out
