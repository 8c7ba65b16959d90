"""Which configuration to run: the cheapest in GPU-hours within X % of the fastest, and the fastest
within a GPU-hour budget, over the configurations measured and those the scaling model predicts.

A measured configuration is one this run completed on the GPUs it asked for (a CPU fallback is not a
GPU figure); a predicted one is a GPU count the fit did not see (``predictions.csv``), labelled so. Time
is a cell's wall clock (Exec. Time), GPU-hours = GPUs × that time / 3600. Pure functions over frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from aslhpc.analysis.tables import gpu_label

SERIES = ["strategy", "pipeline", "split"]
CANDIDATE_COLUMNS = ["batch_size", "gpus", *SERIES, "time_s", "gpu_hours", "source"]


def candidates(summary: pd.DataFrame, predictions: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every configuration with a time: measured ones from ``summary`` (GPU runs only), then predicted
    GPU counts from ``predictions`` that were not measured (:data:`CANDIDATE_COLUMNS`)."""
    s = summary.rename(columns={"split_kind": "split"})
    ok = s["exec_time_s"].notna() & (s["gpus"] > 0)
    if "gpus_used" in s:
        ok &= ~(s["gpus_used"] < s["gpus"])  # a CPU fallback's time says nothing about GPUs
    measured = s[ok].assign(time_s=s["exec_time_s"], gpu_hours=s["gpus"] * s["exec_time_s"] / 3600.0,
                            source="measured")
    frames = [measured.reindex(columns=CANDIDATE_COLUMNS)]
    if predictions is not None and len(predictions):
        p = predictions[~predictions["measured"].astype(bool)]
        frames.append(p.assign(time_s=p["predicted_time_s"], source="predicted")
                      .reindex(columns=CANDIDATE_COLUMNS))
    parts = [f for f in frames if len(f)]
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=CANDIDATE_COLUMNS)
    out = out.dropna(subset=["batch_size", "gpus", "time_s", "gpu_hours"])  # nothing to rank without them
    return out.sort_values(["time_s", "gpu_hours"], kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class Recommendation:
    fastest: pd.Series | None
    cheapest_within: pd.Series | None  # the fewest GPU-hours with time <= (1 + within) x the fastest's
    within: float
    within_budget: pd.Series | None = None  # the fastest with GPU-hours <= budget
    budget_gpu_hours: float | None = None

    def lines(self) -> list[str]:
        """The recommendation in words, with the figures that decide it (report.md, verdicts.json)."""
        if self.fastest is None:
            return []
        return [f"fastest: {describe(self.fastest)}", *self._choices("it", "the same configuration")]

    def console_lines(self) -> list[str]:
        """What collect's summary adds (its "Fastest:" line already names the fastest): the cheaper
        choice within X %, and the fastest within the budget."""
        if self.fastest is None:
            return []
        return [c[:1].upper() + c[1:] for c in self._choices("the fastest", "the fastest itself")]

    def _choices(self, fastest: str, same: str) -> list[str]:
        """The cheapest within X % of ``fastest`` (``same`` when that is the fastest itself), then the
        fastest within the budget when one was given."""
        f, c, out = self.fastest, self.cheapest_within, []
        if c is not None:
            head = f"cheapest within {self.within * 100:g} % of {fastest}"
            if c.name == f.name:
                out.append(f"{head}: {same}")
            else:
                slower = c["time_s"] / f["time_s"] - 1.0
                saved = 1.0 - c["gpu_hours"] / f["gpu_hours"]
                out.append(f"{head}: {describe(c)}, {slower * 100:.1f} % slower for "
                           f"{saved * 100:.0f} % fewer GPU-hours")
        if self.budget_gpu_hours is not None:
            b = self.within_budget
            out.append(f"fastest within {self.budget_gpu_hours:g} GPU-hours: "
                       + (describe(b) if b is not None else "none (every configuration costs more)"))
        return out


def describe(row: pd.Series) -> str:
    """``b=256 × 3 GPUs: 2,028.7 s, 1.69 GPU-hours (measured)``."""
    return (f"b={int(row['batch_size'])} × {gpu_label(int(row['gpus']))}: {row['time_s']:,.1f} s, "
            f"{row['gpu_hours']:.2f} GPU-hours ({row['source']})")


def recommend(cands: pd.DataFrame, within: float = 0.10,
              budget_gpu_hours: float | None = None) -> Recommendation:
    """The fastest candidate; the cheapest within ``within`` of its time; the fastest within a budget."""
    if cands.empty:
        return Recommendation(None, None, within, None, budget_gpu_hours)
    fastest = cands.loc[cands["time_s"].idxmin()]
    near = cands[cands["time_s"] <= fastest["time_s"] * (1.0 + within)]
    cheapest = near.loc[near["gpu_hours"].idxmin()]
    best = None
    if budget_gpu_hours is not None and math.isfinite(budget_gpu_hours):
        fits = cands[cands["gpu_hours"] <= budget_gpu_hours]
        best = fits.loc[fits["time_s"].idxmin()] if len(fits) else None
    return Recommendation(fastest, cheapest, within, best, budget_gpu_hours)
