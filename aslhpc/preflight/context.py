"""What the checks look at: the cell's settings, the environment, and injectable torch / NVML."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aslhpc.slurmenv import granted_gpus

STUDY_CLASSES = 29  # the ASL Alphabet's classes: the checked model's outputs when no data was scanned
PAPER_IMAGES = 87_029  # 29 classes x 3,001 Kaggle images: the room check's size when no --data is given


@dataclass
class Context:
    """Inputs of every check. ``torch`` and ``nvml`` are modules, replaced by fakes in tests."""

    image_size: int = 150
    model: str = "ladnet"  # the experiment's [train] model (aslhpc.training.models spec)
    num_classes: int = 0  # 0 = the scanned data's class count, else 29 (the study's)
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

    def class_count(self) -> int:
        """Outputs of the checked model: the data's classes when the data check scanned it, else 29."""
        if self.num_classes:
            return self.num_classes
        return len(self.index.classes) if self.index is not None else STUDY_CLASSES

    def build_model(self) -> Any:
        """The configured model (``model``, ``class_count()``, ``image_size``) on the CPU, fresh each call."""
        from aslhpc.training.models import build_model

        return build_model(self.model, self.class_count(), self.image_size)

    def model_name(self) -> str:
        """``LadNet`` for the study's model, else the spec: what the check lines call it."""
        return "LadNet" if self.model == "ladnet" else self.model

    def cuda_count(self) -> int:
        """GPUs torch can use here (0 when CUDA is unavailable)."""
        t = self.torch
        try:
            return int(t.cuda.device_count()) if t.cuda.is_available() else 0
        except Exception:  # noqa: BLE001 - a broken CUDA install reads as no GPU; the cuda check says why
            return 0

    def granted_gpus(self) -> str:
        """The GPUs SLURM or the user made visible ("" when none were set)."""
        return granted_gpus(self.env)

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


def context_for(experiment: str | None = None, *, data: str | None = None, results: str | None = None,
                cache_dir: str | None = None, image_size: int | None = None, ddp: bool = False,
                quick: bool = False, node_local: bool = False) -> Context:
    """The checks' inputs: the experiment's settings (a jobs/ name or TOML path), overridden by the
    explicit ones; one ``error:`` line when the experiment's model cannot be built at its image size."""
    from aslhpc.errors import AslhpcError
    from aslhpc.training.models import check_model_spec

    ctx = Context(ddp=ddp, quick=quick, node_local=node_local)
    if experiment:
        from aslhpc.orchestration.experiment import find_job_file, load_spec

        spec = load_spec(find_job_file(experiment))
        ctx.image_size, ctx.interpolation = spec.train.image_size, spec.train.interpolation
        ctx.results, ctx.data, ctx.gpu_type = spec.results, spec.data, spec.cluster.gpu_type
        ctx.allow_cpu, ctx.gpus = spec.train.allow_cpu, max(spec.gpus, default=0)
        ctx.model = spec.train.model
    for name, value in (("data", data), ("results", results), ("cache_dir", cache_dir),
                        ("image_size", image_size)):
        if value is not None:
            setattr(ctx, name, value)
    problem = check_model_spec(ctx.model, ctx.image_size)
    if problem:
        raise AslhpcError(f"{problem} (--image-size / the experiment's [train] model)")
    return ctx
