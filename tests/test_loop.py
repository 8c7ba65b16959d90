"""The training passes' precision under DataParallel, checked on the CPU with a threaded stand-in."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from torch import nn

from aslhpc.cellfiles import CellPaths
from aslhpc.training.config import TrainConfig
from aslhpc.training.devices import DevicePlan, choose_precision
from aslhpc.training.distributed import Dist
from aslhpc.training.loop import AutocastForward, train_one_epoch
from aslhpc.training.model import LadNet
from aslhpc.training.pipelines import TensorBatches


class ThreadedDataParallel(nn.Module):
    """What nn.DataParallel's parallel_apply does per replica: a new thread that re-enters
    ``torch.autocast(device, enabled=...)`` without the dtype (the dtype is thread-local)."""

    def __init__(self, module: nn.Module, device_ids: list[int] | None = None) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        enabled = torch.is_autocast_enabled("cpu")
        out: list[torch.Tensor] = []

        def replica() -> None:
            with torch.autocast("cpu", enabled=enabled):
                out.append(self.module(x))

        t = threading.Thread(target=replica)
        t.start()
        t.join()
        return out[0]


def test_autocast_inside_the_forward_reaches_the_replica_threads() -> None:
    x = torch.randn(2, 3, 30, 30)
    model = LadNet(5, image_size=30)
    assert ThreadedDataParallel(AutocastForward(model, "cpu", torch.float16))(x).dtype == torch.float16
    with torch.autocast("cpu", dtype=torch.float16):  # the old way: the replica thread falls back to bf16
        assert ThreadedDataParallel(model)(x).dtype == torch.bfloat16


def test_a_data_parallel_cell_trains_in_the_planned_precision(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch):
    """Issue 19.1: the trainer's wrapped model computes in the planned dtype inside DataParallel's threads."""
    from aslhpc.training import trainer

    monkeypatch.setattr(torch.nn, "DataParallel", ThreadedDataParallel)
    cfg = TrainConfig(data="d", out=str(tmp_path), gpus=0, image_size=30, amp="fp16")
    cell = trainer.CellRun(cfg, CellPaths(tmp_path), Dist(), "e", "c", lambda m: None)
    cell.plan = DevicePlan(torch.device("cpu"), (0, 1), 2)  # two "GPUs": the trainer wraps in DataParallel
    cell.precision = choose_precision("fp16", cell.device)
    model = trainer.build_model(cell, tuple("abcde"), info={})  # info: only result.json reads it
    trainer.wrap_model(cell, model)
    assert isinstance(model.wrapped, ThreadedDataParallel)
    images = torch.randint(0, 255, (8, 30, 30, 3), dtype=torch.uint8)
    batches = TensorBatches(images, torch.arange(8) % 5, torch.device("cpu"), batch_size=4, shuffle=True,
                            seed=0)
    stats = train_one_epoch(model.wrapped, batches, model.optimizer, None, cell.device, 1, Dist(), 0, print)
    assert stats.out_dtype == "float16" and stats.n == 8
