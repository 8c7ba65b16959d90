"""benchmarks/gpu_check.sh runs end to end in its reduced mode on a CPU, so it is ready the day a
GPU is there: every step is recorded, GPU-only steps skip with their reason, figures are measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
from fake_nvml import FakeNvml, four_v100s

ROOT = Path(__file__).resolve().parents[1]
GPU_ONLY = ("sampler_vs_smi", "dp_autocast", "arch", "pinned_peak")


def test_quick_gpu_check_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "gc"
    env = {**os.environ, "PYTHON": sys.executable, "ASLHPC_GPU_CHECK_QUICK": "1"}
    p = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--out", str(out)], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    summary = json.loads((out / "gpu_check.json").read_text())
    assert summary["quick"] is True
    steps = {s["name"]: s for s in summary["steps"]}
    want = {"data", "doctor", "bench_full", "paper_epoch_b16", "fused_sgd", "nvml_devices", *GPU_ONLY}
    assert want <= set(steps)
    assert steps["bench_full"]["figures"]["pipeline"] == "fast"
    assert steps["bench_full"]["figures"]["images_per_s"] > 0
    assert steps["paper_epoch_b16"]["figures"]["pipeline"] == "paper"
    assert steps["doctor"]["figures"]["ok"] is True and steps["doctor"]["figures"]["probe_images_per_s"] > 0
    assert json.loads((out / "doctor.json").read_text())["ok"] is True
    if not torch.cuda.is_available():
        for name in GPU_ONLY:
            assert steps[name]["status"] == "skip" and "no CUDA GPU" in steps[name]["saw"], steps[name]
    assert steps["fused_sgd"]["status"] in ("ok", "warn") and steps["fused_sgd"]["saw"]
    md = (out / "gpu_check.md").read_text()
    assert "| step | status | s | what it saw | figures |" in md and "bench_full" in md
    assert (out / "logs" / "bench_full.log").read_text().startswith("$ ")


def _gpu_torch() -> SimpleNamespace:
    """A torch whose cuda:0 'works' (allocations are host tensors): enough for the NVML rows' logic."""
    return SimpleNamespace(__version__=torch.__version__, version=SimpleNamespace(cuda="13.0"),
                           uint8=torch.uint8,
                           empty=lambda n, dtype, device: torch.empty(n, dtype=dtype),
                           cuda=SimpleNamespace(is_available=lambda: True, device_count=lambda: 1,
                                                synchronize=lambda: None))


def test_doctor_names_the_v2_fallback_on_a_pre_r510_driver() -> None:
    from aslhpc.preflight import nvmlcheck
    from aslhpc.preflight.context import Context
    from aslhpc.preflight.result import PASS

    nv = FakeNvml(four_v100s(processes=((os.getpid(), 900),))[:1], process_queries=(2,))
    *_, proc = nvmlcheck.check_nvml(Context(torch=_gpu_torch(), nvml=nv, env={}))
    assert proc.status == PASS and "900 MiB" in proc.found, proc
    assert "_v2" in proc.found and "FunctionNotFound" in proc.found
    assert proc.figures["query"] == "nvmlDeviceGetComputeRunningProcesses_v2"


def test_doctor_says_pid_namespace_when_nvml_lists_only_host_pids() -> None:
    from aslhpc.preflight import nvmlcheck
    from aslhpc.preflight.context import Context
    from aslhpc.preflight.result import WARN

    nv = FakeNvml(four_v100s(processes=((os.getpid(), 900),))[:1], host_pid_offset=40_000)
    *_, proc = nvmlcheck.check_nvml(Context(torch=_gpu_torch(), nvml=nv, env={}))
    assert proc.status == WARN and proc.found.startswith("unavailable: PID namespace"), proc
    assert "--pid=host" in proc.fix and proc.figures["per_process"] == "unavailable: PID namespace"


def test_doctor_warns_when_no_per_process_query_exists() -> None:
    from aslhpc.preflight import nvmlcheck
    from aslhpc.preflight.context import Context
    from aslhpc.preflight.result import WARN

    nv = FakeNvml(four_v100s(processes=((os.getpid(), 900),))[:1], process_queries=())
    *_, proc = nvmlcheck.check_nvml(Context(torch=_gpu_torch(), nvml=nv, env={}))
    assert proc.status == WARN and "no per-process query" in proc.found, proc
