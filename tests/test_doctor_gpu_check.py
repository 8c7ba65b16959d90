"""benchmarks/gpu_check.sh runs end to end in its reduced mode on a CPU, so it is ready the day a
GPU is there: every step is recorded, GPU-only steps skip with their reason, figures are measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from fake_nvml import FakeNvml, four_v100s

ROOT = Path(__file__).resolve().parents[1]
GPU_ONLY = ("sampler_vs_smi", "dp_autocast", "arch", "pinned_peak", "nvml_vs_smi", "fp16_scaler", "fp32_true")


@pytest.mark.slow
def test_quick_gpu_check_runs_end_to_end(tmp_path: Path) -> None:
    """Every step within the default budget (420 s): all run; the old per-step logs are one gpu_check.log."""
    out = tmp_path / "gc"
    env = {**os.environ, "PYTHON": sys.executable, "ASLHPC_GPU_CHECK_QUICK": "1", "TMPDIR": str(tmp_path)}
    p = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--out", str(out)], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    summary = json.loads((out / "gpu_check.json").read_text())
    assert summary["quick"] is True and summary["budget_s"] == 420
    steps = {s["name"]: s for s in summary["steps"]}
    want = {"data", "doctor", "bench_full_fast", "paper_epoch_b16", "fused_sgd", "nvml_devices", "ddp_nccl",
            *GPU_ONLY}
    assert want <= set(steps)
    assert not [s for s in steps.values() if s["status"] == "skipped" and "budget" in s["reason"]]
    assert list(steps["bench_full_fast"]["cells"]) == ["fast"]
    assert steps["bench_full_fast"]["figures"]["fast_images_per_s"] > 0
    assert list(steps["paper_epoch_b16"]["cells"]) == ["paper"]
    assert steps["paper_epoch_b16"]["cells"]["paper"]["result"]["pipeline"] == "paper"
    assert steps["bench"]["figures"]["ratio_fast_over_paper"] > 0
    assert steps["doctor"]["figures"]["ok"] is True and steps["doctor"]["figures"]["probe_images_per_s"] > 0
    assert json.loads((out / "doctor.json").read_text())["ok"] is True
    if not torch.cuda.is_available():
        for name in GPU_ONLY:
            assert steps[name]["status"] == "skipped" and "no CUDA GPU" in steps[name]["saw"], steps[name]
        assert steps["ddp_nccl"]["figures"]["backend"] == "gloo" and steps["ddp_nccl"]["status"] == "done"
    assert steps["fused_sgd"]["verdict"] in ("ok", "warn") and steps["fused_sgd"]["saw"]
    assert "cudnn.allow_tf32" in steps["environment"]["figures"]["tf32_defaults"]
    md = (out / "gpu_check.md").read_text()
    assert "| step | status | s (estimate) | what it saw |" in md and "bench_full_fast" in md
    log = (out / "gpu_check.log").read_text()
    assert "===== bench_full_fast =====\n$ " in log
    with tarfile.open(out / "cells.tar.gz") as tar:
        kept = set(tar.getnames())
    assert {"bench_full_fast/fast/result.json", "bench_full_fast/fast/samples.csv"} <= kept
    assert len(list(out.iterdir())) <= 8 and not any(p.is_dir() for p in out.iterdir())


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
