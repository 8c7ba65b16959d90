"""The 2020 study's section-7 conclusions (fastest, most accurate, their memory), computed.

The hypotheses themselves are decided in :mod:`aslhpc.analysis.verdicts` (one registered class each);
their names are re-exported here for the callers that import them from this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from aslhpc.analysis.tables import gpu_label
from aslhpc.analysis.verdicts import (
    H4_READING,
    INCONCLUSIVE,
    METRIC_NAMES,
    NOT_SUPPORTED,
    PAPER_VERDICTS,
    SUPPORTED,
    Point,
    Verdict,
    capped,
    compare,
    completed,
    evaluate,
    h4_literal_steps,
    shared_host,
)

__all__ = ["H4_READING", "INCONCLUSIVE", "METRIC_NAMES", "NOT_SUPPORTED", "PAPER_VERDICTS", "SUPPORTED",
           "Conclusions", "Point", "Verdict", "compare", "conclusions", "evaluate", "h4_literal_steps"]


# --------------------------------------------------------------------------- conclusions


@dataclass(frozen=True)
class Conclusions:
    """The paper's section-7 conclusions, computed: fastest, most accurate, their memory."""

    fastest: str | None
    fastest_time_s: float
    fastest_time_hw: float
    fastest_mem_total_gb: float
    fastest_mem_per_gpu_gb: tuple[float, ...]
    most_accurate: str | None
    most_accurate_test_acc: float
    most_accurate_mem_total_gb: float
    most_accurate_mem_per_gpu_gb: tuple[float, ...]
    text: str


def _label(r: pd.Series, multi: bool) -> str:
    s = f"{int(r['batch_size'])} × {gpu_label(int(r['gpus']))}"
    return s + (f" ({r['strategy']}/{r['pipeline']})" if multi else "")


def _memory(r: pd.Series) -> tuple[float, tuple[float, ...], str]:
    """(total, per GPU, "per-process" | "device-wide"): the per-process peaks the study compared, else
    the device-wide ones, labelled."""
    n = int(r["gpus"])
    proc = tuple(float(r.get(f"gpu{i}_proc_gb", math.nan)) for i in range(n))
    if any(math.isfinite(v) for v in proc):
        return float(r.get("total_proc_gb", math.nan)), proc, "per-process"
    dev = tuple(float(r.get(f"gpu{i}_gb", math.nan)) for i in range(n))
    return float(r.get("total_gpu_gb", math.nan)), dev, "device-wide"


def _mem_text(total: float, per: tuple[float, ...], kind: str) -> str:
    if not math.isfinite(total):
        return "memory not measured"
    return (
        f"{total:.3f} GB {kind} in total ("
        + " + ".join("n/m" if not math.isfinite(v) else f"{v:.3f}" for v in per)
        + " GB per GPU)"
    )


def _paired_row(paired: pd.DataFrame | None, a: pd.Series, b: pd.Series) -> pd.Series | None:
    """McNemar's row between two single-run configurations that differ only in batch size (None if none)."""
    if paired is None or paired.empty or int(a["n"]) != 1 or int(b["n"]) != 1:
        return None
    if any(a[k] != b[k] for k in ("gpus", "strategy", "pipeline", "split_kind")):
        return None
    lo, hi = sorted((int(a["batch_size"]), int(b["batch_size"])))
    rows = paired[(paired["gpus"] == a["gpus"]) & (paired["strategy"] == a["strategy"])
                  & (paired["pipeline"] == a["pipeline"]) & (paired["split_kind"] == a["split_kind"])
                  & (paired["batch_a"] == lo) & (paired["batch_b"] == hi)]
    return rows.iloc[0] if len(rows) == 1 else None


