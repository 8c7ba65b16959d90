"""Derived columns, confidence-interval aggregation and the paper-shaped tables.

The 2020 study reported one number per (batch size, GPU count) cell, from one run. Here
a configuration may have repeats, so every figure is a mean with a Student-t confidence
interval half-width and the number of runs behind it; the paper's table shape is kept
(one table per batch size, rows "Using {n}GPU", GPU memory columns with "NA" where a GPU
was not used) so the two can be read side by side.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from aslhpc.analysis.matrix import proc_columns
from aslhpc.analysis.stats import (  # noqa: F401 - ci_halfwidth..wilson_interval: names other modules import
    ci_halfwidth,
    linear_fit,
    t_cdf,
    t_quantile,
    wilson_interval,
)
from aslhpc.states import CellState

#: what identifies a configuration; repeats of it are aggregated
CONFIG_KEYS = ["batch_size", "gpus", "strategy", "pipeline", "split_kind"]

#: metrics aggregated per configuration (mean, CI half-width), besides gpu<i>_gb and gpu<i>_proc_gb
SUMMARY_METRICS = [
    "exec_time_s",
    "train_acc",
    "val_acc",
    "test_acc",
    "extra_test_acc",
    "images_per_s",
    "data_prep_s",
    "total_gpu_gb",
    "total_proc_gb",
    "data_device_gb",
    "gpu_hours",
    "speedup",
    "efficiency",
    "gpu_util_pct",
    "time_data_wait_s",
    "time_compute_s",
    "time_eval_s",
    "time_other_s",
]

#: paper-layout column names: per-process peaks in the "GPU n" columns (what the study read off nvidia-smi's
#: process list), the device-wide total and the on-GPU dataset in columns of their own
def paper_gpu_label(i: int) -> str:
    return f"GPU {i} (GB, per-process)"


DEVICE_TOTAL_LABEL = "Device-wide total (GB)"
DATA_ON_GPU_LABEL = "Data on GPU (GB)"

#: decimals used when printing, chosen like the paper's tables (GB 3, seconds and % 2)
DECIMALS = {"gb": 3, "exec_time_s": 2, "acc": 2, "images_per_s": 0, "speedup": 2, "efficiency": 2}


# --------------------------------------------------------------------------- statistics
# (one definition each, in :mod:`aslhpc.analysis.stats`; the names stay importable from here)


# --------------------------------------------------------------------------- derived columns


def _gpu_cols(frame: pd.DataFrame) -> list[str]:
    """The ``gpu<i>_gb`` columns (device-wide NVML peak per GPU slot), in order."""
    return [c for c in frame.columns if c.startswith("gpu") and c.endswith("_gb") and c[3:-3].isdigit()]


def _proc_cols(frame: pd.DataFrame) -> list[str]:
    """The ``gpu<i>_proc_gb`` columns (the cell's own process memory per GPU slot), in order."""
    return [c for c in frame.columns if c.startswith("gpu") and c.endswith("_proc_gb") and c[3:-8].isdigit()]


def _baseline_lookup(frame: pd.DataFrame, value: str) -> dict[tuple, float]:
    """(batch_size, strategy, pipeline, split_kind) -> mean 1-GPU time, plus coarser fallbacks."""
    ones = frame[(frame["gpus"] == 1) & frame[value].notna()]
    out: dict[tuple, float] = {}
    for keys in (
        ["batch_size", "strategy", "pipeline", "split_kind"],
        ["batch_size", "pipeline", "split_kind"],
        ["batch_size", "split_kind"],
    ):
        for k, v in ones.groupby(keys, sort=False)[value].mean().items():
            out[(len(keys), *k)] = float(v)
    return out


def _speedup(frame: pd.DataFrame, time_col: str, base: dict[tuple, float]) -> pd.Series:
    vals = []
    for bs, strat, pipe, split, t in zip(
        frame["batch_size"],
        frame["strategy"],
        frame["pipeline"],
        frame["split_kind"],
        frame[time_col],
        strict=True,
    ):
        t1 = base.get(
            (4, bs, strat, pipe, split), base.get((3, bs, pipe, split), base.get((2, bs, split), math.nan))
        )
        vals.append(t1 / t if t and math.isfinite(t) and t > 0 else math.nan)
    return pd.Series(vals, index=frame.index, dtype="float64")


def concurrent_cells(cells: pd.DataFrame) -> pd.Series:
    """Per cell, the other completed cells that shared a host's cores at the same time ("" if none).

    Cells run by ``submit --cluster local`` (no SLURM job) with overlapping
    [attempt_started_at, finished_at] windows shared that machine's CPU (and GPUs), so their times
    measure the contention as much as the configuration. SLURM jobs get their own GPUs, but cells that
    fell back to the CPU (``gpus_used`` 0) on one node share its cores wherever SLURM does not bind them
    (the mini cluster's nodes share two real cores), so those count too.
    A resumed cell's window starts with the attempt that finished it (``started_at`` is its first
    start: cells that ran while it was stopped did not compete with it).
    """
    out = pd.Series("", index=cells.index, dtype=object)
    if not {"cell_id", "host", "started_at", "finished_at", "slurm_job_id"} <= set(cells.columns):
        return out
    on_cpu = cells["gpus_used"].eq(0) if "gpus_used" in cells else False
    shares_cores = cells["slurm_job_id"].isna() | on_cpu
    local = cells[(cells["state"] == CellState.COMPLETED) & shares_cores & cells["host"].notna()]
    began = local["started_at"]
    if "attempt_started_at" in local:
        began = local["attempt_started_at"].fillna(local["started_at"])
    start = pd.to_datetime(began, utc=True, errors="coerce", format="ISO8601")
    end = pd.to_datetime(local["finished_at"], utc=True, errors="coerce", format="ISO8601")
    local = local[start.notna() & end.notna()]
    for _, grp in local.groupby("host", sort=False):
        s = start[grp.index].to_numpy()
        e = end[grp.index].to_numpy()
        overlap = (s[:, None] < e[None, :]) & (s[None, :] < e[:, None])
        np.fill_diagonal(overlap, False)
        ids = grp["cell_id"].astype(str).to_numpy()
        for i, idx in enumerate(grp.index):
            out[idx] = ", ".join(ids[overlap[i]])
    return out


def derive(cells: pd.DataFrame) -> pd.DataFrame:
    """Add the per-cell derived columns the paper computed by eye.

    ``n_batches`` (training batches per epoch = ceil(train / batch size), what H4 is about),
    ``images_per_s`` (from result.json; else train images x epochs / exec time, which
    includes validation time, flagged in ``images_per_s_estimated``),
    ``total_gpu_gb`` (sum of the device peaks ``gpu<i>_gb``), ``total_proc_gb`` (sum of the
    process peaks ``gpu<i>_proc_gb``), ``gpu_hours`` (exec time x GPUs used / 3600; for a CPU fallback the
    requested count is used and ``gpu_hours_basis`` says so), ``speedup`` over the mean
    1-GPU time at the same batch size, ``efficiency`` = T1 / (N x TN), and ``concurrent_with``
    (:func:`concurrent_cells`).
    """
    out = cells.copy()
    done = out["state"] == CellState.COMPLETED
    n_batches = np.ceil(out["n_train"] / out["batch_size"])
    out["n_batches"] = out["batches_train"].where(out["batches_train"].notna(), n_batches)
    est = out["n_train"] * out["epochs"] / out["exec_time_s"]
    out["images_per_s_estimated"] = out["images_per_s"].isna() & est.notna()
    out["images_per_s"] = out["images_per_s"].where(out["images_per_s"].notna(), est)
    for name, cols in (("total_gpu_gb", _gpu_cols(out)), ("total_proc_gb", _proc_cols(out))):
        total = out[cols].sum(axis=1, min_count=1) if cols else pd.Series(math.nan, index=out.index)
        out[name] = total.where(done)
    cpu_fallback = (out["gpus_used"] == 0) & (out["gpus"] > 0)
    used = out["gpus_used"].where(~cpu_fallback, out["gpus"])
    used = used.where(used.notna(), out["gpus"])
    out["gpu_hours"] = (out["exec_time_s"] * used / 3600.0).where(done)
    out["gpu_hours_basis"] = np.where(cpu_fallback, "requested (ran on CPU)", np.where(done, "used", ""))
    base = _baseline_lookup(out[done], "exec_time_s")
    out["speedup"] = _speedup(out, "exec_time_s", base).where(done)
    out["efficiency"] = (out["speedup"] / out["gpus"].where(out["gpus"] > 0)).where(done)
    out["concurrent_with"] = concurrent_cells(out)
    return out


# --------------------------------------------------------------------------- aggregation


def main_split_kind(frame: pd.DataFrame) -> str:
    """The split the paper-shaped figures use: ``random`` if any cell used it (aslhpc's assumption for the
    study's unstated split method, docs/reproducing-2020.md)."""
    kinds = frame["split_kind"].dropna()
    if (kinds == "random").any() or kinds.empty:
        return "random"
    return str(kinds.value_counts().index[0])


def _state_summary(states: Iterable[str]) -> str:
    counts: dict[str, int] = {}
    for s in states:
        counts[s] = counts.get(s, 0) + 1
    if len(counts) == 1:
        ((s, c),) = counts.items()
        return s if c == 1 else f"{c} {s}"
    order = sorted(counts, key=lambda s: (s != CellState.COMPLETED, s))
    return ", ".join(f"{counts[s]} {s}" for s in order)


def summarize(cells: pd.DataFrame, ci: float = 0.95) -> pd.DataFrame:
    """One row per configuration: mean, ``<metric>_hw`` (Student-t half-width at ``ci``), ``n``.

    ``cells`` is :func:`derive` output. Configurations with no completed cell stay as rows
    with NaN figures and their holes' states, so tables can show them. ``speedup`` and
    ``efficiency`` are recomputed from the mean times (ratio of means); blocked-split
    accuracies (any split kind other than the main one) are attached to the main rows as
    ``test_acc_<kind>`` / ``val_acc_<kind>`` when both kinds exist. ``max_steps`` (the largest
    per-epoch batch cap) and ``concurrent`` ("<cell> with <cells> on <host>"; "" if none) carry
    what makes figures incomparable to the verdicts.
    """
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    metrics = [m for m in SUMMARY_METRICS if m in cells.columns] + _gpu_cols(cells) + _proc_cols(cells)
    allg = cells.groupby(CONFIG_KEYS, sort=True, dropna=False)
    base = pd.DataFrame(
        {
            "n_cells": allg.size(),
            "states": allg["state"].agg(_state_summary),
        }
    )
    done = cells[cells["state"] == CellState.COMPLETED]
    if {"concurrent_with", "cell_id", "host"} <= set(done.columns):
        partners = done["concurrent_with"].fillna("").astype(str)
        note = done["cell_id"].astype(str) + " with " + partners + " on " + done["host"].astype(str)
        done = done.assign(_concurrent=note.where(partners != "", ""))
    else:
        done = done.assign(_concurrent="")
    if "max_steps" not in done:
        done = done.assign(max_steps=math.nan)
    g = done.groupby(CONFIG_KEYS, sort=True, dropna=False)
    mean = g[metrics].mean()
    std = g[metrics].std(ddof=1)
    count = g[metrics].count()
    tq = {int(n): t_quantile(0.5 + ci / 2.0, n - 1) for n in np.unique(count.to_numpy()) if n >= 2}
    tfac = count.apply(lambda col: col.map(lambda n: tq.get(int(n), math.nan)))
    hw = tfac * std / np.sqrt(count.where(count > 0))
    hw.columns = [f"{c}_hw" for c in hw.columns]
    other = pd.DataFrame(
        {
            "n": g.size(),
            "data_parallel": g["data_parallel"].agg(
                lambda s: bool(s.dropna().mode().iloc[0]) if s.notna().any() else None
            ),
            "gpus_used": g["gpus_used"].min(),
            "n_batches": g["n_batches"].median(),
            "n_train": g["n_train"].median(),
            "n_val": g["n_val"].median(),
            "n_test": g["n_test"].median(),
            "gpu_mem_total_gb": g["gpu_mem_total_gb"].median(),
            "images_per_s_estimated": g["images_per_s_estimated"].any(),
            "max_steps": g["max_steps"].max(),
            "concurrent": g["_concurrent"].agg(lambda s: "; ".join(x for x in s if x)),
        }
    )
    summary = base.join(other).join(mean).join(hw)
    summary["n"] = summary["n"].fillna(0).astype("int64")
    summary["concurrent"] = summary["concurrent"].fillna("")
    summary["state"] = np.where(summary["n"] > 0, CellState.COMPLETED, summary["states"])
    summary = summary.reset_index()
    # Speed-up from mean times (ratio of means), not the mean of per-cell ratios.
    have = summary[summary["n"] > 0]
    summary["speedup"] = _speedup(summary, "exec_time_s", _baseline_lookup(have, "exec_time_s"))
    summary["efficiency"] = summary["speedup"] / summary["gpus"].where(summary["gpus"] > 0)
    summary = _attach_other_splits(summary)
    summary["ci_level"] = ci
    return summary


def other_split_kinds(summary: pd.DataFrame) -> list[str]:
    """Split kinds besides the main one whose accuracies sit in their own columns."""
    main = main_split_kind(summary)
    return sorted(str(k) for k in summary["split_kind"].dropna().unique() if k != main)


def _attach_other_splits(summary: pd.DataFrame) -> pd.DataFrame:
    main = main_split_kind(summary)
    kinds = other_split_kinds(summary)
    if not kinds or not (summary["split_kind"] == main).any():
        return summary
    join = ["batch_size", "gpus", "strategy", "pipeline"]
    for kind in kinds:
        names = {
            "n": f"n_{kind}",
            "val_acc": f"val_acc_{kind}",
            "val_acc_hw": f"val_acc_{kind}_hw",
            "test_acc": f"test_acc_{kind}",
            "test_acc_hw": f"test_acc_{kind}_hw",
        }
        sub = summary.loc[summary["split_kind"] == kind, [*join, *names]].rename(columns=names)
        summary = summary.merge(sub, on=join, how="left")
        summary.loc[summary["split_kind"] != main, list(names.values())] = np.nan
    return summary


# --------------------------------------------------------------------------- formatting


def fmt(mean: float, hw: float = math.nan, decimals: int = 2) -> str:
    """``mean`` or ``mean ± hw`` (hw shown only when it exists, i.e. n >= 2)."""
    if mean is None or not math.isfinite(mean):
        return "n/m"
    if hw is not None and math.isfinite(hw):
        return f"{mean:.{decimals}f} ± {hw:.{decimals}f}"
    return f"{mean:.{decimals}f}"


def gpu_label(n: int) -> str:
    return "1 GPU" if n == 1 else ("CPU" if n == 0 else f"{n} GPUs")


def row_label(gpus: int, suffix: str = "") -> str:
    """The paper's row names: "Using 1GPU" .. "Using 4GPU" (CPU cells: "Using CPU")."""
    base = "Using CPU" if gpus == 0 else f"Using {gpus}GPU"
    return f"{base} ({suffix})" if suffix else base


def _series_suffix(frame: pd.DataFrame, row: pd.Series) -> str:
    parts = []
    if frame["strategy"].nunique() > 1:
        parts.append(str(row["strategy"]))
    if frame["pipeline"].nunique() > 1:
        parts.append(str(row["pipeline"]))
    return ", ".join(parts)


def _cell(row: pd.Series, col: str, decimals: int) -> str:
    return fmt(row.get(col, math.nan), row.get(f"{col}_hw", math.nan), decimals)


def paper_tables(summary: pd.DataFrame) -> dict[int, pd.DataFrame]:
    """One table per batch size in the paper's shape, cells as strings.

    Columns: ``GPU 0 (GB, per-process)`` .. (as many as the largest GPU count: the peak memory of
    the cell's own process on each GPU, like the study's nvidia-smi process figures; "NA" where the
    cell used fewer GPUs, "n/m" where a used GPU was not measured, e.g. no NVML), then, when measured,
    ``Device-wide total (GB)`` (sum of the NVML device peaks, which include other processes and the
    fast pipeline's dataset) and ``Data on GPU (GB)`` (that dataset), ``Exec. Time (secs)``,
    ``Data Parallel``, ``Train Acc``, ``Valid Acc``, ``Test Acc``; then ``Test Acc (<kind>)``/``Valid
    Acc (<kind>)`` for other split kinds, and ``n`` (completed/expected runs) when any configuration has
    repeats. A configuration with no completed run shows its state in place of numbers.
    """
    main = main_split_kind(summary)
    rows = summary[summary["split_kind"] == main]
    n_gpu = max(int(summary["gpus"].max()) if len(summary) else 1, 1)
    pcols = proc_columns(n_gpu)
    extra_kinds = [k for k in other_split_kinds(summary) if f"test_acc_{k}" in summary.columns]
    show_n = bool((summary["n_cells"] > 1).any())
    device = _measured(summary, "total_gpu_gb")
    data = _measured(summary, "data_device_gb", positive=True)
    tables: dict[int, pd.DataFrame] = {}
    for bs, grp in rows.groupby("batch_size", sort=True):
        records = []
        for _, r in grp.sort_values(["gpus", "strategy", "pipeline"]).iterrows():
            rec: dict[str, str] = {"": row_label(int(r["gpus"]), _series_suffix(rows, r))}
            hole = int(r["n"]) == 0
            used = int(r["gpus"])
            for i, c in enumerate(pcols):
                if i >= used:
                    rec[paper_gpu_label(i)] = "NA"
                else:
                    rec[paper_gpu_label(i)] = r["state"] if hole else _cell(r, c, DECIMALS["gb"])
            if device:
                rec[DEVICE_TOTAL_LABEL] = r["state"] if hole else _cell(r, "total_gpu_gb", DECIMALS["gb"])
            if data:
                rec[DATA_ON_GPU_LABEL] = r["state"] if hole else _cell(r, "data_device_gb", DECIMALS["gb"])
            rec["Exec. Time (secs)"] = (
                r["state"] if hole else _cell(r, "exec_time_s", DECIMALS["exec_time_s"])
            )
            rec["Data Parallel"] = r["state"] if hole else data_parallel_label(r)
            for col, label in (
                ("train_acc", "Train Acc"),
                ("val_acc", "Valid Acc"),
                ("test_acc", "Test Acc"),
            ):
                rec[label] = r["state"] if hole else _cell(r, col, DECIMALS["acc"])
            for kind in extra_kinds:
                for col, label in (("test_acc", "Test Acc"), ("val_acc", "Valid Acc")):
                    key = f"{col}_{kind}"
                    nk = r.get(f"n_{kind}")
                    rec[f"{label} ({kind})"] = (
                        "not run"
                        if nk is None or not math.isfinite(nk) or nk == 0
                        else _cell(r, key, DECIMALS["acc"])
                    )
            if show_n:
                rec["n"] = f"{int(r['n'])}/{int(r['n_cells'])}"
            records.append(rec)
        tables[int(bs)] = pd.DataFrame.from_records(records).set_index("")
    return tables


def data_parallel_label(r: pd.Series) -> str:
    """"Yes", "No", or "No (why)" when the configuration asked for several GPUs and did not get them:
    from the GPUs it recorded using (``gpus_used``), so a CPU fallback is not read as a design choice."""
    dp = r.get("data_parallel")
    label = "Yes" if dp is True else "No" if dp is False else "n/m"
    used, asked = r.get("gpus_used"), r.get("gpus")
    if dp is True or used is None or asked is None or not math.isfinite(used) or not used < asked:
        return label
    of = f"{int(used)} of {int(asked)} GPU{'' if asked == 1 else 's'} used"
    return f"{label} (ran on CPU: {of})" if used == 0 else f"{label} ({of})"


def _measured(summary: pd.DataFrame, col: str, positive: bool = False) -> bool:
    """Whether any configuration has a figure for ``col`` (> 0 with ``positive``)."""
    if col not in summary:
        return False
    vals = pd.to_numeric(summary[col], errors="coerce").dropna()
    return bool((vals > 0).any() if positive else len(vals))


#: the tidy summary's columns worth reading in Markdown (summary.csv keeps them all)
SUMMARY_VIEW = [
    ("batch_size", "batch", None),
    ("gpus", "GPUs", None),
    ("strategy", "strategy", None),
    ("pipeline", "pipeline", None),
    ("split_kind", "split", None),
    ("n", "n", None),
    ("exec_time_s", "exec time (s)", 2),
    ("images_per_s", "images/s", 0),
    ("speedup", "speed-up vs 1 GPU", 2),
    ("efficiency", "efficiency T1/(N·TN)", 2),
    ("gpu_util_pct", "GPU util (%)", 0),
    ("total_proc_gb", "per-process total (GB)", 3),
    ("total_gpu_gb", "device-wide total (GB)", 3),
    ("data_device_gb", "data on GPU (GB)", 3),
    ("gpu_hours", "GPU-hours", 3),
    ("val_acc", "valid acc (%)", 2),
    ("test_acc", "test acc (%)", 2),
]


def _per_gpu_proc(r: pd.Series) -> str:
    """Mean process memory of each GPU the configuration used, e.g. ``1.548 / 1.520`` ("n/m" unmeasured)."""
    if int(r["n"]) == 0:
        return str(r["state"])
    used = int(r["gpus"])
    vals = [float(r.get(f"gpu{i}_proc_gb", math.nan)) for i in range(used)]
    if not used:
        return "NA"
    if not any(math.isfinite(v) for v in vals):
        return "n/m"
    return " / ".join(fmt(v, math.nan, DECIMALS["gb"]) for v in vals)


def summary_view(summary: pd.DataFrame) -> pd.DataFrame:
    """The tidy per-configuration frame as readable strings (mean ± half-width)."""
    records = []
    extra = [f"test_acc_{k}" for k in other_split_kinds(summary) if f"test_acc_{k}" in summary.columns]
    for _, r in summary.iterrows():
        rec: dict[str, str] = {}
        for col, label, dec in SUMMARY_VIEW:
            if col not in summary:
                continue
            if dec is None:
                rec[label] = str(r[col])
            elif int(r["n"]) == 0:
                rec[label] = str(r["state"])
            else:
                rec[label] = _cell(r, col, dec)
            if col == "total_proc_gb":
                rec["per-process per GPU (GB)"] = _per_gpu_proc(r)
        for c in extra:
            rec[f"test acc {c[len('test_acc_') :]} (%)"] = _cell(r, c, 2) if math.isfinite(r[c]) else ""
        if r.get("gpus_used") == 0 and r["gpus"] > 0:
            rec["GPU-hours"] += " (requested; ran on CPU)"
            for label in ("speed-up vs 1 GPU", "efficiency T1/(N·TN)"):
                rec[label] += " (CPU run)"
        records.append(rec)
    return pd.DataFrame.from_records(records)


#: the identity columns of a configuration, shown in the compact views only where they vary
VARYING_KEYS = (("strategy", "strategy"), ("pipeline", "pipeline"), ("split_kind", "split"))

#: at most this many columns in :func:`main_view` (batch, GPUs, 3 varying keys, runs, time, accuracy,
#: memory, GPU-hours, state): the table must stay readable in a terminal and on GitHub
MAIN_VIEW_MAX_COLUMNS = 11


def _cpu_fallback(r: pd.Series) -> bool:
    used = r.get("gpus_used")
    return used is not None and math.isfinite(used) and used == 0 and r["gpus"] > 0


def _gpus_label(r: pd.Series) -> str:
    return str(int(r["gpus"])) + (" (ran on CPU)" if _cpu_fallback(r) else "")


def _constant(summary: pd.DataFrame, col: str) -> str | None:
    """The one value ``col`` takes in every row (None where it varies or is absent)."""
    if col not in summary or summary.empty:
        return None
    vals = summary[col].astype(str).unique()
    return str(vals[0]) if len(vals) == 1 else None


def _finite(v: object) -> float | None:
    """``v`` as a float, None where it is missing or not finite."""
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def acc_with_interval(r: pd.Series, col: str = "test_acc") -> str:
    """An accuracy with its interval: ``mean ± hw`` over repeats, else ``value [a, b]`` (the block bootstrap
    the verdicts used, or the Wilson interval on the test images), as the verdicts weigh it."""
    mean = r.get(col, math.nan)
    if mean is None or not math.isfinite(mean):
        return "n/m"
    if int(r.get("n", 0)) > 1:
        return _cell(r, col, DECIMALS["acc"])
    lo, hi = _finite(r.get(f"{col}_lo")), _finite(r.get(f"{col}_hi"))
    n_test = _finite(r.get("n_test"))
    if (lo is None or hi is None) and n_test is not None and n_test > 0:
        a, b = wilson_interval(mean / 100.0, int(n_test), float(r.get("ci_level", 0.95) or 0.95))
        lo, hi = 100.0 * a, 100.0 * b
    if lo is None or hi is None:
        return fmt(mean, math.nan, DECIMALS["acc"])
    return f"{mean:.2f} [{lo:.2f}, {hi:.2f}]"


def memory_column(summary: pd.DataFrame) -> tuple[str, str]:
    """(summary column, label) of the peak GPU memory the compact table shows: the per-process total (the
    study's figure) where any configuration measured it, else the device-wide NVML total."""
    if _measured(summary, "total_proc_gb"):
        return "total_proc_gb", "peak GPU memory (GB, per-process total)"
    return "total_gpu_gb", "peak GPU memory (GB, device-wide total)"


def shared_settings(summary: pd.DataFrame, cells: pd.DataFrame | None = None) -> list[str]:
    """What every configuration shares, said once above the compact tables instead of as a column of
    identical values: strategy, pipeline, split, the epochs trained (from ``cells``) and the state."""
    out = []
    for col, label in VARYING_KEYS:
        if (v := _constant(summary, col)) is not None:
            out.append(f"{label} `{v}`")
    if cells is not None and {"state", "epochs"} <= set(cells.columns):
        done = cells["state"] == CellState.COMPLETED
        epochs = pd.to_numeric(cells.loc[done, "epochs"], errors="coerce").dropna()
        if len(epochs) and epochs.nunique() == 1:
            out.append(f"{int(epochs.iloc[0])} epochs")
    if (state := _constant(summary, "state")) is not None:
        out.append(f"all {state}")
    return out


def _keys(summary: pd.DataFrame, r: pd.Series) -> dict[str, str]:
    rec = {"batch": str(int(r["batch_size"])), "GPUs": _gpus_label(r)}
    for col, label in VARYING_KEYS:
        if col in summary and _constant(summary, col) is None:
            rec[label] = str(r[col])
    return rec


def main_view(summary: pd.DataFrame) -> pd.DataFrame:
    """The figures that decide the study, one row per configuration (holes show their state): runs,
    exec time and test accuracy with their intervals, peak GPU memory, GPU-hours. Columns that would
    hold one value in every row are left out (:func:`shared_settings` says them once)."""
    mem_col, mem_label = memory_column(summary)
    show_state = _constant(summary, "state") is None
    records = []
    for _, r in summary.iterrows():
        rec = _keys(summary, r)
        hole = int(r["n"]) == 0
        rec["runs"] = f"{int(r['n'])}/{int(r['n_cells'])}"
        rec["exec time (s)"] = str(r["state"]) if hole else _cell(r, "exec_time_s", DECIMALS["exec_time_s"])
        rec["test acc (%)"] = str(r["state"]) if hole else acc_with_interval(r)
        if hole:
            rec[mem_label] = str(r["state"])
        elif int(r["gpus"]) == 0 or _cpu_fallback(r):
            rec[mem_label] = "NA"
        else:
            rec[mem_label] = _cell(r, mem_col, DECIMALS["gb"])
        hours = _cell(r, "gpu_hours", 3) if not hole else str(r["state"])
        rec["GPU-hours"] = hours + (" (requested)" if not hole and _cpu_fallback(r) else "")
        if show_state:
            rec["state"] = str(r["state"])
        records.append(rec)
    return pd.DataFrame.from_records(records)


#: the detail table's figures: (summary column, label, decimals)
DETAIL_VIEW = (
    ("images_per_s", "images/s", 0),
    ("speedup", "speed-up vs 1 GPU", 2),
    ("efficiency", "efficiency T1/(N·TN)", 2),
    ("gpu_util_pct", "GPU util (%)", 0),
    ("total_gpu_gb", "device-wide total (GB)", 3),
    ("data_device_gb", "data on GPU (GB)", 3),
    ("val_acc", "valid acc (%)", 2),
)


def details_view(summary: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The rest of the per-configuration figures, for the configurations that completed: throughput,
    scaling, utilisation, memory per GPU and device-wide, validation accuracy (and other splits' test
    accuracy). Columns measured nowhere are dropped; their labels come back to be named once."""
    done = summary[summary["n"] > 0]
    extra = [f"test_acc_{k}" for k in other_split_kinds(summary) if f"test_acc_{k}" in summary.columns]
    records = []
    for _, r in done.iterrows():
        rec = _keys(summary, r)
        for col, label, dec in DETAIL_VIEW:
            if col in summary:
                rec[label] = _cell(r, col, dec)
            if col == "gpu_util_pct":
                rec["per-process per GPU (GB)"] = _per_gpu_proc(r)
        if _cpu_fallback(r):
            for label in ("speed-up vs 1 GPU", "efficiency T1/(N·TN)"):
                rec[label] += " (CPU run)"
        for c in extra:
            rec[f"test acc {c[len('test_acc_') :]} (%)"] = _cell(r, c, 2) if math.isfinite(r[c]) else ""
        records.append(rec)
    frame = pd.DataFrame.from_records(records)
    keys = {"batch", "GPUs", *(label for _, label in VARYING_KEYS)}
    unmeasured = [c for c in frame.columns if c not in keys and frame[c].isin(["n/m", "NA", ""]).all()]
    return frame.drop(columns=unmeasured), unmeasured


#: the time breakdown's parts: (column, label)
BREAKDOWN_PARTS = (
    ("time_data_wait_s", "waiting for data"),
    ("time_compute_s", "compute"),
    ("time_eval_s", "validation"),
    ("time_other_s", "other"),
)


def has_breakdown(summary: pd.DataFrame) -> bool:
    """Whether any configuration recorded where its time went (result.json ``time_breakdown``)."""
    cols = [c for c, _ in BREAKDOWN_PARTS if c in summary]
    return bool(cols) and bool(summary[cols].notna().any().any())


def data_wait_share(r: pd.Series) -> float:
    """Waiting for the next batch as a share (0..1) of the training loop (waiting + compute)."""
    wait, comp = r.get("time_data_wait_s", math.nan), r.get("time_compute_s", math.nan)
    if wait is None or comp is None or not (math.isfinite(wait) and math.isfinite(comp)) or wait + comp <= 0:
        return math.nan
    return wait / (wait + comp)


def breakdown_view(summary: pd.DataFrame) -> pd.DataFrame:
    """Per configuration with a recorded breakdown: seconds and share of each part, GPU utilisation."""
    records = []
    main = summary[(summary["split_kind"] == main_split_kind(summary)) & (summary["n"] > 0)]
    for _, r in main.iterrows():
        parts = [(label, float(r.get(col, math.nan))) for col, label in BREAKDOWN_PARTS]
        total = sum(v for _, v in parts if math.isfinite(v))
        if total <= 0:
            continue
        rec: dict[str, str] = {
            "batch": str(int(r["batch_size"])),
            "GPUs": str(int(r["gpus"]))
            + (" (ran on CPU)" if r.get("gpus_used") == 0 and r["gpus"] > 0 else "")
            # cells that shared a host at the same time waited on each other: their parts are contended
            + (" (contended)" if isinstance(r.get("concurrent"), str) and r.get("concurrent") else ""),
            "pipeline": str(r["pipeline"]),
        }
        for label, v in parts:
            rec[f"{label} (s)"] = fmt(v, math.nan, 2)
            rec[f"{label} (%)"] = fmt(v / total * 100, math.nan, 0) if math.isfinite(v) else "n/m"
        share = data_wait_share(r)
        rec["data wait / training loop (%)"] = (
            fmt(share * 100, math.nan, 0) if math.isfinite(share) else "n/m"
        )
        util = r.get("gpu_util_pct", math.nan)
        rec["GPU util (%)"] = fmt(util, math.nan, 0) if util is not None and math.isfinite(util) else "n/m"
        records.append(rec)
    return pd.DataFrame.from_records(records)


def comparison_tables(summary: pd.DataFrame, reference: pd.DataFrame, *,
                      not_run: bool = True) -> dict[int, pd.DataFrame]:
    """Per batch size: this run beside the published 2020 figures, matched on GPU count.

    Columns prefixed "2020" are the published reference (not measured by aslhpc);
    "time / 2020" < 1 means this run was faster. Memory compares per-process totals with per-process
    totals (``reference`` must carry the 2020 figures as ``gpu<i>_proc_gb``, see
    ``report.reference_cells``). ``not_run=False`` leaves out the reference configurations this run
    has no row for (:func:`reference_only` lists them; a batch size with none left has no table).
    """
    main = summary[summary["split_kind"] == main_split_kind(summary)]
    ref = reference.set_index(["batch_size", "gpus"])
    out: dict[int, pd.DataFrame] = {}
    for bs in sorted(set(main["batch_size"]) | set(reference["batch_size"])):
        records = []
        ours = main[main["batch_size"] == bs]
        counts = sorted(set(ours["gpus"]) | set(reference.loc[reference["batch_size"] == bs, "gpus"]))
        for n in counts:
            ref_row = ref.loc[(bs, n)] if (bs, n) in ref.index else None
            if isinstance(ref_row, pd.DataFrame):
                ref_row = ref_row.iloc[0]
            mine = ours[ours["gpus"] == n]
            if mine.empty and not not_run:
                continue
            if mine.empty:
                mine = pd.DataFrame([{"gpus": n, "n": 0, "state": "not run", "strategy": "", "pipeline": ""}])
            for _, r in mine.iterrows():
                has = int(r["n"]) > 0
                suffix = _series_suffix(main, r) if has else ""
                if has and _cpu_fallback(r):
                    suffix = ", ".join(p for p in (suffix, "ran on CPU") if p)
                rec = {"": row_label(int(n), suffix)}

                def mine_or_state(col: str, dec: int, r: pd.Series = r, has: bool = has) -> str:
                    return _cell(r, col, dec) if has else str(r["state"])

                def ref_val(col: str, dec: int, ref_row: pd.Series | None = ref_row) -> str:
                    if ref_row is None:
                        return "—"
                    return fmt(ref_row[col], math.nan, dec)

                rec["Exec. Time (secs)"] = mine_or_state("exec_time_s", 2)
                rec["2020 Exec. Time (secs)"] = ref_val("exec_time_s", 2)
                ratio = r["exec_time_s"] / ref_row["exec_time_s"] if has and ref_row is not None else math.nan
                rec["time / 2020"] = fmt(ratio, math.nan, 2) if math.isfinite(ratio) else "—"
                rec["Speed-up"] = mine_or_state("speedup", 2)
                rec["2020 Speed-up"] = ref_val("speedup", 2)
                rec["Per-process total (GB)"] = mine_or_state("total_proc_gb", 3)
                rec["2020 Per-process total (GB)"] = ref_val("total_proc_gb", 3)
                rec["Test Acc"] = mine_or_state("test_acc", 2)
                rec["2020 Test Acc"] = ref_val("test_acc", 2)
                records.append(rec)
        if records:
            out[int(bs)] = pd.DataFrame.from_records(records).set_index("")
    return out


def reference_only(summary: pd.DataFrame, reference: pd.DataFrame) -> list[tuple[int, int]]:
    """(batch size, GPU count) of the reference configurations this run has no row for (not in its
    matrix at all: a hole of this run is a row, with its state), sorted."""
    main = summary[summary["split_kind"] == main_split_kind(summary)] if len(summary) else summary
    ours = {(int(b), int(g)) for b, g in zip(main["batch_size"], main["gpus"], strict=True)}
    theirs = {(int(b), int(g)) for b, g in zip(reference["batch_size"], reference["gpus"], strict=True)}
    return sorted(theirs - ours)


def _counts(gpus: Sequence[int]) -> str:
    """GPU counts compactly: "1–4 GPUs", "3, 4 GPUs", "2 GPUs", "1 GPU"."""
    gs = sorted(set(gpus))
    if len(gs) == 1:
        return gpu_label(gs[0])
    run = gs == list(range(gs[0], gs[-1] + 1)) and len(gs) > 2
    return (f"{gs[0]}–{gs[-1]}" if run else ", ".join(str(g) for g in gs)) + " GPUs"


def configs_line(configs: Sequence[tuple[int, int]]) -> str:
    """(batch size, GPUs) pairs in one phrase, by batch size: "b=128 × 3, 4 GPUs; b=512 × 1–4 GPUs"."""
    by: dict[int, list[int]] = {}
    for bs, g in configs:
        by.setdefault(int(bs), []).append(int(g))
    return "; ".join(f"b={bs} × {_counts(gs)}" for bs, gs in sorted(by.items()))


def to_markdown(frame: pd.DataFrame, index: bool = True) -> str:
    """A GitHub-flavoured Markdown table (pandas' to_markdown needs tabulate; this does not)."""

    def cell(v: object) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        if isinstance(v, float):
            return f"{v:.6g}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    headers: list[str] = ([str(frame.index.name or "")] if index else []) + [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    values = frame.to_numpy(dtype=object)
    idx: Sequence[object] = list(frame.index) if index else []
    for i, row in enumerate(values):
        cells = ([cell(idx[i])] if index else []) + [cell(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
