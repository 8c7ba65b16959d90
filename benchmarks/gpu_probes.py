"""GPU probes for benchmarks/gpu_check.sh: ``python benchmarks/gpu_probes.py all`` (or NAME ...).

Prints one JSON line per probe: ``{"probe": NAME, "status": "ok"|"warn"|"fail"|"skip", "saw": "...",
"figures": {...}, "seconds": s}``; ``all`` runs every probe in one process (one torch import).

* ``sampler_vs_smi`` - the telemetry sampler's per-process GPU memory beside
  ``nvidia-smi --query-compute-apps`` for this same process (should agree within a few %).
* ``dp_autocast`` - issue 19 #1: the autocast dtype DataParallel's replica threads really run in.
* ``arch`` - issue 19 #2: each GPU's compute capability against torch's arch list.
* ``nvml_devices`` - issue 19 #5: NVML handles opened one device at a time (by index and by torch's UUID).
* ``pinned_peak`` - issue 19 #6: pinned host memory torch reserves for a given request.
* ``fused_sgd`` - issue 19 #9: ``SGD(fused=True)`` with a GradScaler on this device.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

Probe = Callable[[], dict[str, Any]]


def _out(status: str, saw: str, **figures: Any) -> dict[str, Any]:
    return {"status": status, "saw": saw, "figures": figures}


def _no_gpu() -> dict[str, Any] | None:
    if torch.cuda.is_available():
        return None
    return _out("skip", f"no CUDA GPU visible (torch {torch.__version__}, CUDA {torch.version.cuda})")


def smi_process_mib(pid: int) -> float | None:
    """This pid's used_memory (MiB) from nvidia-smi, summed over GPUs; None when it is not listed."""
    query = ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"]
    out = subprocess.run(query, capture_output=True, text=True, timeout=30, check=True).stdout
    found = [float(m) for p, m in (ln.split(",")[:2] for ln in out.splitlines() if "," in ln)
             if p.strip() == str(pid) and m.strip().replace(".", "").isdigit()]
    return sum(found) if found else None


def sampler_vs_smi() -> dict[str, Any]:
    if (skip := _no_gpu()) is not None:
        return skip
    if shutil.which("nvidia-smi") is None:
        return _out("skip", "nvidia-smi not on PATH")
    import tempfile
    from pathlib import Path

    from aslhpc.telemetry import Sampler

    block = torch.empty(1536 * 2**20, dtype=torch.uint8, device="cuda:0")  # hold ~1.5 GiB
    torch.cuda.synchronize()
    with tempfile.TemporaryDirectory() as tmp:
        s = Sampler(Path(tmp) / "s.csv", interval_s=3600.0, process_interval_s=0.0, devices=[0])
        s.start()
        s.sample_now()
        smi = smi_process_mib(os.getpid())
        summary = s.stop()
    del block
    gpus = summary.get("gpus") or []
    ours = gpus[0].get("proc_mem_peak_gb") if gpus else None
    ours_mib = None if ours is None else ours * 1000  # the summary's GB are MiB / 1000
    if ours_mib is None or smi is None:
        return _out("fail", f"sampler {ours_mib} MiB, nvidia-smi {smi} MiB: one side did not list "
                    f"this process (reason: {summary.get('reason')})", sampler_mib=ours_mib, smi_mib=smi)
    diff = abs(ours_mib - smi) / max(smi, 1.0) * 100
    return _out("ok" if diff <= 3 else "warn", f"sampler {ours_mib:.0f} MiB vs nvidia-smi {smi:.0f} MiB "
                f"({diff:.1f} % apart) for pid {os.getpid()}", sampler_mib=ours_mib, smi_mib=smi,
                diff_pct=round(diff, 2))


def dp_autocast() -> dict[str, Any]:
    """Autocast as the trainer enters it (outside the module), forward run by DP's replica threads."""
    if (skip := _no_gpu()) is not None:
        return skip
    seen: list[str] = []
    lock = threading.Lock()

    class Spy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.lin(x)
            with lock:
                seen.append(f"{threading.current_thread().name}:{str(y.dtype).removeprefix('torch.')}")
            return y

    n = torch.cuda.device_count()
    devices = list(range(n)) if n >= 2 else [0, 0]  # 1 GPU: two replicas on it still run in two threads
    want = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    spy = Spy().cuda(0)
    x = torch.randn(len(devices), 8, device="cuda:0")
    with torch.autocast("cuda", dtype=want):
        if n >= 2:
            torch.nn.DataParallel(spy, device_ids=devices)(x)
        else:
            from torch.nn.parallel import parallel_apply

            parallel_apply([spy, spy], [(x[:1],), (x[1:],)], devices=devices)
    dtypes = {s.split(":")[-1] for s in seen}
    name = str(want).removeprefix("torch.")
    how = "DataParallel" if n >= 2 else "parallel_apply, 2 replicas on cuda:0"
    status = "ok" if dtypes == {name} else "fail"
    return _out(status, f"autocast {name} in the main thread; replicas ({how}) computed in "
                f"{', '.join(sorted(dtypes)) or 'nothing'}", wanted=name, replicas=seen)


