"""Time collect on 1,000 synthetic cells: the target is under 3 s for load + tables + verdicts.

Writes 4 GPU counts x 5 batch sizes x 50 repeats of realistic result.json files (the
schema of docs/design.md, with telemetry/provenance/SLURM blocks; ~2 % failed and ~1 %
running holes) to a temporary directory, then times each stage separately:

    .venv/bin/python benchmarks/collect_1000.py [--cells 1000] [--keep DIR]

Exit status 1 if load + tables + verdicts + report (without plots) exceed the target.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from experiment_builders import result_json, write_cell, write_json, write_manifest  # noqa: E402

from aslhpc.analysis.matrix import load_matrix  # noqa: E402
from aslhpc.analysis.report import CollectOutput, analyze, write_outputs  # noqa: E402

TARGET_S = 3.0
GPUS = (1, 2, 3, 4)
BATCHES = (32, 64, 128, 256, 512)


def build(exp: Path, n_cells: int, seed: int = 0) -> dict[str, int]:
    """Write the manifest and n_cells cells; returns counts by state."""
    rng = random.Random(seed)
    configs = [(g, b) for b in BATCHES for g in GPUS]
    repeats = -(-n_cells // len(configs))
    cells = [(g, b, r, "dp") for r in range(repeats) for g, b in configs][:n_cells]
    write_manifest(exp, exp.name, cells)
    counts = {"completed": 0, "failed": 0, "running": 0}
    for g, b, r, _ in cells:
        roll = rng.random()
        cid = f"g{g}-b{b}-r{r}"
        if roll < 0.02:
            write_json(
                exp / "cells" / cid / "error.json",
                {"error": "CUDA error: out of memory", "traceback": "...", "time": "t"},
            )
            counts["failed"] += 1
            continue
        if roll < 0.03:
            write_json(
                exp / "cells" / cid / "progress.json",
                {"epoch": 7, "epochs": 25, "batch": 3, "batches": 600, "phase": "train"},
            )
            counts["running"] += 1
            continue
        t = (2600.0 / (1 + 0.3 * (g - 1)) + b) * rng.gauss(1.0, 0.02)
        mem = tuple(round(0.6 + b / 180 / g + rng.random() * 0.05, 3) for _ in range(g))
        acc = tuple(min(100.0, rng.gauss(99.5 - b / 2000, 0.2)) for _ in range(3))
        write_cell(
            exp,
            result_json(
                exp.name, g, b, r, exec_time_s=t, mem_gb=mem, acc=acc, job_id=str(5000 + len(cid) + r)
            ),
        )
        counts["completed"] += 1
    return counts


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=1000)
    p.add_argument("--keep", type=Path, help="write the synthetic experiment here instead of a temp dir")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        exp = (args.keep or Path(tmp)) / "bench1000"
        t0 = time.perf_counter()
        counts = build(exp, args.cells)
        build_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        cells = load_matrix(exp)
        load_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        analysis = analyze(cells, name=exp.name)
        analyze_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        write_outputs(CollectOutput(exp_dir=exp, analysis=analysis), plots=False)
        report_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        write_outputs(CollectOutput(exp_dir=exp, analysis=analysis), plots=True)
        with_plots_s = time.perf_counter() - t0

    total = load_s + analyze_s + report_s
    print(
        f"cells: {len(cells)} ({counts['completed']} completed, {counts['failed']} failed, "
        f"{counts['running']} running)"
    )
    print(
        f"configurations: {len(analysis.summary)}, verdicts: "
        + ", ".join(f"{v.hypothesis} {v.verdict}" for v in analysis.verdicts)
    )
    print(f"write synthetic cells      {build_s:6.2f} s  (not timed against the target)")
    print(f"load_matrix                {load_s:6.2f} s")
    print(f"tables + verdicts          {analyze_s:6.2f} s")
    print(f"files + report (no plots)  {report_s:6.2f} s")
    print(
        f"load + analyse + report    {total:6.2f} s  "
        f"(target < {TARGET_S:.0f} s: {'OK' if total < TARGET_S else 'TOO SLOW'})"
    )
    print(
        f"files + report + 4 plots   {with_plots_s:6.2f} s  "
        f"(end to end with plots: {load_s + analyze_s + with_plots_s:.2f} s)"
    )
    return 0 if total < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
