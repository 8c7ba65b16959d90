"""Where a cell ran: the machine, GPUs, driver, CUDA/cuDNN, CPU and SLURM allocation.

The 2020 paper lists its hardware by hand (V100-SXM2 x4, 32 GB each; Xeon Gold 6132, 2
sockets x 14 cores; reservation CSYE7374_GPU); :func:`collect_provenance` records the same
facts for every cell. It never raises: a fact that cannot be read is None, and what went
wrong is listed under ``errors``.

``v100_supported``: torch wheels built for CUDA 12.8+ omit sm_70 (CUDA 13 dropped Volta
altogether), so e.g. torch 2.14.1+cu130 cannot run on the paper's V100s. It is computed from
the build's arch list (:func:`cuda_arch_list`, which works without a GPU on every torch):
True when it holds ``sm_70`` or PTX (``compute_XX``) of XX <= 70, which the driver can JIT.
:func:`arch_supports` answers the same for any GPU capability (the trainer's device check).
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aslhpc.slurmenv import SLURM_ENV, slurm_info
from aslhpc.telemetry.nvml import Nvml, NvmlUnavailable

CPUINFO = Path("/proc/cpuinfo")

def cuda_arch_list(torch_module: Any = None) -> list[str]:
    """The GPU architectures this torch build has kernels for (``sm_XY``; PTX: ``compute_XY``); [] for CPU.

    ``torch.cuda.get_arch_list()`` returns [] where no GPU is visible on torch before a 2026 change
    (2.7.1 does, e.g. on a login node); the list compiled into the wheel is still there
    (``torch._C._cuda_getArchFlags()``), so it is read from there when the first answer is empty.
    """
    if torch_module is None:
        import torch as torch_module
    if not getattr(torch_module.version, "cuda", None):
        return []
    arch: list[str] = []
    try:
        arch = [str(a) for a in torch_module.cuda.get_arch_list()]
    except Exception:  # noqa: BLE001 - fall through to the compiled-in flags
        pass
    if not arch:
        flags = getattr(torch_module._C, "_cuda_getArchFlags", None)
        try:
            text = flags() if flags is not None else ""
        except Exception:  # noqa: BLE001
            text = ""
        arch = [a for a in re.split(r"[\s;,]+", str(text or "")) if a]
    return arch


def arch_supports(arch_list: list[str], capability: tuple[int, int]) -> bool | None:
    """Can a build with these arches run on a GPU of ``capability`` (major, minor)? None if the list is empty.

    A cubin ``sm_XY`` runs on the same major and a minor >= Y (``sm_90a``-style arch-specific ones
    only on exactly that GPU); PTX ``compute_XY`` is JIT-compiled by the driver for any GPU >= X.Y.
    """
    if not arch_list:
        return None
    want = tuple(capability)
    for arch in arch_list:
        m = re.fullmatch(r"(sm|compute)_(\d+)([a-z]?)", arch)
        if not m:
            continue
        have = divmod(int(m.group(2)), 10)
        exact_only = bool(m.group(3))
        if m.group(1) == "sm" and have[0] == want[0] and (have == want or (have < want and not exact_only)):
            return True
        if m.group(1) == "compute" and not m.group(3) and have <= want:
            return True
    return False


def v100_supported(arch_list: list[str]) -> bool | None:
    """Can a build with these CUDA arches run on a V100 (sm_70)? None if the list is empty."""
    return arch_supports(arch_list, (7, 0))


def run_versions(prov: Mapping[str, Any], package_version: str) -> dict[str, Any]:
    """result.json's ``versions`` block, read off the provenance record (one source for both)."""
    return {"python": prov.get("python"), "torch": prov.get("torch"), "cuda": prov.get("cuda"),
            "cudnn": prov.get("cudnn"), "aslhpc": package_version}


