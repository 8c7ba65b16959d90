"""Telemetry of a whole cell: every attempt's rows of ``samples.csv``, not only the last process's.

A resumed cell appends to the same CSV (each attempt's ``elapsed_s`` restarts at 0); the
sampler's own summary knows only the process that wrote it. :func:`whole_cell` recomputes the
figures over all rows (peaks: the larger of every sample and the last process's exact high-water
marks) and lists each attempt's own figures under ``attempts``.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

# summary key of a GPU entry -> (CSV column, how it combines)
_GPU_FIGURES = {
    "mem_peak_gb": ("mem_used_mib", "peak_gb"), "mem_mean_gb": ("mem_used_mib", "mean_gb"),
    "util_mean_pct": ("util_gpu_pct", "mean"), "mem_util_mean_pct": ("util_mem_pct", "mean"),
    "power_peak_w": ("power_w", "peak"), "sm_clock_mean_mhz": ("sm_clock_mhz", "mean"),
    "temp_peak_c": ("temp_c", "peak"), "proc_mem_peak_gb": ("proc_mem_mib", "peak_gb"),
}


def _num(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def read_attempts(path: Path) -> list[list[dict[str, str]]]:
    """The CSV's rows split into attempts (a new one wherever ``elapsed_s`` goes back); [] if unreadable."""
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as fh:
            rows = [r for r in csv.DictReader(fh) if r.get("kind") in ("cpu", "gpu")]
    except OSError:
        return []
    attempts: list[list[dict[str, str]]] = []
    last = None
    for row in rows:
        t = _num(row.get("elapsed_s"))
        if t is None:
            continue
        if last is None or t < last:
            attempts.append([])
        attempts[-1].append(row)
        last = t
    return attempts


def _combine(values: list[float], how: str) -> float | None:
    if not values:
        return None
    if how.startswith("peak"):
        v = max(values)
    else:
        v = sum(values) / len(values)
    return round(v / 1000, 3) if how.endswith("_gb") else round(v, 1)


def _column(rows: list[dict[str, str]], column: str) -> list[float]:
    return [v for r in rows if (v := _num(r.get(column))) is not None]


def _figures(rows: list[dict[str, str]]) -> dict[str, Any]:
    cpu = [r for r in rows if r["kind"] == "cpu"]
    gpu_ids = sorted({r["gpu"] for r in rows if r["kind"] == "gpu"}, key=lambda g: int(_num(g) or 0))
    out: dict[str, Any] = {
        "started": cpu[0]["time"] if cpu else None, "n_samples": len(cpu),
        "duration_s": max((_num(r["elapsed_s"]) or 0.0 for r in rows), default=0.0),
        "cpu_util_mean_pct": _combine(_column(cpu, "cpu_util_pct"), "mean"),
        "rss_peak_gb": _combine(_column(cpu, "rss_mib"), "peak_gb"),
        "gpus": [],
    }
    for g in gpu_ids:
        mine = [r for r in rows if r["kind"] == "gpu" and r["gpu"] == g]
        entry: dict[str, Any] = {"index": int(_num(g) or 0)}
        for key, (column, how) in _GPU_FIGURES.items():
            entry[key] = _combine(_column(mine, column), how)
        out["gpus"].append(entry)
    return out


def _max(*values: float | None) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def whole_cell(summary: dict[str, Any], csv_path: Path) -> dict[str, Any]:
    """``summary`` (the last process's) with its figures over every attempt, plus ``attempts``."""
    attempts = [_figures(rows) for rows in read_attempts(csv_path)]
    if not attempts:
        return summary
    out = dict(summary)
    out["attempts"] = attempts
    out["scope"] = "cell (all attempts)"
    everything = _figures([r for rows in read_attempts(csv_path) for r in rows])
    out["n_samples"] = sum(a["n_samples"] for a in attempts)
    out["duration_s"] = round(sum(a["duration_s"] for a in attempts), 3)
    cpu = dict(summary.get("cpu") or {})
    cpu["rss_peak_gb"] = _max(cpu.get("rss_peak_gb"), everything["rss_peak_gb"])
    if len(attempts) > 1:
        # the last attempt's mean is exact (CPU seconds / wall seconds); earlier ones are sample means
        weights = [a["duration_s"] for a in attempts]
        means = [a["cpu_util_mean_pct"] for a in attempts[:-1]] + [cpu.get("util_mean_pct")]
        known = [(m, w) for m, w in zip(means, weights, strict=True) if m is not None and w > 0]
        if known:
            cpu["util_mean_pct"] = round(sum(m * w for m, w in known) / sum(w for _, w in known), 1)
    out["cpu"] = cpu
    by_index = {g["index"]: g for g in everything["gpus"]}
    gpus = []
    for g in summary.get("gpus") or []:
        cell = by_index.get(g.get("index"), {})
        merged = dict(g)
        for key, (_column, how) in _GPU_FIGURES.items():
            if cell.get(key) is not None:
                merged[key] = _max(g.get(key), cell[key]) if how.startswith("peak") else cell[key]
        gpus.append(merged)
    out["gpus"] = gpus
    return out
