"""The GPU figures in one run: ``bash benchmarks/gpu_check.sh [--quick] [--out DIR]``.

Steps (each a subprocess with its own time limit, its output kept under ``DIR/logs/``):

1. ``data``: generate the stand-in dataset once, as ``aslhpc.data.synth`` does (3,001 per class ->
   76,760 training images; quick: 4), one process per class.
2. ``doctor``: ``python -m aslhpc.doctor`` on that data (its JSON is ``DIR/doctor.json``).
3. ``bench_full``: ``python -m aslhpc.bench --full --gpus 1 --pipelines fast`` (25 epochs; the
   target is <= 60 s on one H100). The paper pipeline is timed by the next step instead: 25 epochs
   of it would not fit the 8 minutes.
4. ``paper_epoch_b<B>``: the paper pipeline for one epoch at each of the study's batch sizes
   (``jobs/lad2020.toml``: batch sizes, workers).
5. probes (``benchmarks/gpu_probes.py``): the sampler beside nvidia-smi, and issue 19's items
   1, 2, 5, 6 and 9 seen from outside the trainer.

Every figure goes to ``DIR/gpu_check.json`` and ``DIR/gpu_check.md``. ``--quick`` (or
``ASLHPC_GPU_CHECK_QUICK=1``) shrinks everything to run end to end on a CPU in well under a minute.
GPU-only steps then skip, with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROBES = ("sampler_vs_smi", "dp_autocast", "arch", "nvml_devices", "pinned_peak", "fused_sgd")
_BENCH_LINE = re.compile(r"^(paper|fast)\s+([\d.]+) images/s\s+train ([\d.]+) s\s+"
                         r"exec ([\d.]+) s\s+data prep ([\d.]+) s\s+amp (\S+)\s+"
                         r"data on (.+?)\s+host memory .*val acc ([\d.]+)%")


def run_step(out: Path, name: str, cmd: list[str], timeout: float) -> dict[str, Any]:
    """Run one command; keep its output; return status, seconds and the output for the parsers."""
    t0 = time.perf_counter()
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        text, rc = p.stdout + p.stderr, p.returncode
    except subprocess.TimeoutExpired as exc:
        text, rc = f"{exc.stdout or ''}{exc.stderr or ''}\ntimed out after {timeout:.0f} s", None
        text = text if isinstance(text, str) else text.decode(errors="replace")
    (out / "logs").mkdir(parents=True, exist_ok=True)
    (out / "logs" / f"{name}.log").write_text(f"$ {' '.join(cmd)}\n{text}", encoding="utf-8")
    status = "ok" if rc == 0 else ("timeout" if rc is None else "fail")
    return {"name": name, "status": status, "seconds": round(time.perf_counter() - t0, 1), "rc": rc,
            "command": " ".join(cmd), "saw": "", "figures": {}, "_text": text}


def parse_bench(step: dict[str, Any]) -> dict[str, Any]:
    for line in step["_text"].splitlines():
        if m := _BENCH_LINE.match(line.strip()):
            step["figures"] = {"pipeline": m[1], "images_per_s": float(m[2]), "train_time_s": float(m[3]),
                               "exec_time_s": float(m[4]), "data_prep_s": float(m[5]), "amp": m[6],
                               "data_on": m[7], "val_acc_pct": float(m[8])}
            step["saw"] = line.strip()
        elif line.startswith("device:"):
            step["figures"]["device_line"] = line.strip()
    if step["status"] == "ok" and "images_per_s" not in step["figures"]:
        step["status"], step["saw"] = "fail", "bench printed no pipeline line (see the log)"
    return step


def _write_class(root: str, k: int, per_class: int) -> int:
    """Class k exactly as ``aslhpc.data.synth.write_dataset(seed=0)`` writes it (its RNG is per class)."""
    import numpy as np

    from aslhpc.data.layout import CANONICAL_CLASSES, TRAIN_DIR
    from aslhpc.data.synth import _save, _Walk, render

    rng = np.random.default_rng([0, k])
    walk = _Walk(rng, 200)
    d = Path(root) / TRAIN_DIR / TRAIN_DIR / CANONICAL_CLASSES[k]
    d.mkdir(parents=True, exist_ok=True)
    for n in range(1, per_class + 1):
        _save(render(k, walk.step(), rng, 200), d / f"{CANONICAL_CLASSES[k]}{n}.jpg")
    return per_class


def make_data(argv: list[str]) -> int:
    """``--make-data DIR PER_CLASS``: the generated dataset, one process per class (29 at most).

    write_dataset is serial (~2 minutes for 87,029 images); its classes are independent, so this
    writes the same files in parallel and leaves more of the 8 minutes to the measurements.
    """
    import shutil
    from concurrent.futures import ProcessPoolExecutor

    root, per_class = Path(argv[0]), int(argv[1])
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.perf_counter()
    workers = min(29, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    with ProcessPoolExecutor(max(1, workers)) as pool:
        n = sum(pool.map(_write_class, [str(root)] * 29, range(29), [per_class] * 29))
    print(f"wrote {n} images (29 classes x {per_class}) to {root} in {time.perf_counter() - t0:.1f} s "
          f"with {workers} processes")
    return 0


def study_settings() -> tuple[list[int], int]:
    """Batch sizes and DataLoader workers of the 2020 study's experiment file."""
    from aslhpc.orchestration.experiment import load_spec

    spec = load_spec(ROOT / "jobs" / "lad2020.toml")
    return list(spec.batch_sizes), spec.train.workers