def run_slurm(info: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """result.json's ``slurm`` block (its keys since the first release), from :func:`slurm_info`."""
    if not info:
        return None
    gpus = info.get("step_gpus") or info.get("job_gpus") or ""
    on_node = str(info.get("gpus_on_node") or "")
    return {
        "job_id": info.get("array_job_id") or info.get("job_id"), "array_task": info.get("array_task"),
        "partition": info.get("partition"), "reservation": info.get("reservation"),
        "nodelist": info.get("nodelist"), "node": info.get("nodename"),
        "gpus_granted": int(on_node) if on_node.isdigit() else len([g for g in gpus.split(",") if g]),
        "job_gpus": info.get("job_gpus"), "ntasks": info.get("ntasks"), "restarts": info.get("restarts", 0),
    }


def _parse_cpuinfo(text: str) -> dict[str, Any]:
    """Model and topology from /proc/cpuinfo (x86 lists physical id / cpu cores / siblings)."""
    model = cpu_cores = siblings = None
    sockets: set[str] = set()
    logical = 0
    for line in text.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "processor":
            logical += 1
        elif key in ("model name", "Model", "cpu model") and model is None:
            model = value
        elif key == "physical id":
            sockets.add(value)
        elif key == "cpu cores" and cpu_cores is None and value.isdigit():
            cpu_cores = int(value)
        elif key == "siblings" and siblings is None and value.isdigit():
            siblings = int(value)
    out: dict[str, Any] = {"cpu_model": model, "cpu_logical": logical or None}
    if sockets:
        out["cpu_sockets"] = len(sockets)
    if cpu_cores:
        out["cpu_cores_per_socket"] = cpu_cores
        if siblings:
            out["cpu_threads_per_core"] = max(1, siblings // cpu_cores)
    return out


def _parse_lscpu(text: str) -> dict[str, Any]:
    keys = {"Model name": "cpu_model", "Socket(s)": "cpu_sockets",
            "Core(s) per socket": "cpu_cores_per_socket",
            "Thread(s) per core": "cpu_threads_per_core", "CPU(s)": "cpu_logical"}
    out: dict[str, Any] = {}
    for line in text.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key in keys and value:
            out[keys[key]] = int(value) if value.isdigit() else value
    return out


def cpu_info(cpuinfo: Path | None = None) -> dict[str, Any]:
    """CPU model and topology: /proc/cpuinfo first, gaps filled from ``lscpu`` when installed."""
    cpuinfo = CPUINFO if cpuinfo is None else cpuinfo
    info: dict[str, Any] = dict.fromkeys(
        ("cpu_model", "cpu_sockets", "cpu_cores_per_socket", "cpu_threads_per_core", "cpu_logical"))
    try:
        parsed = _parse_cpuinfo(cpuinfo.read_text(errors="replace"))
        info.update({k: v for k, v in parsed.items() if v is not None})
    except OSError:
        pass
    lscpu = shutil.which("lscpu")
    if lscpu and any(v is None for v in info.values()):
        try:
            out = subprocess.run([lscpu], capture_output=True, text=True, timeout=5, check=False,
                                 env={**os.environ, "LC_ALL": "C"}).stdout
            for k, v in _parse_lscpu(out).items():
                if info.get(k) is None:
                    info[k] = v
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        info["cpus_allowed"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        info["cpus_allowed"] = os.cpu_count()
    return info


def gpu_info(nvml: Any = None, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The GPUs this process sees (via NVML, mapped like the sampler does) and the driver."""
    env = os.environ if env is None else env
    info: dict[str, Any] = {"gpu_count": 0, "gpu_models": [], "gpu_memory_gb": [], "gpus": [],
                            "gpu_count_node": None, "driver_version": None, "gpu_source": None,
                            "gpu_reason": None}
    try:
        nv = Nvml.open(nvml)
    except NvmlUnavailable as exc:
        info["gpu_reason"] = str(exc)
        return _torch_gpus(info)
    try:
        mapped, problems = nv.map_visible(None, env)
        info.update(gpu_source="nvml", gpu_count=len(mapped), gpu_count_node=nv.count,
                    driver_version=nv.driver_version(), gpu_reason="; ".join(problems) or None)
        for g in mapped:
            d, total = g.device, nv.total_mib(g.device)
            gb = None if total is None else round(total / 1000, 3)
            info["gpus"].append({**g.mapping(), "name": d.name, "mem_total_gb": gb})
            info["gpu_models"].append(d.name)
            info["gpu_memory_gb"].append(gb)
    finally:
        nv.close()
    return info


def _torch_gpus(info: dict[str, Any]) -> dict[str, Any]:
    """Without NVML, torch can still name the devices (only asked when CUDA is available)."""
    try:
        import torch

        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                p = torch.cuda.get_device_properties(i)
                gb = round(p.total_memory / 2**20 / 1000, 3)
                info["gpus"].append({"index": i, "uuid": str(p.uuid), "name": p.name, "mem_total_gb": gb})
                info["gpu_models"].append(p.name)
                info["gpu_memory_gb"].append(gb)
            info.update(gpu_source="torch", gpu_count=len(info["gpus"]))
    except Exception:
        pass
    return info


def torch_info() -> dict[str, Any]:
    import torch

    cuda = torch.version.cuda
    arch = cuda_arch_list(torch)
    cudnn = None
    try:
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    except Exception:
        pass
    return {"torch": torch.__version__, "cuda": cuda, "cudnn": cudnn, "arch_list": arch,
            "v100_supported": v100_supported(arch) if cuda else None}


def collect_provenance(nvml: Any = None, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Machine, GPU, driver, CUDA/cuDNN, CPU and SLURM facts for result.json; never raises."""
    env = os.environ if env is None else env
    out: dict[str, Any] = {
        "hostname": None, "slurmd_nodename": env.get(SLURM_ENV["nodename"]),
        "python": sys.version.split()[0], "platform": None,
        "cuda_visible_devices": env.get("CUDA_VISIBLE_DEVICES"), "errors": [],
    }
    steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("host", lambda: {"hostname": socket.gethostname(), "platform": platform.platform()}),
        ("torch", torch_info),
        ("gpu", lambda: gpu_info(nvml, env)),
        ("cpu", cpu_info),
        ("slurm", lambda: {"slurm": slurm_info(env)}),
    ]
    for name, step in steps:
        try:
            out.update(step())
        except Exception as exc:  # provenance is a record, never a reason to fail a run
            out["errors"].append(f"{name}: {type(exc).__name__}: {exc}")
    for key in ("torch", "cuda", "cudnn", "arch_list", "v100_supported", "slurm"):
        out.setdefault(key, None)
    return out
