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
* ``environment`` - torch, CUDA, cuDNN, driver, GPUs, arch list, TF32 defaults, package versions, and which
  aslhpc modules import here (``--imports MOD,...``): the steps that need a missing one skip.
* ``nvml_vs_smi`` - NVML's per-process list (the query the sampler uses, after its _v3 -> _v2 fallback)
  beside ``nvidia-smi --query-compute-apps``; names a PID namespace (issue 25 #10).
* ``fp16_scaler`` - LadNet steps under fp16 autocast + GradScaler: finite loss, scale, skipped steps.
* ``fp32_true`` - the paper pipeline's fp32: TF32 flags as found, and a matmul and a conv with TF32 off and
  on against float64 (issue 25 #2).
* ``ddp_nccl`` - one DDP step in a 1-rank NCCL process group (gloo on a CPU), grads checked against
  the plain model's.
"""

from __future__ import annotations

import datetime
import importlib
import json
import os
import platform
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
    pp = {"per_process": summary.get("per_process"), "per_process_detail": summary.get("per_process_detail")}
    ours_mib = None if ours is None else ours * 1000  # the summary's GB are MiB / 1000
    if ours_mib is None or smi is None:
        return _out("fail", f"sampler {ours_mib} MiB, nvidia-smi {smi} MiB: one side did not list "
                    f"this process (reason: {summary.get('reason')}; per_process: {pp['per_process']}: "
                    f"{pp['per_process_detail']})", sampler_mib=ours_mib, smi_mib=smi, **pp)
    diff = abs(ours_mib - smi) / max(smi, 1.0) * 100
    return _out("ok" if diff <= 3 else "warn", f"sampler {ours_mib:.0f} MiB vs nvidia-smi {smi:.0f} MiB "
                f"({diff:.1f} % apart) for pid {os.getpid()}", sampler_mib=ours_mib, smi_mib=smi,
                diff_pct=round(diff, 2), **pp)


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


def _versions(names: tuple[str, ...]) -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    return out


PACKAGES = ("torch", "torchvision", "numpy", "pillow", "nvidia-ml-py", "psutil", "rich", "pandas", "scipy",
            "matplotlib", "pydantic", "submitit", "opencv-python-headless")
IMPORTS: list[str] = []  # set by --imports: the aslhpc modules the planned steps need


def tf32_flags() -> dict[str, Any]:
    """Every switch that decides whether an fp32 matmul / conv runs as TF32, as this torch has them."""
    b = torch.backends
    flags: dict[str, Any] = {"matmul.allow_tf32": b.cuda.matmul.allow_tf32,
                             "cudnn.allow_tf32": b.cudnn.allow_tf32,
                             "float32_matmul_precision": torch.get_float32_matmul_precision()}
    for key, obj in (("matmul.fp32_precision", b.cuda.matmul), ("cudnn.conv.fp32_precision",
                                                                  getattr(b.cudnn, "conv", None))):
        if obj is not None and hasattr(obj, "fp32_precision"):
            flags[key] = obj.fp32_precision
    return flags


def _driver() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            v = pynvml.nvmlSystemGetDriverVersion()
            return v.decode() if isinstance(v, bytes) else str(v)
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no driver: a CPU machine
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            return next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "")
    except OSError:
        return platform.processor()


def environment() -> dict[str, Any]:
    imports: dict[str, str] = {}
    for mod in IMPORTS:
        try:
            importlib.import_module(mod)
            imports[mod] = "ok"
        except Exception as exc:  # noqa: BLE001 - what fails to import here is the finding
            imports[mod] = f"{type(exc).__name__}: {exc}"
    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            gpus.append({"index": i, "name": p.name, "capability": f"{p.major}.{p.minor}",
                         "total_mib": p.total_memory >> 20, "multiprocessors": p.multi_processor_count})
    smi = None
    if shutil.which("nvidia-smi"):
        try:
            smi = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
            smi = smi.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            smi = f"{type(exc).__name__}"
    figures = {"python": platform.python_version(), "executable": sys.executable, "torch": torch.__version__,
               "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
               "cuda_available": torch.cuda.is_available(), "gpus": gpus, "driver": _driver(),
               "nvidia_smi_L": smi, "arch_list": list(torch.cuda.get_arch_list()),
               "tf32_defaults": tf32_flags(), "cpu": _cpu_model(), "cpus": os.cpu_count(),
               "packages": _versions(PACKAGES), "imports": imports}
    what = ", ".join(f"{g['name']} (sm_{g['capability'].replace('.', '')})" for g in gpus) or "no CUDA GPU"
    bad = [m for m, v in imports.items() if v != "ok"]
    return _out("ok", f"torch {torch.__version__} CUDA {torch.version.cuda} driver {figures['driver']}: "
                f"{what}" + (f"; not importable: {', '.join(bad)}" if bad else ""), **figures)


def nvml_vs_smi() -> dict[str, Any]:
    """NVML's per-process list for cuda:0, through the sampler's adapter, beside nvidia-smi's."""
    if (skip := _no_gpu()) is not None:
        return skip
    from aslhpc.telemetry.nvml import Nvml, per_process_status, pid_namespace_note, torch_visible

    block = torch.empty(1024 * 2**20, dtype=torch.uint8, device="cuda:0")  # hold 1 GiB
    torch.cuda.synchronize()
    nv = Nvml.open()
    try:
        mapped, _ = nv.map_visible(torch_visible([0]) or None)
        found = nv.process_memory(mapped[0].device.handle, {os.getpid()})
        query, notes = nv.process_query, list(nv.process_notes)
    finally:
        nv.close()
    smi = smi_process_mib(os.getpid()) if shutil.which("nvidia-smi") else None
    smi_rows = _smi_rows() if shutil.which("nvidia-smi") else []
    del block
    foreign = set(found.listed) - {os.getpid()}
    status, detail = per_process_status(found.mib is not None, False, foreign, notes, query,
                                        pid_namespace_note(), os.getpid())
    figs = {"per_process": status, "detail": detail, "query": query, "missing_queries": notes,
            "nvml_mib": found.mib, "nvml_pids": list(found.listed), "smi_mib": smi, "smi_rows": smi_rows,
            "pid": os.getpid()}
    if found.mib is None or smi is None:
        return _out("warn", f"{status}: {detail}; nvidia-smi lists this pid with {smi} MiB", **figs)
    diff = abs(found.mib - smi) / max(smi, 1.0) * 100
    return _out("ok" if diff <= 3 else "warn", f"NVML {found.mib:.0f} MiB ({query}) vs nvidia-smi "
                f"{smi:.0f} MiB ({diff:.1f} % apart) for pid {os.getpid()}", **figs, diff_pct=round(diff, 2))


def _smi_rows() -> list[str]:
    query = ["nvidia-smi", "--query-compute-apps=pid,process_name,used_memory", "--format=csv,noheader"]
    try:
        return subprocess.run(query, capture_output=True, text=True, timeout=30).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError) as exc:
        return [f"{type(exc).__name__}"]


def _ladnet(device: str) -> torch.nn.Module:
    try:
        from aslhpc.training.model import LadNet

        return LadNet().to(device)
    except Exception:  # noqa: BLE001 - the models module moved: a stand-in conv net of the same shape
        return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 7), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                   torch.nn.AdaptiveAvgPool2d(8), torch.nn.Flatten(),
                                   torch.nn.Linear(512, 29)).to(device)