def gpu_visible() -> tuple[int, str]:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.device_count(), torch.cuda.get_device_name(0)
    return 0, "CPU (no CUDA GPU visible)"


def plan(out: Path, quick: bool, gpus: int) -> list[tuple[str, list[str], float]]:
    """(name, command, timeout s) of every step, full or quick."""
    py = sys.executable
    data = out / "data"
    batches, workers = study_settings()
    g = "1" if gpus else "0"
    steps = [("data", [py, str(Path(__file__).resolve()), "--make-data", str(data), "4" if quick else "3001"],
              60 if quick else 240),
             ("doctor", [py, "-m", "aslhpc.doctor", "--data", str(data), "--results", str(out / "results"),
                         "--cache-dir", str(out / "cache"), "--json", str(out / "doctor.json")]
              + (["--quick"] if quick else []), 120)]
    if quick:  # the same commands, shrunk: one training step instead of whole epochs
        steps.append(("bench_full", [py, "-m", "aslhpc.bench", "--steps", "1", "--gpus", g,
                                     "--pipelines", "fast", "--batch-size", "16", "--data", str(data)], 120))
        batches, workers = [16], 0
    else:
        steps.append(("bench_full", [py, "-m", "aslhpc.bench", "--full", "--gpus", g, "--pipelines", "fast",
                                     "--data", str(data)], 200))
    for b in batches:
        size = ["--steps", "1"] if quick else ["--full", "--epochs", "1"]
        steps.append((f"paper_epoch_b{b}", [py, "-m", "aslhpc.bench", *size, "--gpus", g,
                                            "--pipelines", "paper", "--batch-size", str(b),
                                            "--workers", str(workers),
                                            "--data", str(data)], 60 if quick else 120))
    steps.append(("probes", [py, str(ROOT / "benchmarks" / "gpu_probes.py"), "all"], 240))
    return steps


def finish(step: dict[str, Any]) -> list[dict[str, Any]]:
    """Turn a step's output into figures (bench lines, the doctor's report); probes become one row each."""
    name = step["name"]
    if name.startswith(("bench", "paper")):
        return [parse_bench(step)]
    if name == "probes":
        return probe_rows(step)
    if name == "data":
        step["saw"] = step["_text"].strip().splitlines()[-1] if step["_text"].strip() else ""
    return [step]


