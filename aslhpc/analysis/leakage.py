"""How much of the accuracy is leakage: the random split's test accuracy minus the blocked one's.

The ASL Alphabet images are consecutive video frames, so a ``random`` split puts a near-identical
neighbour of every test image into training; ``blocked`` tests on contiguous frame blocks the model
never saw neighbours of (the leakage-free reading). An experiment with a ``splits`` axis trains every
configuration on both, with the same seed; this module pairs them per configuration (batch size, GPU
count, strategy, pipeline) and gives the gap with its interval:

* with repeats (>= 2 runs on both splits), repeat r of one split is paired with repeat r of the other
  (same seed): mean of the paired differences ± Student-t half-width;
* with one run each, the gap's only noise is binomial, from the test images: Newcombe's interval for a
  difference of two proportions, built from the two Wilson intervals (:func:`tables.wilson_interval`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from aslhpc.analysis.tables import gpu_label, t_quantile, wilson_interval
from aslhpc.states import CellState

LEAKY = "random"
LEAK_FREE = "blocked"
#: how the blocked split is named wherever its figures appear
LEAK_FREE_LABEL = "leakage-free reading"
GAP_KEYS = ["batch_size", "gpus", "strategy", "pipeline"]
GAP_COLUMNS = [*GAP_KEYS, "random_test_acc", "blocked_test_acc", "gap_pp", "gap_low", "gap_high", "n",
               "interval"]


def split_label(kind: str) -> str:
    """``blocked (leakage-free reading)``, ``random (test frames have training neighbours)``."""
    if kind == LEAK_FREE:
        return f"{kind} ({LEAK_FREE_LABEL})"
    if kind == LEAKY:
        return f"{kind} (test frames have neighbours in training)"
    return kind


def has_both(cells: pd.DataFrame) -> bool:
    """True when the matrix holds cells of both split kinds (an experiment with a splits axis)."""
    kinds = set(cells["split_kind"].dropna().astype(str))
    return {LEAKY, LEAK_FREE} <= kinds


def newcombe(p1: float, n1: int, p2: float, n2: int, level: float = 0.95) -> tuple[float, float]:
    """Interval of p1 - p2 (proportions on n1, n2 trials) from the two Wilson intervals (Newcombe 1998,
    method 10): sensible at 0 and 1, where the plain normal interval collapses."""
    l1, u1 = wilson_interval(p1, n1, level)
    l2, u2 = wilson_interval(p2, n2, level)
    d = p1 - p2
    return d - math.hypot(p1 - l1, u2 - p2), d + math.hypot(u1 - p1, p2 - l2)


def _pair(random: pd.DataFrame, blocked: pd.DataFrame, ci: float) -> dict[str, object]:
    """One configuration's gap from its completed cells of each split."""
    r = random.groupby("repeat")["test_acc"].mean().dropna()
    b = blocked.groupby("repeat")["test_acc"].mean().dropna()
    common = sorted(set(r.index) & set(b.index))
    row: dict[str, object] = {"random_test_acc": r.mean() if len(r) else math.nan,
                              "blocked_test_acc": b.mean() if len(b) else math.nan, "n": len(common),
                              "gap_pp": math.nan, "gap_low": math.nan, "gap_high": math.nan, "interval": ""}
    if not common:
        return row
    diffs = np.array([r[i] - b[i] for i in common], dtype=float)
    gap = float(diffs.mean())
    row["gap_pp"] = gap
    if len(common) >= 2:
        hw = t_quantile(0.5 + ci / 2.0, len(common) - 1) * float(diffs.std(ddof=1)) / math.sqrt(len(common))
        row.update(gap_low=gap - hw, gap_high=gap + hw, interval=f"paired t over {len(common)} repeats")
        return row
    n_r = random["n_test"].dropna()
    n_b = blocked["n_test"].dropna()
    if len(n_r) and len(n_b):
        (i,) = common
        lo, hi = newcombe(r[i] / 100, int(n_r.iloc[0]), b[i] / 100, int(n_b.iloc[0]), ci)
        row.update(gap_low=100 * lo, gap_high=100 * hi,
                   interval=f"Wilson/Newcombe on {int(n_r.iloc[0])} and {int(n_b.iloc[0])} test images")
    return row


def gap_table(cells: pd.DataFrame, ci: float = 0.95) -> pd.DataFrame:
    """One row per configuration that has cells of both splits: random and blocked test accuracy (%),
    ``gap_pp`` = random - blocked (percentage points) with ``gap_low``/``gap_high``, ``n`` paired runs and
    how the interval was made. A configuration without a completed pair has NaN figures."""
    done = cells[cells["state"] == CellState.COMPLETED]
    rows = []
    for key, grp in cells.groupby(GAP_KEYS, sort=True, dropna=False):
        if set(grp["split_kind"]) < {LEAKY, LEAK_FREE}:
            continue
        mine = done.loc[done.index.isin(grp.index)]
        row = _pair(mine[mine["split_kind"] == LEAKY], mine[mine["split_kind"] == LEAK_FREE], ci)
        rows.append({**dict(zip(GAP_KEYS, key, strict=True)), **row})
    return pd.DataFrame(rows, columns=GAP_COLUMNS)


