"""benchmarks/gpu_check.sh runs end to end in its reduced mode on a CPU, so it is ready the day a
GPU is there: every step is recorded, GPU-only steps skip with their reason, figures are measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

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
