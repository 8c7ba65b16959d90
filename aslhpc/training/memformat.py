"""Which memory format trains faster on this hardware: channels_last or contiguous, by timed steps.

channels_last is the usual win for convolutions on GPUs with tensor cores, but not everywhere: on a
2-core Xeon with AVX-512 the fast pipeline ran 312-323 images/s contiguous against 272-286 channels_last
(issue 25.11). ``--probe-memory-format`` times a few forward + backward steps of the cell's own model on
its first training batch in both formats, at the cell's start, and trains in the faster; the choice and
the timings go into result.json (``memory_format``). The choice is kept in the checkpoint, so a resumed
attempt trains in the format its epochs began with. Off by default: the two formats round differently,
and a choice made by timing can differ between two runs of one cell, which costs bit-for-bit
reproducibility.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from aslhpc.training.loop import AutocastForward

PROBE_STEPS = 3  # timed steps per format, after one untimed warm-up step each
FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


def time_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, fmt: torch.memory_format,
               device: torch.device, dtype: torch.dtype | None, steps: int,
               clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds for ``steps`` forward + backward passes of a copy of ``model`` in format ``fmt`` (the
    model itself and its gradients are untouched)."""
    probe = AutocastForward(copy.deepcopy(model).to(memory_format=fmt), device.type, dtype)
    xs = x.contiguous(memory_format=fmt)
    total = 0.0
    for step in range(steps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = clock()
        loss = nn.functional.cross_entropy(probe(xs).float(), y)
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step:  # step 0 warms up (cuDNN's algorithm search, allocator)
            total += clock() - t0
        probe.zero_grad(set_to_none=True)
    return total


def probe_memory_format(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device,
                        dtype: torch.dtype | None, all_sum: Callable[[torch.Tensor], torch.Tensor],
                        steps: int = PROBE_STEPS) -> dict[str, Any]:
    """Time both formats and pick the faster; ``all_sum`` adds every rank's timings so all ranks pick the
    same format (DDP needs one layout everywhere). The RNG state is restored: dropout in the probe
    draws nothing the training would have drawn."""
    x, y = batch
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        seconds = [time_steps(model, x, y, fmt, device, dtype, steps) for fmt in FORMATS.values()]
    summed = all_sum(torch.tensor(seconds, dtype=torch.float64, device=device)).tolist()
    names = list(FORMATS)
    chosen = names[int(summed[1] < summed[0])]
    return {"chosen": chosen, "chosen_by": "probe", "steps": steps, "batch_size": int(len(y)),
            "step_ms": {n: 1000.0 * s / steps for n, s in zip(names, seconds, strict=True)}}


def configured_format(channels_last: bool, pipeline: str, why: str = "config") -> dict[str, Any]:
    """The format without a probe: the paper pipeline's contiguous tensors, else the configured one."""
    if pipeline == "paper":
        return {"chosen": "contiguous", "chosen_by": "paper pipeline"}
    return {"chosen": "channels_last" if channels_last else "contiguous", "chosen_by": why}