def _steps_ms(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, n: int, dtype: torch.dtype | None,
              scaler: Any = None) -> tuple[float, list[float]]:
    """Median ms of n SGD steps (after 3 warm-ups), CUDA-event timed; the losses."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    times, losses = [], []
    for i in range(n + 3):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        end.record()
        end.synchronize()
        if i >= 3:
            times.append(start.elapsed_time(end))
            losses.append(float(loss))
    times.sort()
    return times[len(times) // 2], losses


def fp16_scaler() -> dict[str, Any]:
    if (skip := _no_gpu()) is not None:
        return skip
    torch.manual_seed(0)
    x = torch.randn(256, 3, 150, 150, device="cuda")
    y = torch.randint(0, 29, (256,), device="cuda")
    fp32_ms, _ = _steps_ms(_ladnet("cuda"), x, y, 10, None)
    scaler = torch.amp.GradScaler("cuda")
    scales = []
    model = _ladnet("cuda")
    fp16_ms, losses = _steps_ms(model, x, y, 10, torch.float16, scaler)
    scales.append(scaler.get_scale())
    finite = all(v == v and abs(v) != float("inf") for v in losses)
    status = "ok" if finite else "fail"
    return _out(status, f"fp16+GradScaler: {fp16_ms:.2f} ms/step vs fp32 {fp32_ms:.2f} ms "
                f"(batch 256, 150 px), losses finite: {finite}, final scale {scales[-1]:.0f}",
                fp16_ms=round(fp16_ms, 3), fp32_ms=round(fp32_ms, 3),
                speedup=round(fp32_ms / fp16_ms, 3) if fp16_ms else None,
                losses=[round(v, 4) for v in losses], final_scale=scales[-1])


def _rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a.double() - ref).norm() / ref.norm())


def fp32_true() -> dict[str, Any]:
    """fp32 with TF32 off must be ~1e-6 from float64; TF32 ~1e-4..1e-3. Flags are restored afterwards."""
    if (skip := _no_gpu()) is not None:
        return skip
    found = tf32_flags()
    b = torch.backends
    saved = (b.cuda.matmul.allow_tf32, b.cudnn.allow_tf32)
    g = torch.Generator(device="cuda").manual_seed(0)
    a = torch.randn(4096, 4096, device="cuda", generator=g)
    m = torch.randn(4096, 4096, device="cuda", generator=g)
    x = torch.randn(64, 16, 75, 75, device="cuda", generator=g)
    w = torch.randn(16, 16, 5, 5, device="cuda", generator=g)
    mm_ref = a.double() @ m.double()
    conv_ref = torch.nn.functional.conv2d(x.double(), w.double())
    errs = {}
    try:
        for tf32 in (False, True):
            b.cuda.matmul.allow_tf32 = b.cudnn.allow_tf32 = tf32
            key = "tf32" if tf32 else "fp32"
            errs[f"matmul_{key}"] = _rel(a @ m, mm_ref)
            errs[f"conv_{key}"] = _rel(torch.nn.functional.conv2d(x, w), conv_ref)
    finally:
        b.cuda.matmul.allow_tf32, b.cudnn.allow_tf32 = saved
    errs = {k: float(f"{v:.3g}") for k, v in errs.items()}
    true_fp32 = errs["matmul_fp32"] < 1e-5 and errs["conv_fp32"] < 1e-5
    differs = errs["matmul_tf32"] > 10 * errs["matmul_fp32"] or errs["conv_tf32"] > 10 * errs["conv_fp32"]
    status = "ok" if true_fp32 else "fail"
    changes = "TF32 changes results here" if differs else "TF32 changes nothing here"
    return _out(status, f"TF32 off: matmul {errs['matmul_fp32']:.1e}, conv {errs['conv_fp32']:.1e} from "
                f"float64; on: matmul {errs['matmul_tf32']:.1e}, conv {errs['conv_tf32']:.1e} "
                f"({changes}); defaults {found}",
                defaults=found, rel_err=errs, tf32_changes_results=differs)


def ddp_nccl() -> dict[str, Any]:
    """One DDP step, world size 1 (NCCL on a GPU, gloo on a CPU): the grads must equal the plain model's."""
    import tempfile

    import torch.distributed as dist

    gpu = torch.cuda.is_available()
    backend, device = ("nccl", "cuda:0") if gpu else ("gloo", "cpu")
    if gpu and not dist.is_nccl_available():
        return _out("fail", f"torch {torch.__version__} has no NCCL")
    torch.manual_seed(0)
    plain = _ladnet(device)
    model = _ladnet(device)
    model.load_state_dict(plain.state_dict())
    x = torch.randn(8, 3, 150, 150, device=device)
    y = torch.randint(0, 29, (8,), device=device)
    with tempfile.TemporaryDirectory(prefix="aslhpc-ddp-") as tmp:
        t0 = time.perf_counter()
        dist.init_process_group(backend, init_method=f"file://{tmp}/store", rank=0, world_size=1,
                                timeout=datetime.timedelta(seconds=60))
        try:
            ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[0] if gpu else None)
            torch.manual_seed(1)  # the same dropout mask as the plain model's below
            torch.nn.functional.cross_entropy(ddp(x), y).backward()
            torch.optim.SGD(ddp.parameters(), lr=0.01).step()
            if gpu:
                torch.cuda.synchronize()
            seconds = time.perf_counter() - t0
        finally:
            dist.destroy_process_group()
    torch.manual_seed(1)
    torch.nn.functional.cross_entropy(plain(x), y).backward()
    worst = max(float((p.grad - q.grad).abs().max()) for p, q in zip(plain.parameters(), model.parameters(),
                                                                     strict=True))
    version = torch.cuda.nccl.version() if gpu else None
    nccl = ".".join(map(str, version)) if isinstance(version, tuple) else version and str(version)
    ok = worst < 1e-4
    tail = f"; NCCL {nccl}" if nccl else "; NCCL needs a GPU"
    return _out("ok" if ok else "fail", f"1-rank {backend} DDP step in {seconds:.2f} s (init included); "
                f"grads vs the plain model: max |diff| {worst:.1e}{tail}", backend=backend,
                seconds=round(seconds, 3), max_grad_diff=worst, nccl=nccl)


