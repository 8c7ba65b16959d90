"""Which devices a cell runs on, and which precision: decided at run time, recorded honestly."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from aslhpc.errors import AslhpcError
from aslhpc.telemetry.provenance import arch_supports, cuda_arch_list


@dataclass(frozen=True)
class DevicePlan:
    """What really runs: ``device_ids`` empty means CPU; ``fallback`` says why CPU was used ."""

    device: torch.device
    device_ids: tuple[int, ...] = ()
    gpus_requested: int = 0
    fallback: str | None = None
    names: tuple[str, ...] = field(default_factory=tuple)

    @property
    def gpus_used(self) -> int:
        return len(self.device_ids)

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"


def plan_devices(gpus: int, allow_cpu: bool, local_rank: int | None = None) -> DevicePlan:
    """Map a GPU request onto the GPUs this process can see and run kernels on.

    ``local_rank`` is set under DDP: each rank drives exactly one GPU (or the CPU).
    Asking for more GPUs than are visible, or GPUs this torch build has no kernels for, is an
    error unless ``allow_cpu`` (tests, demos, the mini cluster's fake GPUs), and then the plan says so.
    """
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus == 0:
        return DevicePlan(torch.device("cpu"), (), 0, None, (cpu_name(),))
    ids: tuple[int, ...] = ()
    if local_rank is not None:
        # Usually every task sees all of the node's GPUs and takes cuda:LOCAL_RANK; where SLURM binds
        # one GPU per task (--gpu-bind), each task sees exactly one, its own, as cuda:0.
        ordinal = local_rank if local_rank < visible else (0 if visible == 1 else None)
        ids = (ordinal,) if ordinal is not None else ()
        need = f"rank {local_rank} needs GPU {local_rank}, {visible} visible"
    elif visible >= gpus:
        ids = tuple(range(gpus))
    else:
        cvd = os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")
        need = f"{gpus} GPU(s) requested, {visible} visible (CUDA_VISIBLE_DEVICES={cvd})"
    if ids:
        need = unsupported_gpus(ids)
        if not need:
            names = tuple(torch.cuda.get_device_name(i) for i in ids)
            return DevicePlan(torch.device("cuda", ids[0]), ids, gpus, None, names)
        fix = "install a torch built for this GPU (README 'On V100 nodes'), or pass --allow-cpu"
    else:
        fix = "request fewer GPUs, run where they are visible, or pass --allow-cpu"
    if not allow_cpu:
        raise AslhpcError(f"{need}; {fix} to fall back to the CPU")
    return DevicePlan(torch.device("cpu"), (), gpus, f"CPU fallback: {need}", (cpu_name(),))


def unsupported_gpus(ids: tuple[int, ...]) -> str:
    """'' when this torch has kernels for every GPU in ``ids``, else what is missing.

    torch only warns when the GPU is too old or new for its build (``is_available()`` stays True);
    the first kernel then fails with "no kernel image is available". Checked here, before training.
    """
    arch = cuda_arch_list()
    missing = []
    for i in ids:
        cap = tuple(torch.cuda.get_device_capability(i))
        if arch_supports(arch, cap) is False:
            missing.append(f"GPU {i} ({torch.cuda.get_device_name(i)}, sm_{cap[0]}{cap[1]})")
    if not missing:
        return ""
    return (f"torch {torch.__version__} has no kernels for {', '.join(missing)}: it was built for "
            f"{' '.join(arch)}")


def process_group_backend(plan: DevicePlan) -> str:
    """NCCL for a rank that drives a GPU, gloo for one on the CPU (a CPU fallback must not pick NCCL)."""
    return "nccl" if plan.is_cuda else "gloo"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu"


@dataclass(frozen=True)
class Precision:
    """Autocast dtype (None = fp32) and whether a gradient scaler is needed (fp16 only)."""

    name: str
    dtype: torch.dtype | None
    scaler: bool


def choose_precision(mode: str, device: torch.device) -> Precision:
    """``auto`` picks by hardware: bf16 on Ampere and later, fp16 + scaler on V100/Turing, fp32 on CPU.

    An explicit mode is honoured everywhere (``bf16`` on a CPU with AVX512-BF16/AMX is
    about 2x faster for this net); a gradient scaler is only needed for fp16 on CUDA.
    """
    if mode == "auto":
        if device.type != "cuda":
            return Precision("fp32", None, False)
        major, _ = torch.cuda.get_device_capability(device)
        mode = "bf16" if major >= 8 else "fp16"
    if mode == "fp32":
        return Precision("fp32", None, False)
    if mode == "bf16":
        return Precision("bf16", torch.bfloat16, False)
    return Precision("fp16", torch.float16, device.type == "cuda")
