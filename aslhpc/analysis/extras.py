"""Per-cell figures the matrix frame does not carry (yet), read from each completed cell's result.json.

``matrix.load_matrix`` is owned elsewhere and its columns are fixed; what the analysis also
needs is read here, only for the columns the frame lacks, so a matrix that gains them wins:

* ``gpu_util_pct``: mean GPU utilisation (NVML, %) over the GPUs the cell used
  (``telemetry.gpus[i].util_mean_pct``); NaN without NVML.
* ``time_data_wait_s``, ``time_compute_s``, ``time_eval_s``, ``time_other_s``: where the cell's
  time went (``time_breakdown`` in result.json, summed over epochs); NaN when the trainer did
  not record it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from aslhpc import cellfiles
from aslhpc.atomic import read_json

BREAKDOWN_KEYS = ("data_wait_s", "compute_s", "eval_s", "other_s")
BREAKDOWN_COLUMNS = tuple(f"time_{k}" for k in BREAKDOWN_KEYS)
EXTRA_COLUMNS = ("gpu_util_pct", *BREAKDOWN_COLUMNS)


def _num(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return math.nan
    return float(v) if math.isfinite(v) else math.nan


def _cell_dirs(exp_dir: Path) -> dict[str, Path]:
    """cell_id -> directory, from the manifest's out_dir where it names one."""
    out: dict[str, Path] = {}
    try:
        manifest = read_json(exp_dir / "manifest.json")
    except (OSError, ValueError):
        manifest = None
    cells = manifest.get("cells") if isinstance(manifest, Mapping) else None
    if isinstance(cells, Mapping):
        for cid, entry in cells.items():
            rel = entry.get("out_dir") if isinstance(entry, Mapping) else None
            out[str(cid)] = exp_dir / (rel or f"cells/{cid}")
    return out


def extras_from_result(res: Mapping[str, Any]) -> dict[str, float]:
    """The :data:`EXTRA_COLUMNS` of one result.json (NaN where absent)."""
    row = dict.fromkeys(EXTRA_COLUMNS, math.nan)
    tel = res.get("telemetry")
    used = res.get("gpus_used")
    if isinstance(tel, Mapping) and tel.get("nvml") and isinstance(tel.get("gpus"), list):
        n = int(used) if isinstance(used, int) and not isinstance(used, bool) else len(tel["gpus"])
        utils = [_num(g.get("util_mean_pct")) for g in tel["gpus"][:n] if isinstance(g, Mapping)]
        utils = [u for u in utils if math.isfinite(u)]
        if utils:
            row["gpu_util_pct"] = sum(utils) / len(utils)
    tb = res.get("time_breakdown")
    if isinstance(tb, Mapping):
        for key, col in zip(BREAKDOWN_KEYS, BREAKDOWN_COLUMNS, strict=True):
            row[col] = _num(tb.get(key))
    return row


def attach_extras(cells: pd.DataFrame, exp_dir: str | Path) -> pd.DataFrame:
    """``cells`` with the :data:`EXTRA_COLUMNS` it lacks, read from each completed cell's result.json."""
    missing = [c for c in EXTRA_COLUMNS if c not in cells.columns]
    if not missing or cells.empty:
        return cells
    exp_dir = Path(exp_dir)
    dirs = _cell_dirs(exp_dir)
    values: dict[str, list[float]] = {c: [] for c in missing}
    for cid, state in zip(cells["cell_id"], cells["state"], strict=True):
        row: dict[str, float] = {}
        if state == "completed":
            path = dirs.get(str(cid), exp_dir / "cells" / str(cid)) / cellfiles.RESULT
            try:
                res = read_json(path)
            except (OSError, ValueError):
                res = None
            if isinstance(res, Mapping):
                row = extras_from_result(res)
        for c in missing:
            values[c].append(row.get(c, math.nan))
    out = cells.copy()
    for c in missing:
        out[c] = pd.Series(values[c], index=cells.index, dtype="float64")
    return out
