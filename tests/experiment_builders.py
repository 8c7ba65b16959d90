"""Builders of realistic experiment directories (docs/design.md schemas) for the analysis tests.

Not a test module (no tests here; formerly ``test_analysis_helpers``, an alias tests/conftest.py
keeps); the analysis tests and benchmarks/collect_1000.py import it. Times, memory and
accuracies default to the 2020 paper's figures so the expected verdicts are the paper's own.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from aslhpc.cellfiles import cell_id

#: (batch size, gpus) -> (exec time s, per-GPU GB, train/val/test acc) from Lad (2020)
PAPER: dict[tuple[int, int], tuple[float, tuple[float, ...], tuple[float, float, float]]] = {
    (128, 1): (2500.82, (2.859,), (99.87, 99.91, 99.88)),
    (128, 2): (2306.56, (1.569, 1.531), (99.89, 99.95, 100.0)),
    (128, 3): (2296.49, (1.419, 1.381, 1.373), (99.84, 99.90, 99.88)),
    (128, 4): (2335.14, (1.355, 1.317, 1.317, 1.317), (99.86, 99.88, 99.94)),
    (256, 1): (2461.46, (2.859,), (99.66, 99.87, 99.88)),
    (256, 2): (2360.52, (2.921, 2.851), (99.71, 99.88, 99.71)),
    (256, 3): (2028.72, (1.809, 1.739, 1.719), (99.64, 99.82, 99.82)),
    (256, 4): (2350.78, (1.649, 1.579, 1.579, 1.579), (99.86, 99.88, 99.94)),
    (512, 1): (2674.47, (7.403,), (97.86, 98.93, 98.62)),
    (512, 2): (2417.13, (3.219, 3.113), (99.25, 99.77, 99.71)),
    (512, 3): (2218.39, (3.633, 3.497, 3.477), (99.19, 99.67, 99.42)),
    (512, 4): (2329.82, (3.035, 2.899, 2.899, 2.899), (98.91, 99.53, 99.42)),
}

SPLIT_HASH = "3f9a1c0e5b7d2a4c6e8f0a1b2c3d4e5f"
BLOCKED_HASH = "b10c4ed0000000000000000000000000"


def result_json(
    experiment: str,
    gpus: int,
    batch_size: int,
    repeat: int = 0,
    *,
    strategy: str = "dp",
    exec_time_s: float | None = None,
    mem_gb: tuple[float, ...] | None = None,
    acc: tuple[float, float, float] | None = None,
    split_kind: str = "random",
    split_hash: str | None = None,
    nvml: bool = True,
    gpus_used: int | None = None,
    job_id: str = "1000",
    host: str = "d1001",
    data_device_gb: float | None = None,
    ranks_in_sync: bool | None = None,
) -> dict[str, Any]:
    """A complete result.json (schema 1) as the trainer writes it.

    ``data_device_gb`` adds ``telemetry.data_device_gb`` (the fast pipeline's dataset on the GPU);
    ``ranks_in_sync`` adds a DDP ``ranks`` block; both are absent by default, as in older results."""
    t0, mem0, acc0 = PAPER.get(
        (batch_size, gpus), (2400.0, tuple(2.0 for _ in range(gpus)), (99.0, 99.0, 99.0))
    )
    exec_time_s = t0 if exec_time_s is None else exec_time_s
    mem_gb = mem0 if mem_gb is None else mem_gb
    train_acc, val_acc, test_acc = acc0 if acc is None else acc
    used = gpus if gpus_used is None else gpus_used
    n_train, n_val, n_test = 76760, 8528, 1741
    cid = cell_id(gpus, batch_size, repeat, strategy)
    telemetry_gpus = [
        {
            "index": i,
            "uuid": f"GPU-{i:04d}",
            "name": "Tesla V100-SXM2-32GB",
            "mem_total_gb": 32.48,
            "mem_peak_gb": mem_gb[i] if i < len(mem_gb) else 0.011,
            "mem_mean_gb": (mem_gb[i] if i < len(mem_gb) else 0.011) * 0.9,
            "util_mean_pct": 20.0,
            "mem_util_mean_pct": 5.0,
            "power_peak_w": 120.0,
            "sm_clock_mean_mhz": 1290.0,
            "temp_peak_c": 48.0,
            "proc_mem_peak_gb": max(0.0, (mem_gb[i] if i < len(mem_gb) else 0.0) - 0.011),
        }
        for i in range(4)  # the sampler sees all four GPUs of the node, as nvidia-smi did
    ]
    result = {
        "schema": 1,
        "experiment": experiment,
        "cell_id": cid,
        "status": "completed",
        "config": {
            "data": "/data/asl_alphabet_train",
            "out": f"results/{experiment}/cells/{cid}",
            "gpus": gpus,
            "batch_size": batch_size,
            "epochs": 25,
            "lr": 0.005,
            "split": split_kind,
            "seed": repeat,
            "pipeline": "fast",
            "strategy": strategy,
        },
        "gpus_requested": gpus,
        "gpus_used": used,
        "device": "cuda" if used else "cpu",
        "device_names": ["Tesla V100-SXM2-32GB"] * used if used else ["Intel Xeon Gold 6132"],
        "data_parallel": used > 1,
        "strategy": strategy,
        "pipeline": "fast",
        "amp": "fp32",
        "world_size": 1,
        "split": {
            "kind": split_kind,
            "seed": 0,
            "hash": split_hash or (SPLIT_HASH if split_kind == "random" else BLOCKED_HASH),
            "train": n_train,
            "val": n_val,
            "test": n_test,
        },
        "batches": {
            "train": math.ceil(n_train / batch_size),
            "val": math.ceil(n_val / batch_size),
            "test": math.ceil(n_test / batch_size),
        },
        "epochs": 25,
        "best_epoch": 24,
        "train_acc": train_acc,
        "val_acc": val_acc,
        "test_acc": test_acc,
        "train_loss": 0.01,
        "val_loss": 0.005,
        "test_loss": 0.006,
        "extra_test": {"n": 28, "acc": 96.43, "per_class": {}},
        "exec_time_s": exec_time_s,
        "data_prep_s": 12.5,
        "images_per_s": n_train * 25 / (exec_time_s * 0.9),
        "telemetry": {
            "nvml": nvml,
            "reason": None if nvml else "NVML not available",
            "interval_s": 1.0,
            "n_samples": int(exec_time_s),
            "gpus": telemetry_gpus if nvml else [],
            "cpu": {"util_mean_pct": 30.0, "rss_peak_gb": 5.1},
            "torch": [{"device": i, "max_allocated_gb": 1.0, "max_reserved_gb": 1.2} for i in range(used)],
        },
        "provenance": {
            # the keys telemetry/provenance.collect_provenance writes
            "hostname": host,
            "gpu_models": ["Tesla V100-SXM2-32GB"],
            "driver_version": "410.48",
            "cpu_model": "Intel(R) Xeon(R) Gold 6132 CPU @ 2.60GHz",
        },
        "versions": {
            "python": "3.11.9",
            "torch": "2.14.1",
            "cuda": "13.0",
            "cudnn": "9.10",
            "aslhpc": "0.1.0",
        },
        "slurm": {
            "job_id": job_id,
            "array_task": None,
            "partition": "gpu",
            "reservation": "CSYE7374_GPU",
            "gres": f"gpu:v100-sxm2:{gpus}",
            "nodelist": host,
            "restarts": 0,
        },
        "started_at": "2026-04-11T20:00:00Z",
        "finished_at": "2026-04-11T20:40:00Z",
    }
    if data_device_gb is not None:
        result["telemetry"]["data_device_gb"] = data_device_gb
    if ranks_in_sync is not None:
        digests = ["a1b2"] * gpus if ranks_in_sync else ["a1b2"] + ["c3d4"] * (gpus - 1)
        result["ranks"] = {"weight_digests": digests, "in_sync": ranks_in_sync}
    return result


def complete_result(cell: str, gpus: int, batch_size: int, strategy: str = "dp", seed: int = 0,
                    **fields: Any) -> dict[str, Any]:
    """The smallest result.json that counts as COMPLETED for manifest cell ``cell``: every required field
    (aslhpc.schema.results.RESULT_REQUIRED), a config that matches the cell; ``fields`` override or add."""
    return {"status": "completed", "cell_id": cell, "epochs": 2, "train_acc": 90.0, "val_acc": 90.0,
            "test_acc": 90.0, "exec_time_s": 60.0,
            "config": {"gpus": gpus, "batch_size": batch_size, "strategy": strategy, "seed": seed}, **fields}


def write_json(path: Path, obj: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def write_cell(exp_dir: Path, result: dict[str, Any]) -> Path:
    """Write one cell's result.json (and config.json, like the trainer) under cells/<id>/. A result without
    a split gets the one a real submit recorded for the cell in the manifest, as its trainer would."""
    d = exp_dir / "cells" / result["cell_id"]
    manifest = exp_dir / "manifest.json"
    if "split" not in result and manifest.is_file():
        entry = json.loads(manifest.read_text()).get("cells", {}).get(result["cell_id"], {})
        if entry.get("split_hash"):
            result = {**result, "split": {"hash": entry["split_hash"]}}
    write_json(d / "config.json", result["config"])
    write_json(d / "result.json", result)
    return d


def write_manifest(exp_dir: Path, experiment: str, cells: list[tuple[int, int, int, str]]) -> Path:
    """manifest.json listing (gpus, batch_size, repeat, strategy) cells, each submitted once."""
    entries = {}
    for n, (gpus, bs, repeat, strategy) in enumerate(cells):
        cid = cell_id(gpus, bs, repeat, strategy)
        entries[cid] = {
            "cell_id": cid,
            "gpus": gpus,
            "batch_size": bs,
            "repeat": repeat,
            "seed": repeat,
            "strategy": strategy,
            "out_dir": f"cells/{cid}",
            "attempts": [
                {
                    "job_id": str(1000 + n),
                    "cluster": "slurm",
                    "submitted_at": "2026-04-11T19:00:00Z",
                    "folder": "logs",
                }
            ],
        }
    return write_json(
        exp_dir / "manifest.json",
        {
            "schema": 1,
            "experiment": experiment,
            "spec": {"name": experiment, "pipeline": "fast", "split": "random"},
            "created_at": "2026-04-11T19:00:00Z",
            "updated_at": "2026-04-11T19:00:00Z",
            "cells": entries,
        },
    )


def paper_experiment(
    root: Path, experiment: str = "paper", *, skip: tuple[tuple[int, int], ...] = ()
) -> Path:
    """The paper's 3 x 4 matrix, one run per cell, with manifest; ``skip`` cells get no files."""
    exp = root / experiment
    cells = [(g, bs, 0, "dp") for bs in (128, 256, 512) for g in (1, 2, 3, 4)]
    write_manifest(exp, experiment, cells)
    for g, bs, _, _ in cells:
        if (bs, g) not in skip:
            write_cell(exp, result_json(experiment, g, bs))
    return exp