def _config(r: pd.Series, multi: bool) -> str:
    label = f"b={int(r['batch_size'])} × {gpu_label(int(r['gpus']))}"
    return f"{label} ({r['strategy']}, {r['pipeline']})" if multi else label


def gap_view(gap: pd.DataFrame) -> pd.DataFrame:
    """The gap table as report.md shows it (strings)."""
    multi = gap[["strategy", "pipeline"]].nunique().max() > 1 if len(gap) else False

    def pct(v: float) -> str:
        return f"{v:.2f}" if math.isfinite(v) else "n/m"

    rows = []
    for _, r in gap.iterrows():
        ok = math.isfinite(r["gap_low"])
        rows.append({
            "configuration": _config(r, multi),
            "Test Acc random (%)": pct(r["random_test_acc"]),
            f"Test Acc blocked, {LEAK_FREE_LABEL} (%)": pct(r["blocked_test_acc"]),
            "gap (pp)": f"{r['gap_pp']:+.2f}" if math.isfinite(r["gap_pp"]) else "n/m",
            "interval (pp)": f"[{r['gap_low']:+.2f}, {r['gap_high']:+.2f}]" if ok else "",
            "from": r["interval"],
        })
    return pd.DataFrame(rows)


def gap_sentence(gap: pd.DataFrame) -> str:
    """One sentence: how much of the test accuracy the random split adds ("" without a measured gap)."""
    have = gap[gap["gap_pp"].notna()] if len(gap) else gap
    if have.empty:
        return ""
    mean = float(have["gap_pp"].mean())
    rnd, blk = float(have["random_test_acc"].mean()), float(have["blocked_test_acc"].mean())
    clear = int((have["gap_low"] > 0).sum())
    spread = (f", from {have['gap_pp'].min():+.2f} to {have['gap_pp'].max():+.2f} pp per configuration"
              if len(have) > 1 else "")
    n = len(have)
    return (f"The random split adds {mean:+.2f} percentage points of test accuracy: {rnd:.2f} % against "
            f"{blk:.2f} % on the blocked split, the {LEAK_FREE_LABEL} (mean over {n} configuration"
            f"{'s' if n != 1 else ''}{spread}; the gap's interval lies above zero in {clear} of {n}).")


def gap_line(gap: pd.DataFrame, h1: dict[str, str] | None = None) -> str:
    """collect's one console line for the gap (and H1 per split); "" without a measured gap."""
    have = gap[gap["gap_pp"].notna()] if len(gap) else gap
    if have.empty:
        return ""
    mean = float(have["gap_pp"].mean())
    if len(have) == 1:
        r = have.iloc[0]
        span = f" [{r['gap_low']:+.2f}, {r['gap_high']:+.2f}]" if math.isfinite(r["gap_low"]) else ""
    else:
        span = f" (per configuration {have['gap_pp'].min():+.2f} to {have['gap_pp'].max():+.2f})"
    verdicts = "; H1: " + ", ".join(f"{k} {v}" for k, v in h1.items()) if h1 else ""
    return (f"Leakage: random − blocked test accuracy {mean:+.2f} pp{span}, blocked = "
            f"{LEAK_FREE_LABEL}{verdicts}")


def plot_gap(gap: pd.DataFrame, path: object) -> object:
    """The gap per configuration with its interval, as a bar chart (plots/leakage_gap.png)."""
    from pathlib import Path

    from matplotlib.figure import Figure

    from aslhpc.analysis.plots import _save

    have = gap[gap["gap_pp"].notna()].reset_index(drop=True)
    multi = gap[["strategy", "pipeline"]].nunique().max() > 1 if len(gap) else False
    fig = Figure(figsize=(max(5.0, 0.9 * len(have) + 2.5), 4.4))
    ax = fig.add_subplot()
    x = np.arange(len(have))
    low = (have["gap_pp"] - have["gap_low"]).fillna(0).clip(lower=0)
    high = (have["gap_high"] - have["gap_pp"]).fillna(0).clip(lower=0)
    ax.bar(x, have["gap_pp"], yerr=[low, high], capsize=4, color="tab:red", alpha=0.75)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels([_config(r, multi) for _, r in have.iterrows()], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("random − blocked test accuracy (pp)")
    ax.set_title("Accuracy the random split adds over the blocked (leakage-free) one\n"
                 "error bars: paired t over repeats, else Wilson/Newcombe on the test images", fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    fig.subplots_adjust(left=0.14, right=0.97, bottom=0.3, top=0.86)
    return _save(fig, Path(str(path)))