PROBES: dict[str, Probe] = {
    "environment": environment, "nvml_vs_smi": nvml_vs_smi, "fp16_scaler": fp16_scaler,
    "fp32_true": fp32_true, "ddp_nccl": ddp_nccl, "sampler_vs_smi": sampler_vs_smi,
    "dp_autocast": dp_autocast, "arch": arch,
    "nvml_devices": nvml_devices, "pinned_peak": pinned_peak, "fused_sgd": fused_sgd,
}


def run_probe(name: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        result = PROBES[name]()
    except Exception as exc:  # noqa: BLE001 - what the GPU did is the finding
        result = _out("fail", f"{type(exc).__name__}: {exc}")
    return {**result, "seconds": round(time.perf_counter() - t0, 2)}


def main(argv: list[str]) -> int:
    """``[--imports MOD,...] NAME ...`` or ``all``: one JSON object per line, ``{"probe": NAME, ...}``."""
    if argv[:1] == ["--imports"]:
        IMPORTS.extend(m for m in argv[1].split(",") if m)
        argv = argv[2:]
    names = list(PROBES) if argv == ["all"] else argv
    if not names or any(n not in PROBES for n in names):
        print(f"usage: gpu_probes.py all | {' '.join(PROBES)} ...", file=sys.stderr)
        return 2
    for name in names:
        print(json.dumps({"probe": name, **run_probe(name)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
