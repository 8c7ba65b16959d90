"""Two experiments side by side (``collect --compare``): the 2020 reference overlay generalised to any
other measured run, e.g. last month's, another cluster's, another pipeline's.

Pure functions over the two summaries (:func:`aslhpc.analysis.tables.summarize`): per configuration both
completed, each side's exec time, test accuracy and peak GPU memory with the relative difference; the
configurations only one side completed, listed once. Reading the other experiment is the driver's
(:mod:`aslhpc.collecting`, through :func:`aslhpc.snapshot.load_snapshot`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from aslhpc.analysis.tables import (
    CONFIG_KEYS,
    DECIMALS,
    VARYING_KEYS,
    fmt,
    gpu_label,
    memory_column,
)

#: the figures compared: (summary column, label, decimals, difference kind)
COMPARED = (
    ("exec_time_s", "time (s)", DECIMALS["exec_time_s"], "relative"),
    ("test_acc", "test acc (%)", DECIMALS["acc"], "points"),
)


#: the memory figure's label, after :data:`COMPARED`'s
MEMORY_LABEL = "peak memory (GB)"
#: every compared figure's label, in the view's order (each starts its columns' names)
COMPARED_LABELS = (*(label for _, label, *_ in COMPARED), MEMORY_LABEL)


@dataclass(frozen=True)
class ExperimentComparison:
    """This experiment against another: the configurations both completed (one row each, the two sides'
    figures as ``<metric>_this`` / ``<metric>_other`` with ``_hw``), and those only one side completed."""

    this_name: str
    this_dir: Path
    other_name: str
    other_dir: Path
    both: pd.DataFrame
    only_this: pd.DataFrame
    only_other: pd.DataFrame
    #: the memory figure compared: ``total_proc_gb`` where both sides measured it, else ``total_gpu_gb``
    memory: str = "total_proc_gb"

    def labels(self) -> tuple[str, str]:
        """Column labels of the two sides: their names, or "this"/"other" when the names are the same."""
        if self.this_name != self.other_name:
            return self.this_name, self.other_name
        return "this", "other"


def _done(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[summary["n"] > 0]


def _memory(a: pd.DataFrame, b: pd.DataFrame) -> str:
    """The memory figure both sides can be compared on (per-process where both measured it)."""
    col_a, col_b = memory_column(a)[0], memory_column(b)[0]
    return col_a if col_a == col_b else "total_gpu_gb"


def compare_experiments(summary: pd.DataFrame, other: pd.DataFrame, *, this_name: str, this_dir: Path,
                        other_name: str, other_dir: Path) -> ExperimentComparison:
    """Match the two summaries on the configuration (batch size, GPUs, strategy, pipeline, split)."""
    mem = _memory(summary, other)
    metrics = [m for m, *_ in COMPARED] + [mem]
    cols = [*CONFIG_KEYS, "n", "gpus_used"]
    sides = []
    for frame in (summary, other):
        done = _done(frame)
        keep = cols + [c for m in metrics for c in (m, f"{m}_hw") if c in done.columns]
        sides.append(done[keep].copy())
    a, b = sides
    merged = a.merge(b, on=CONFIG_KEYS, how="outer", suffixes=("_this", "_other"), indicator=True)
    merged = merged.sort_values(CONFIG_KEYS, ignore_index=True)
    both = merged[merged["_merge"] == "both"].drop(columns="_merge").reset_index(drop=True)
    for m in metrics:
        for side in ("this", "other"):
            for c in (f"{m}_{side}", f"{m}_hw_{side}"):
                if c not in both:
                    both[c] = math.nan
    only = {side: merged.loc[merged["_merge"] == f"{which}_only", CONFIG_KEYS].reset_index(drop=True)
            for side, which in (("this", "left"), ("other", "right"))}
    return ExperimentComparison(this_name, this_dir, other_name, other_dir, both, only["this"],
                                only["other"], mem)


def _ran_on_cpu(r: pd.Series, side: str) -> bool:
    used = r.get(f"gpus_used_{side}")
    return used is not None and math.isfinite(used) and used == 0 and r["gpus"] > 0


def _value(r: pd.Series, m: str, side: str, dec: int) -> str:
    text = fmt(r.get(f"{m}_{side}", math.nan), r.get(f"{m}_hw_{side}", math.nan), dec)
    return text + (" (CPU)" if _ran_on_cpu(r, side) else "")


def _difference(r: pd.Series, m: str, kind: str) -> str:
    a, b = r.get(f"{m}_this", math.nan), r.get(f"{m}_other", math.nan)
    if not (math.isfinite(a) and math.isfinite(b)):
        return "n/m"
    if kind == "points":
        return f"{b - a:+.2f} pp"
    return f"{(b - a) / a * 100:+.1f} %" if a else "n/m"


def _varying(frame: pd.DataFrame) -> list[tuple[str, str]]:
    return [(c, label) for c, label in VARYING_KEYS if c in frame and frame[c].astype(str).nunique() > 1]


def comparison_view(c: ExperimentComparison) -> pd.DataFrame:
    """The configurations both completed, as strings: each side's figure, then other − this (times and
    memory relative to this run, accuracy in percentage points)."""
    this, other = c.labels()
    figures = [*COMPARED, (c.memory, MEMORY_LABEL, DECIMALS["gb"], "relative")]
    keys = _varying(pd.concat([c.both, c.only_this, c.only_other]))
    records = []
    for _, r in c.both.iterrows():
        rec = {"batch": str(int(r["batch_size"])), "GPUs": str(int(r["gpus"]))}
        rec.update({label: str(r[col]) for col, label in keys})
        for m, label, dec, kind in figures:
            rec[f"{label} {this}"] = _value(r, m, "this", dec)
            rec[f"{label} {other}"] = _value(r, m, "other", dec)
            rec[f"{label} Δ"] = _difference(r, m, kind)
        records.append(rec)
    return pd.DataFrame.from_records(records)


def configurations(frame: pd.DataFrame) -> str:
    """Configurations as one phrase: "b=128 × 3 GPUs, b=512 × 1 GPU (ddp)"."""
    keys = _varying(frame)
    parts = []
    for _, r in frame.iterrows():
        extra = "/".join(str(r[col]) for col, _ in keys)
        label = f"b={int(r['batch_size'])} × {gpu_label(int(r['gpus']))}"
        parts.append(label + (f" ({extra})" if extra else ""))
    return ", ".join(parts)