def _most_accurate(
    acc: pd.DataFrame, multi: bool, paired: pd.DataFrame | None = None, alpha: float = 0.05
) -> tuple[pd.Series | None, float, float, tuple[float, ...], list[str]]:
    """The most accurate configuration, its test accuracy and memory, and the sentences about it; against
    the runner-up on the same test images McNemar's exact test decides whether it is ahead."""
    if acc.empty:
        return None, math.nan, math.nan, (), ["No test accuracy was recorded."]
    ranked = acc.sort_values(["test_acc", "val_acc", "exec_time_s"], ascending=[False, False, True])
    a = ranked.iloc[0]
    ap = Point.of(a, "test_acc")
    atotal, aper, akind = _memory(a)
    parts = [
        f"The most accurate is batch size {_label(a, multi)} with {ap.show(' %')} test accuracy, using "
        f"{_mem_text(atotal, aper, akind)}."
    ]
    bp = Point.of(ranked.iloc[1], "test_acc") if len(ranked) > 1 else None
    pair = _paired_row(paired, a, ranked.iloc[1]) if bp is not None else None
    if pair is not None:
        runner = _label(ranked.iloc[1], multi)
        ahead = "It is ahead of" if pair["p_value"] < alpha else "It is not clearly ahead of"
        parts.append(f"{ahead} {runner} ({bp.show(' %')}) by McNemar's exact test on the same test images "
                     f"(p = {pair['p_value']:.3g}, α = {alpha:g}).")
    elif bp is not None and compare(ap, bp) in ("overlap", "eq"):
        if ap.has_interval or bp.has_interval:
            why = "the difference is inside the intervals" + (
                " (Wilson, on the test images)" if ap.kind == "wilson" else ""
            )
        else:
            why = "a single run per configuration: no interval to tell them apart"
        runner = _label(ranked.iloc[1], multi)
        parts.append(f"It is not clearly ahead of {runner} ({bp.show(' %')}): {why}.")
    return a, ap.mean, atotal, aper, parts


def conclusions(summary: pd.DataFrame, paired: pd.DataFrame | None = None,
                alpha: float = 0.05) -> Conclusions:
    """Fastest configuration (lowest mean exec time), most accurate (highest mean test
    accuracy; ties broken by validation accuracy, then time), and the memory each used."""
    done = completed(summary, "exec_time_s")
    if done.empty:
        nan = math.nan
        return Conclusions(
            None,
            nan,
            nan,
            nan,
            (),
            None,
            nan,
            nan,
            (),
            "No configuration has completed yet, so nothing can be concluded.",
        )
    multi = done.groupby(["strategy", "pipeline"]).ngroups > 1
    by_time = done.sort_values(["exec_time_s", "gpus"])
    f = by_time.iloc[0]
    fp = Point.of(f, "exec_time_s")
    ftotal, fper, fkind = _memory(f)
    parts = [
        f"The fastest configuration is batch size {_label(f, multi)} at {fp.show(' s')}, using "
        f"{_mem_text(ftotal, fper, fkind)}."
    ]
    cap = float(f.get("gpu_mem_total_gb", math.nan))
    if math.isfinite(cap) and cap > 0 and fper and all(math.isfinite(v) for v in fper):
        share = max(fper) / cap
        idle = ", so most of each GPU's memory sat idle, as the paper concluded" if share < 0.5 else ""
        parts.append(f"Its busiest GPU peaked at {share * 100:.0f} % of the {cap:.1f} GB each GPU has{idle}.")
    if len(by_time) > 1:
        s = by_time.iloc[1]
        sp = Point.of(s, "exec_time_s")
        if compare(fp, sp) == "overlap":
            parts.append(
                f"Its interval overlaps the runner-up {_label(s, multi)} ({sp.show(' s')}), so the ranking "
                "is not certain."
            )
        else:
            parts.append(f"The runner-up is {_label(s, multi)} at {sp.show(' s')}.")
    acc = done[done["test_acc"].notna()]
    a, aacc, atotal, aper, more = _most_accurate(acc, multi, paired, alpha)
    parts += more
    slowest = by_time.iloc[-1]
    parts.append(
        f"Across the {len(done)} completed configurations execution time spans "
        f"{fp.mean:.2f}–{float(slowest['exec_time_s']):.2f} s and test accuracy "
        f"{float(acc['test_acc'].min()) if not acc.empty else math.nan:.2f}–{aacc:.2f} %."
    )
    for caveat in (shared_host(done), capped(done)):
        if caveat:
            parts.append(f"Caveat: {caveat[0].upper()}{caveat[1:]}.")
    return Conclusions(
        fastest=_label(f, multi),
        fastest_time_s=fp.mean,
        fastest_time_hw=fp.hw,
        fastest_mem_total_gb=ftotal,
        fastest_mem_per_gpu_gb=fper,
        most_accurate=_label(a, multi) if a is not None else None,
        most_accurate_test_acc=aacc,
        most_accurate_mem_total_gb=atotal,
        most_accurate_mem_per_gpu_gb=aper,
        text=" ".join(parts),
    )