def arch() -> dict[str, Any]:
    if (skip := _no_gpu()) is not None:
        return skip
    from aslhpc.preflight.versions import runs_on

    listed = list(torch.cuda.get_arch_list())
    rows = []
    bad = False
    for i in range(torch.cuda.device_count()):
        major, minor = torch.cuda.get_device_capability(i)
        ok = runs_on(listed, major, minor)
        bad |= not ok
        verdict = "covered" if ok else "NOT covered"
        rows.append(f"cuda:{i} {torch.cuda.get_device_name(i)} sm_{major}{minor}: {verdict}")
    return _out("fail" if bad else "ok", f"{'; '.join(rows)} by {' '.join(listed)}", arch_list=listed)


def nvml_devices() -> dict[str, Any]:
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001
        return _out("skip", f"NVML unavailable: {type(exc).__name__}")
    try:
        opened, refused = [], []
        for i in range(pynvml.nvmlDeviceGetCount()):
            try:
                pynvml.nvmlDeviceGetHandleByIndex(i)
                opened.append(f"index {i}")
            except pynvml.NVMLError as exc:
                refused.append(f"index {i}: {type(exc).__name__}")
        for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
            uuid = str(torch.cuda.get_device_properties(i).uuid)
            try:
                pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}")
                opened.append(f"cuda:{i} by uuid")
            except pynvml.NVMLError as exc:
                refused.append(f"cuda:{i} by uuid: {type(exc).__name__}")
    finally:
        pynvml.nvmlShutdown()
    return _out("warn" if refused else "ok", f"opened {', '.join(opened) or 'nothing'}"
                + (f"; refused {', '.join(refused)}" if refused else ""), opened=opened, refused=refused)


def pinned_peak() -> dict[str, Any]:
    if (skip := _no_gpu()) is not None:
        return skip
    request = 600 * 2**20  # not a power of two: shows the caching host allocator's rounding
    t = torch.empty(request, dtype=torch.uint8).pin_memory()
    stats = torch.cuda.host_memory_stats() if hasattr(torch.cuda, "host_memory_stats") else {}
    reserved = stats.get("reserved_bytes.current", stats.get("allocated_bytes.current"))
    del t
    if reserved is None:
        return _out("warn", f"pinned {request >> 20} MiB; this torch reports no host_memory_stats")
    ratio = reserved / request
    return _out("ok", f"asked to pin {request >> 20} MiB, torch reserved {reserved >> 20} MiB ({ratio:.2f}x)",
                request_bytes=request, reserved_bytes=int(reserved), ratio=round(ratio, 3))


def fused_sgd() -> dict[str, Any]:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    p = torch.nn.Parameter(torch.randn(16, device=device))
    try:
        opt = torch.optim.SGD([p], lr=0.1, fused=True)
        scaler = torch.amp.GradScaler(device, enabled=device == "cuda")
        scaler.scale((p * p).sum()).backward()
        t0 = time.perf_counter()
        scaler.step(opt)
        scaler.update()
    except (RuntimeError, ValueError, TypeError) as exc:
        return _out("warn", f"SGD(fused=True) on {device}: {type(exc).__name__}: {exc}", available=False)
    return _out("ok", f"SGD(fused=True) with GradScaler steps on {device} "
                f"({(time.perf_counter() - t0) * 1e3:.1f} ms)", available=True, device=device)


PROBES: dict[str, Probe] = {"sampler_vs_smi": sampler_vs_smi, "dp_autocast": dp_autocast, "arch": arch,
                            "nvml_devices": nvml_devices, "pinned_peak": pinned_peak, "fused_sgd": fused_sgd}


def run_probe(name: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        result = PROBES[name]()
    except Exception as exc:  # noqa: BLE001 - what the GPU did is the finding
        result = _out("fail", f"{type(exc).__name__}: {exc}")
    return {**result, "seconds": round(time.perf_counter() - t0, 2)}


def main(argv: list[str]) -> int:
    """``NAME ...`` or ``all``: one JSON object per line, ``{"probe": NAME, ...}``."""
    names = list(PROBES) if argv == ["all"] else argv
    if not names or any(n not in PROBES for n in names):
        print(f"usage: gpu_probes.py all | {' '.join(PROBES)} ...", file=sys.stderr)
        return 2
    for name in names:
        print(json.dumps({"probe": name, **run_probe(name)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
