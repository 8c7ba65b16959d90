"""An acceptance check: this run's figures against an expected table, within a tolerance (as ReFrame
compares figures of merit with references).

The expected table is in the reference CSV format (``results/reference/lad2020.csv``: batch_size, gpus,
exec_time_s, test_acc, gpu0_gb..gpu3_gb): last month's run, another cluster, the 2020 table. Every figure
is compared relative to its expected value (``5 %`` = within 0.95..1.05 of it), for time, test accuracy and
total GPU memory where both sides have it. Pure functions over frames: collect prints and exits with them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from aslhpc.analysis.tables import gpu_label

#: (column, what it is, unit, word when above the expected value, word when below)
FIGURES = (
    ("exec_time_s", "time", "s", "slower", "faster"),
    ("test_acc", "test accuracy", "%", "more accurate", "less accurate"),
    ("total_gpu_gb", "GPU memory", "GB", "more memory", "less memory"),
)
CHECK_COLUMNS = ["batch_size", "gpus", "figure", "unit", "measured", "expected", "deviation", "direction",
                 "outside"]


def parse_tolerance(text: str) -> float:
    """``5%``, ``5 %`` or ``0.05`` -> 0.05; a ValueError naming the accepted forms otherwise."""
    t = str(text).strip()
    try:
        value = float(t[:-1]) / 100.0 if t.endswith("%") else float(t)
    except ValueError:
        raise ValueError(f"tolerance {text!r} is not a number; write e.g. 5% or 0.05") from None
    if not (math.isfinite(value) and 0 <= value < 1):
        raise ValueError(f"tolerance {text!r} must be from 0 % to under 100 %; write e.g. 5%")
    return value


def expected_figures(expected: pd.DataFrame) -> pd.DataFrame:
    """The expected table (load_reference's frame) with ``total_gpu_gb`` = the sum of its per-GPU figures
    (NaN where it has none), one row per (batch_size, gpus)."""
    gpu_cols = [c for c in expected.columns if c.startswith("gpu") and c.endswith("_gb")]
    out = expected[["batch_size", "gpus", "exec_time_s", "test_acc"]].copy()
    mem = expected[gpu_cols].apply(pd.to_numeric, errors="coerce") if gpu_cols else pd.DataFrame()
    out["total_gpu_gb"] = mem.sum(axis=1, min_count=1) if gpu_cols else math.nan
    return out.groupby(["batch_size", "gpus"], as_index=False).mean(numeric_only=True)


def check_expected(summary: pd.DataFrame, expected: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """One row per (configuration, figure) both sides have (:data:`CHECK_COLUMNS`); ``outside`` where
    |measured / expected - 1| > tolerance. ``summary``: analysis' per-configuration summary (its mean
    figures); configurations with several strategies or pipelines are each compared."""
    exp = expected_figures(expected)
    merged = summary.merge(exp, on=["batch_size", "gpus"], suffixes=("", "_expected"))
    rows = []
    for _, r in merged.iterrows():
        for col, what, unit, above, below in FIGURES:
            got, want = r.get(col), r.get(f"{col}_expected")
            if not (_finite(got) and _finite(want)) or want == 0:
                continue
            dev = float(got) / float(want) - 1.0
            rows.append({"batch_size": int(r["batch_size"]), "gpus": int(r["gpus"]), "figure": what,
                         "unit": unit, "measured": float(got), "expected": float(want), "deviation": dev,
                         "direction": above if dev > 0 else below if dev < 0 else "equal",
                         "outside": abs(dev) > tolerance + 1e-12})
    return pd.DataFrame.from_records(rows, columns=CHECK_COLUMNS)


def not_measured(summary: pd.DataFrame, expected: pd.DataFrame) -> list[tuple[int, int]]:
    """Configurations of the expected table this run has no figures for (listed, not failed)."""
    have = {(int(b), int(g)) for b, g in zip(summary["batch_size"], summary["gpus"], strict=True)}
    want = {(int(b), int(g)) for b, g in zip(expected["batch_size"], expected["gpus"], strict=True)}
    return sorted(want - have)


@dataclass(frozen=True)
class Acceptance:
    checks: pd.DataFrame
    missing: list[tuple[int, int]]
    tolerance: float
    source: str

    @property
    def passed(self) -> bool:
        """No compared figure outside the tolerance (configurations not measured do not fail it)."""
        return not bool(self.checks["outside"].any()) if len(self.checks) else True

    def lines(self) -> list[str]:
        """Each figure outside the tolerance, then the verdict line; what collect prints."""
        tol = f"±{self.tolerance * 100:g} %"
        out = []
        for _, r in self.checks[self.checks["outside"]].iterrows():
            out.append(f"  b={r['batch_size']} × {gpu_label(r['gpus'])}: {r['figure']} "
                       f"{r['measured']:,.2f} {r['unit']} vs expected {r['expected']:,.2f} {r['unit']}: "
                       f"{abs(r['deviation']) * 100:.1f} % {r['direction']} (outside {tol})")
        configs = {(b, g) for b, g in zip(self.checks["batch_size"], self.checks["gpus"], strict=True)}
        bad = {(r["batch_size"], r["gpus"]) for _, r in self.checks[self.checks["outside"]].iterrows()}
        head = (f"acceptance against {self.source}: {len(bad)} of {len(configs)} configuration(s) outside "
                f"{tol}" if bad else
                f"acceptance against {self.source}: all {len(configs)} configuration(s) within {tol}")
        out.insert(0, head)
        if self.missing:
            out.append("  not measured here (not checked): " + ", ".join(
                f"b={b} × {gpu_label(g)}" for b, g in self.missing))
        return out


def accept(summary: pd.DataFrame, expected: pd.DataFrame, tolerance: float, source: str) -> Acceptance:
    """The whole check: figures compared, configurations not measured, the tolerance and the table's name."""
    return Acceptance(check_expected(summary, expected, tolerance), not_measured(summary, expected),
                      tolerance, source)


def _finite(value: object) -> bool:
    try:
        return math.isfinite(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
