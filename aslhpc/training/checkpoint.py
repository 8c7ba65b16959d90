"""A cell's ``checkpoint.pt`` (resume state) and its lock (one trainer per cell directory).

The checkpoint is read with ``torch.load(weights_only=True)``: results directories are shared
(group-readable), and a full unpickler would run whatever code a planted file carries. Everything
it holds is tensors (weights, optimizer buffers, RNG states as uint8 tensors) and plain
numbers/strings/dicts/lists, which the restricted unpickler accepts as they are.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from aslhpc.atomic import atomic_write_bytes, read_jsonl
from aslhpc.errors import AslhpcError
from aslhpc.slurmenv import slurm_info

REQUIRED = frozenset({"identity", "epoch", "model", "optimizer", "rng_cpu", "best", "best_state", "exec_s",
                      "train_s", "train_images", "started_at"})


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path, identity: dict[str, Any]) -> dict[str, Any] | None:
    """The resume state in ``path`` (None if there is none); a one-line error for anything else."""
    if not path.exists():
        return None
    fix = "delete it to restart this cell from its first epoch"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt, truncated or not ours: the same user action
        why = (str(exc).strip().splitlines() or [""])[0][:160]
        what = f"{type(exc).__name__}: {why}"
        raise AslhpcError(f"{path} cannot be read as a checkpoint ({what}); {fix}") from None
    if not isinstance(state, dict) or not REQUIRED <= state.keys():
        raise AslhpcError(f"{path} is not an aslhpc training checkpoint (missing entries); {fix}")
    if state.get("identity") != identity:
        raise AslhpcError(f"{path} was written by a different configuration; "
                          f"use another --out, or delete the checkpoint to start this cell over")
    return state


def truncate_epochs(path: Path, last_epoch: int) -> None:
    """Keep only the epoch lines the checkpoint covers (``last_epoch`` 0: none), in one atomic write.

    A crash between an epoch's line and its checkpoint leaves a line the rerun would write again."""
    keep = [r for r in read_jsonl(path) if r.get("epoch", 0) <= last_epoch]
    atomic_write_bytes(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in keep).encode())


def _holder() -> dict[str, Any]:
    slurm = slurm_info(os.environ) or {}
    return {"pid": os.getpid(), "host": socket.gethostname(), "job_id": slurm.get("job_id")}


def _describe(holder: dict[str, Any]) -> str:
    who = f"pid {holder.get('pid')} on {holder.get('host')}"
    return f"SLURM job {holder['job_id']} ({who})" if holder.get("job_id") else who


@contextmanager
def cell_lock(root: Path, rank: int = 0) -> Iterator[Path]:
    """Hold this cell's lock (rank r of a DDP cell holds its own) for as long as the trainer runs.

    ``flock`` on a file in the cell directory: the kernel drops it when the process dies (kill,
    requeue, node loss), so a stale lock never blocks a retry. The file stays; it records the holder.
    A second trainer of the same cell refuses at once, naming the job/pid that holds it.
    """
    path = root / ("cell.lock" if rank == 0 else f"cell.rank{rank}.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o664)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
            except ValueError:
                holder = {}
            who = _describe(holder) if holder else "another process"
            raise AslhpcError(f"{root} is being trained by {who} (lock {path.name}); wait for it to finish "
                              "or stop that job, then run again") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_holder()).encode(), 0)
        yield path
    finally:
        os.close(fd)
