"""The training and evaluation passes (torchvision references/classification style), and their clocks.

Precision: autocast is entered *inside* the model's forward (:class:`AutocastForward`), not around
the call. ``nn.DataParallel`` runs each replica in a thread of its own and re-enters
``torch.autocast(device, enabled=...)`` there without the dtype; the autocast dtype is
thread-local and defaults to fp16 on CUDA, so a bf16 region opened around a DataParallel call
computes its replicas in fp16, unscaled. Each pass records the dtype the outputs came in.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from aslhpc.training.distributed import Dist
from aslhpc.training.pipelines import Batches

Log = Callable[[str], None]
T = TypeVar("T")


class AutocastForward(nn.Module):
    """``module`` with autocast entered in its own forward, so every replica thread uses ``dtype``."""

    def __init__(self, module: nn.Module, device_type: str, dtype: torch.dtype | None) -> None:
        super().__init__()
        self.module = module
        self.device_type = device_type
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=self.dtype, enabled=self.dtype is not None):
            return self.module(x)


@dataclass
class Stats:
    loss: float
    acc: float  # percent
    n: int
    seconds: float
    out_dtype: str = ""  # the dtype the model's outputs came in (what the replicas computed in)
    data_wait_s: float = 0.0  # training only: time waiting for the next batch (copy to the GPU included)
    compute_s: float = 0.0  # training only: forward + backward + optimizer step


CLOCK = ("host perf_counter; on CUDA one synchronize at the end of each step's compute, so the GPU's work "
         "is in compute_s and never in data_wait_s")


class StepClock:
    """Where a training epoch's time goes, on ONE clock (host ``perf_counter``, or the clock given).

    ``data_wait_s``: time inside the batch iterator (decode, gather, and the host-to-device copy the
    pipeline issues). ``compute_s``: forward + backward + step; on CUDA the region ends with one
    ``synchronize`` so that its GPU work is counted here, not in the next batch's wait (events on the GPU
    timeline and a host clock cannot be added up). The two are disjoint intervals inside the epoch's
    wall time on the same clock, so the rest of the epoch (``other``) is >= 0 by construction.
    """

    def __init__(self, device: torch.device, clock: Callable[[], float] = time.perf_counter) -> None:
        self.device = device
        self.now = clock
        self.data_wait_s = 0.0
        self._compute = 0.0

    def batches(self, iterable: Iterable[T]) -> Iterator[T]:
        it = iter(iterable)
        while True:
            t0 = self.now()
            try:
                item = next(it)
            except StopIteration:
                return
            self.data_wait_s += self.now() - t0
            yield item

    @contextmanager
    def compute(self) -> Iterator[None]:
        t0 = self.now()
        yield
        _sync(self.device)
        self._compute += self.now() - t0

    def compute_s(self) -> float:
        return self._compute


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _stats(sums: torch.Tensor, seconds: float, out_dtype: str) -> Stats:
    n = int(sums[2])
    return Stats(float(sums[0]) / max(n, 1), 100.0 * float(sums[1]) / max(n, 1), n, seconds, out_dtype)


def train_one_epoch(model: nn.Module, batches: Batches, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler | None, device: torch.device, epoch: int, dist: Dist,
                    log_every: int, log: Log, on_progress: Callable[[int, int], None] | None = None,
                    clock: Callable[[], float] = time.perf_counter) -> Stats:
    """One pass over the training batches; returns mean loss and accuracy over all ranks.

    ``clock`` times the epoch and its parts (:class:`StepClock`); tests pass a fake one."""
    model.train()
    criterion = nn.CrossEntropyLoss(reduction="sum")
    sums = torch.zeros(3, device=device)  # loss, correct, seen
    total, out_dtype = len(batches), ""
    steps = StepClock(device, clock)
    _sync(device)
    t0 = clock()
    for step, (x, y, global_n) in enumerate(steps.batches(batches.epoch(epoch))):
        with steps.compute():
            out = model(x)
            batch_loss = criterion(out.float(), y)
            # Sum / global batch size * world: after DDP averages gradients over ranks this is
            # exactly the mean over the global batch, even when ranks hold unequal shares.
            loss = batch_loss * (dist.world / global_n)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
        out_dtype = out_dtype or str(out.dtype).removeprefix("torch.")
        sums[0] += batch_loss.detach()
        sums[1] += (out.argmax(1) == y).sum()
        sums[2] += len(y)
        if log_every and step % log_every == 0:
            if dist.main:
                n = max(int(sums[2]), 1)
                log(f"Batch: {step:03d}/{total:03d}, Training Loss: {float(sums[0]) / n:.4f}, "
                    f"Training Acc: {100.0 * float(sums[1]) / n:.4f}")
            if on_progress is not None:
                on_progress(step, total)
    _sync(device)
    seconds = clock() - t0
    stats = _stats(dist.all_sum(sums), seconds, out_dtype)
    stats.data_wait_s, stats.compute_s = steps.data_wait_s, steps.compute_s()
    return stats


@torch.inference_mode()
def evaluate(model: nn.Module, batches: Batches, device: torch.device, dist: Dist,
             predictions: list[torch.Tensor] | None = None) -> Stats:
    """Mean cross-entropy and accuracy over a split, summed over ranks; each batch's predicted classes
    are appended to ``predictions`` (on the CPU) when a list is given (the test pass)."""
    model.eval()
    criterion = nn.CrossEntropyLoss(reduction="sum")
    sums = torch.zeros(3, device=device)
    out_dtype = ""
    _sync(device)
    t0 = time.perf_counter()
    for x, y, _ in batches.epoch(0):
        out = model(x)
        out_dtype = out_dtype or str(out.dtype).removeprefix("torch.")
        sums[0] += criterion(out.float(), y)
        predicted = out.argmax(1)
        sums[1] += (predicted == y).sum()
        sums[2] += len(y)
        if predictions is not None:
            predictions.append(predicted.cpu())
    _sync(device)
    seconds = time.perf_counter() - t0
    return _stats(dist.all_sum(sums), seconds, out_dtype)
