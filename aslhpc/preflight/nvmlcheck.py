"""NVML: the library the sampler reads GPU memory through (the paper's memory table)."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from aslhpc.preflight.context import Context
from aslhpc.preflight.result import FAIL, PASS, SKIP, WARN, Check
from aslhpc.telemetry.nvml import (
    Nvml,
    NvmlUnavailable,
    describe_error,
    norm_uuid,
    per_process_status,
    pid_namespace_note,
    torch_visible,
)

FIX_NVML = "load the NVIDIA driver / nvidia-ml-py on the node; cells run, but record no GPU memory"
FIX_PROCESS = ("the memory table falls back to whole-device memory; in a container run it in the host's PID "
               "namespace (docker --pid=host; Apptainer shares it by default)")


def check_nvml(ctx: Context) -> list[Check]:
    """Init, UUID match with torch, per-process memory: three rows (skips when NVML or CUDA is absent)."""
    names = ("NVML init", "NVML sees torch's GPUs", "NVML per-process memory")
    try:
        nv = Nvml.open(ctx.nvml)
    except NvmlUnavailable as exc:
        if ctx.cuda_count():
            return [Check(names[0], WARN, f"NVML unavailable: {exc}", FIX_NVML)] + [
                Check(n, SKIP, "NVML unavailable") for n in names[1:]]
        return [Check(n, SKIP, f"{exc}" if n == names[0] else "NVML unavailable") for n in names]
    try:
        driver = nv.driver_version()
        rows = [Check(names[0], PASS, f"driver {driver}, {len(nv.devices)} GPU(s) on the node",
                      figures={"driver": driver, "node_gpus": len(nv.devices)})]
        if not ctx.cuda_count():
            return rows + [Check(n, SKIP, ctx.no_gpu_reason()) for n in names[1:]]
        rows.append(_uuid_match(ctx, nv))
        rows.append(_process_memory(ctx, nv))
        return rows
    finally:
        nv.close()


def _uuid_match(ctx: Context, nv: Nvml) -> Check:
    visible = torch_visible()
    mapped, problems = nv.map_visible(visible, ctx.env)
    cvd = ctx.env.get("CUDA_VISIBLE_DEVICES", "<unset>")
    pairs = [f"cuda:{g.index}={g.device.uuid[:12]} ({g.matched_by})" for g in mapped]
    torch_ids = {norm_uuid(v.get("uuid")) for v in visible}
    nvml_ids = {norm_uuid(g.device.uuid) for g in mapped}
    if problems or len(mapped) != len(visible) or (torch_ids - {""}) - nvml_ids:
        return Check("NVML sees torch's GPUs", FAIL,
                     f"CUDA_VISIBLE_DEVICES={cvd}: {'; '.join(problems) or 'torch and NVML list other GPUs'}",
                     "the sampler would record another GPU's memory: set CUDA_DEVICE_ORDER=PCI_BUS_ID, "
                     "or let SLURM set CUDA_VISIBLE_DEVICES")
    return Check("NVML sees torch's GPUs", PASS, f"CUDA_VISIBLE_DEVICES={cvd}: {'; '.join(pairs)}")


def _process_memory(ctx: Context, nv: Nvml) -> Check:
    """This process's memory on cuda:0 as NVML reports it, or why not (old driver, PID namespace)."""
    t = ctx.torch
    block = t.empty(64 * 2**20, dtype=t.uint8, device="cuda:0")  # 64 MiB this process holds
    t.cuda.synchronize()
    mapped, _ = nv.map_visible(torch_visible([0]) or None, ctx.env)
    pid = os.getpid()
    found, unsupported, error = None, False, None
    try:
        if mapped:
            found = nv.process_memory(mapped[0].device.handle, {pid})
    except nv.not_supported:
        unsupported = True
    except Exception as exc:  # noqa: BLE001 - NVML refuses the query on some drivers / MIG
        error = describe_error(exc)
    finally:
        del block
    name = "NVML per-process memory"
    if error or not mapped:
        return Check(name, WARN, error or "cuda:0 matches no NVML device", FIX_PROCESS)
    status, detail = per_process_status(
        matched=found is not None and found.mib is not None, unsupported=unsupported,
        foreign=set(found.listed) - {pid} if found else set(), notes=nv.process_notes, query=nv.process_query,
        ns_note=pid_namespace_note(), pid=pid)
    figures = {"per_process": status, "query": nv.process_query, "missing": list(nv.process_notes)}
    if status != "ok" or found is None or found.mib is None:
        return Check(name, WARN, f"{status}: {detail}", FIX_PROCESS, figures)
    return Check(name, PASS, f"this process: {found.mib:.0f} MiB on cuda:0 (holding >= 64 MiB) via {detail}",
                 figures={**figures, "process_mib": round(found.mib, 1)})


def check_sampler_overhead(ctx: Context) -> Check:
    """Median cost of one sampler tick here (all queries + one CSV row), the price of telemetry."""
    from aslhpc.telemetry import Sampler

    devices = list(range(ctx.cuda_count()))
    ticks = 20 if ctx.quick else 100
    with tempfile.TemporaryDirectory(prefix="aslhpc-doctor-") as tmp:
        s = Sampler(Path(tmp) / "samples.csv", interval_s=3600.0, process_interval_s=3600.0, nvml=ctx.nvml,
                    devices=devices)
        s.start()
        try:
            times = []
            for _ in range(ticks):
                t0 = time.perf_counter()
                s.sample_now()
                times.append((time.perf_counter() - t0) * 1e6)
        finally:
            summary = s.stop()
    med = statistics.median(times)
    path = f"{len(summary.get('gpus', []))} GPU(s)" if devices else "CPU path: no GPU"
    figures = {"median_us": round(med, 1), "ticks": ticks, "gpus": len(summary.get("gpus", []))}
    if med > 50_000:
        return Check("sampler tick", WARN, f"median {med / 1000:.1f} ms per tick ({path})",
                     "a slow driver: raise sample_interval_s in [train] (default 1 s)", figures)
    return Check("sampler tick", PASS, f"median {med:.0f} us per tick ({path}); at 1 s: "
                 f"{med / 1e4:.3f} % of a core", figures=figures)
