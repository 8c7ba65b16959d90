"""Per-cell figures the matrix frame does not carry, taken from each completed cell's result.json
(as :mod:`aslhpc.snapshot` read it), only for the columns the frame lacks, so a matrix that gains them
wins:

* ``gpu_util_pct``: mean GPU utilisation (NVML, %) over the GPUs the cell used
  (``telemetry.gpus[i].util_mean_pct``); NaN without NVML.
* ``time_data_wait_s``, ``time_compute_s``, ``time_eval_s``, ``time_other_s``: where the cell's
  time went (``time_breakdown`` in result.json, summed over epochs); NaN when the trainer did
  not record it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from aslhpc.states import CellState

BREAKDOWN_KEYS = ("data_wait_s", "compute_s", "eval_s", "other_s")
BREAKDOWN_COLUMNS = tuple(f"time_{k}" for k in BREAKDOWN_KEYS)
EXTRA_COLUMNS = ("gpu_util_pct", *BREAKDOWN_COLUMNS)


def _num(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return math.nan
    return float(v) if math.isfinite(v) else math.nan


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


def attach_extras(cells: pd.DataFrame, results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """``cells`` with the :data:`EXTRA_COLUMNS` it lacks, from ``results`` (cell_id -> result.json) for its
    completed cells; NaN elsewhere."""
    missing = [c for c in EXTRA_COLUMNS if c not in cells.columns]
    if not missing or cells.empty:
        return cells
    values: dict[str, list[float]] = {c: [] for c in missing}
    for cid, state in zip(cells["cell_id"], cells["state"], strict=True):
        res = results.get(str(cid)) if state == CellState.COMPLETED else None
        row = extras_from_result(res) if isinstance(res, Mapping) else {}
        for c in missing:
            values[c].append(row.get(c, math.nan))
    out = cells.copy()
    for c in missing:
        out[c] = pd.Series(values[c], index=cells.index, dtype="float64")
    return out