def probe_rows(step: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for line in step["_text"].splitlines():
        try:
            found = json.loads(line)
        except ValueError:
            continue
        if isinstance(found, dict) and found.get("probe") in PROBES:
            rows.append({"name": found["probe"], "status": found["status"],
                         "seconds": found.get("seconds", 0), "rc": step["rc"], "command": step["command"],
                         "saw": found["saw"],
                         "figures": found.get("figures", {}), "_text": ""})
    seen = {r["name"] for r in rows}
    for name in PROBES:
        if name not in seen:
            why = "timed out" if step["status"] == "timeout" else "the probe process died before it"
            rows.append({**step, "name": name, "status": "fail", "saw": f"{why} (see logs/probes.log)"})
    return rows


def doctor_figures(out: Path, step: dict[str, Any]) -> None:
    try:
        report = json.loads((out / "doctor.json").read_text())
    except (OSError, ValueError):
        step["saw"] = "no doctor report (see the log)"
        return
    rows = {c["name"]: c for c in report["checks"]}
    step["figures"] = {"ok": report["ok"], **{k: v["status"] for k, v in rows.items()}}
    probe = rows.get("throughput probe", {}).get("figures", {})
    if probe:
        step["figures"]["probe_images_per_s"] = probe.get("images_per_s")
        step["figures"]["probe_device"] = probe.get("device")
    tick = rows.get("sampler tick", {}).get("figures", {})
    step["figures"]["sampler_tick_us"] = tick.get("median_us")
    bad = [f"{k}: {v['status']}" for k, v in rows.items() if v["status"] in ("fail", "warn")]
    step["saw"] = f"exit {step['rc']}; " + ("; ".join(bad) if bad else "no failures or warnings")
    if step["status"] == "fail" and step["rc"] == 1:
        step["status"] = "warn"  # the doctor found a problem: a figure, not a crash of this script


def markdown(summary: dict[str, Any]) -> str:
    lines = [f"# GPU check on {summary['host']} ({summary['device']})", "",
             f"{summary['started']} | {'quick (reduced) mode' if summary['quick'] else 'full mode'} | "
             f"torch {summary['torch']} | total {summary['seconds']} s", "",
             "| step | status | s | what it saw | figures |", "|---|---|---|---|---|"]
    for s in summary["steps"]:
        figs = ", ".join(f"{k}={v}" for k, v in s["figures"].items() if not isinstance(v, list | dict))
        cell = [s["name"], s["status"], str(s["seconds"]), s["saw"], figs]
        lines.append("| " + " | ".join(c.replace("|", "/").replace("\n", " ") for c in cell) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--make-data"]:
        return make_data(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", default=os.environ.get("ASLHPC_GPU_CHECK_QUICK") == "1",
                   help="reduced sizes: runs on a CPU in well under a minute (CI)")
    p.add_argument("--out", type=Path, default=None,
                   help="output dir (default results/gpu_check/<host>-<time>)")
    a = p.parse_args(argv)
    import torch

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = (a.out or ROOT / "results" / "gpu_check" / f"{socket.gethostname()}-{stamp}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    gpus, device = gpu_visible()
    t0 = time.perf_counter()
    steps = []
    for name, cmd, timeout in plan(out, a.quick, gpus):
        print(f"[{time.perf_counter() - t0:6.1f} s] {name} ...", flush=True)
        for step in finish(run_step(out, name, cmd, timeout)):
            if name == "doctor":
                doctor_figures(out, step)
            step.pop("_text")
            print(f"           {step['name']} {step['status']}: {step['saw']}", flush=True)
            steps.append(step)
    summary = {"host": socket.gethostname(), "device": device, "gpus": gpus, "quick": a.quick,
               "started": stamp, "torch": torch.__version__, "python": platform.python_version(),
               "seconds": round(time.perf_counter() - t0, 1), "steps": steps}
    from aslhpc.atomic import atomic_write_json, atomic_write_text

    atomic_write_json(out / "gpu_check.json", summary)
    atomic_write_text(out / "gpu_check.md", markdown(summary))
    print(markdown(summary))
    print(f"figures in {out / 'gpu_check.json'} and {out / 'gpu_check.md'}")
    return 1 if any(s["status"] in ("fail", "timeout") for s in steps) else 0


if __name__ == "__main__":
    sys.exit(main())
