"""What the checks look at: the cell's settings, the environment, and injectable torch / NVML."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PAPER_IMAGES = 87_029  # 29 classes x 3,001 Kaggle images: the room check's size when no --data is given


@dataclass
class Context:
    """Inputs of every check. ``torch`` and ``nvml`` are modules, replaced by fakes in tests."""

    image_size: int = 150
    interpolation: str = "bilinear"
    cache_dir: str = ""  # the cell's configured cache_dir ("" = resolved at run time)
    node_local: bool = False
    results: str = "results"
    data: str | None = None
    gpu_type: str = ""  # the experiment's cluster.gpu_type ("" = no experiment given)
    allow_cpu: bool = False
    gpus: int = 0  # the most GPUs a cell of the experiment asks for (0 = unknown / CPU)
    ddp: bool = False  # force the 2-process DDP check
    quick: bool = False  # fewer steps everywhere (tests, CI)
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    torch: Any = None
    nvml: Any = None  # the pynvml module (None: import it)
    n_images: int | None = None  # set by the data check when --data scans
    index: Any = None  # the DatasetIndex, set by the data check

    def __post_init__(self) -> None:
        if self.torch is None:
            import torch

            self.torch = torch

    def cuda_count(self) -> int:
        """GPUs torch can use here (0 when CUDA is unavailable)."""
        t = self.torch
        try:
            return int(t.cuda.device_count()) if t.cuda.is_available() else 0
        except Exception:  # noqa: BLE001 - a broken CUDA install reads as no GPU; the cuda check says why
            return 0

    def granted_gpus(self) -> str:
        """The GPUs SLURM or the user made visible ("" when none were set)."""
        return self.env.get("CUDA_VISIBLE_DEVICES", "") or self.env.get("SLURM_JOB_GPUS", "")

    def no_gpu_reason(self) -> str:
        """Why the GPU checks skip: the line a user reads in the table."""
        t = self.torch
        if t.version.cuda is None:
            return f"torch {t.__version__} is a CPU build"
        granted = self.granted_gpus()
        if granted:
            return (f"GPUs {granted} were granted but torch sees none "
                    "(dummy device files, as on the mini cluster, or a driver problem)")
        return "no CUDA GPU visible on this machine"
