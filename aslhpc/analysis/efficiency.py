"""What each cell asked for against what it used (seff/jobstats for the matrix), with a plain hint.

Per cell: CPU efficiency (CPU time / (cores x elapsed), from sacct's ``TotalCPU`` where accounting
has it, else the cell's own sampled CPU utilisation), peak RSS against the requested memory, GPU
utilisation and GPU memory against the GPUs requested, and GPU-hours charged (GPUs x elapsed)
against useful (weighted by utilisation). GPU columns are empty, with the reason, where no GPU was
sampled (CPU cells). The 2020 study's conclusion 2 was that the GPUs sat mostly idle: this is
where a rerun shows whether they still do.

Pure functions (plain records in, a frame out): :mod:`aslhpc.snapshot` reads the manifest, the cells'
result.json and, optionally, one ``sacct`` call, and hands them here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

COLUMNS = ("cell", "cores", "elapsed_s", "cpu_eff_pct", "cpu_from", "mem_req_gb", "rss_peak_gb", "mem_pct",
           "mem_at_limit",
           "gpus", "gpu_util_pct", "gpu_mem_peak_gb", "gpu_mem_total_gb", "gpu_h_charged", "gpu_h_useful",
           "hint")
#: a request this many times what was used is "clearly too large" (and worth a hint)
TOO_LARGE = 4.0
#: a peak at this share of the memory asked for is "too small": the job is at its limit (SLURM's cgroup
#: kills it, OUT_OF_MEMORY, when its memory passes the request), as seff flags it
TOO_SMALL = 0.9


@dataclass(frozen=True)
class Usage:
    """One finished cell: what it asked for and what it used (None: not measured)."""

    cell: str
    cores: int  # CPUs the job had (cpus per task x tasks x nodes)
    mem_req_gb: float  # memory requested, all nodes
    gpus: int  # GPUs requested
    elapsed_s: float | None
    cpu_time_s: float | None = None  # sacct TotalCPU
    cpu_util_pct: float | None = None  # the cell's own sampled CPU utilisation (telemetry.cpu)
    rss_peak_gb: float | None = None
    gpu_util_pct: float | None = None  # mean over the GPUs sampled
    gpu_mem_peak_gb: float | None = None  # the largest per-GPU peak
    gpu_mem_total_gb: float | None = None
    no_gpu_reason: str = ""  # why there are no GPU figures (telemetry.reason)


def _pct(num: float | None, den: float | None) -> float | None:
    if num is None or not den:
        return None
    return 100.0 * num / den


def cpu_efficiency(u: Usage) -> tuple[float | None, str]:
    """(percent, source): sacct's TotalCPU / (cores x elapsed) where it has one, else the sampled mean."""
    if u.cpu_time_s is not None and u.elapsed_s:
        return _pct(u.cpu_time_s, u.cores * u.elapsed_s), "sacct"
    if u.cpu_util_pct is not None:
        return u.cpu_util_pct, "sampled"
    return None, ""


def memory_too_small(u: Usage) -> bool:
    """The RSS peak reached :data:`TOO_SMALL` of the request (or passed it)."""
    return bool(u.rss_peak_gb and u.mem_req_gb and u.rss_peak_gb >= TOO_SMALL * u.mem_req_gb)


def hint(u: Usage) -> str:
    """A plain-language line when a request was clearly too large or too small (else '')."""
    out = []
    if memory_too_small(u):
        want = max(math.ceil(u.rss_peak_gb * 1.5), math.ceil(u.mem_req_gb) + 1)
        over = "above" if u.rss_peak_gb > u.mem_req_gb else "near"
        out.append(f"peaked at {u.rss_peak_gb:.1f} GB, {over} the {u.mem_req_gb:g} GB asked: the job is at "
                   f"its memory limit (SLURM ends it OUT_OF_MEMORY past it); --mem {want}G")
    elif u.rss_peak_gb and u.mem_req_gb >= TOO_LARGE * u.rss_peak_gb and u.mem_req_gb - u.rss_peak_gb >= 1:
        want = max(1, math.ceil(u.rss_peak_gb * 1.5))
        out.append(f"asked {u.mem_req_gb:g} GB, peaked at {u.rss_peak_gb:.1f} GB: --mem {want}G would do")
    eff, _ = cpu_efficiency(u)
    if eff is not None and u.cores > 1 and eff * TOO_LARGE <= 100:
        need = max(1, math.ceil(u.cores * eff / 100 * 1.5))
        out.append(f"used {eff:.0f}% of {u.cores} CPUs: about {need} would do")
    if u.gpus and u.gpu_util_pct is not None and u.gpu_util_pct * TOO_LARGE <= 100:
        out.append(f"the {u.gpus} GPU(s) were {u.gpu_util_pct:.0f}% busy on average")
    return "; ".join(out)


def efficiency_frame(usages: Iterable[Usage]) -> pd.DataFrame:
    """One row per cell, columns :data:`COLUMNS`; NaN where not measured."""
    rows = []
    for u in usages:
        eff, source = cpu_efficiency(u)
        hours = (u.elapsed_s or 0) / 3600 if u.elapsed_s is not None else None
        charged = u.gpus * hours if hours is not None and u.gpus else None
        useful = None
        if charged is not None and u.gpu_util_pct is not None:
            useful = charged * u.gpu_util_pct / 100
        rows.append({
            "cell": u.cell, "cores": u.cores, "elapsed_s": u.elapsed_s, "cpu_eff_pct": eff,
            "cpu_from": source, "mem_req_gb": u.mem_req_gb, "rss_peak_gb": u.rss_peak_gb,
            "mem_pct": _pct(u.rss_peak_gb, u.mem_req_gb), "mem_at_limit": memory_too_small(u),
            "gpus": u.gpus, "gpu_util_pct": u.gpu_util_pct, "gpu_mem_peak_gb": u.gpu_mem_peak_gb,
            "gpu_mem_total_gb": u.gpu_mem_total_gb, "gpu_h_charged": charged, "gpu_h_useful": useful,
            "hint": "; ".join(x for x in (hint(u), f"no GPU figures: {u.no_gpu_reason}"
                                          if u.gpus and u.no_gpu_reason else "") if x)})
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["mem_at_limit"] = frame["mem_at_limit"].astype(bool)  # never NaN: memory_too_small says False
    for col in COLUMNS:
        if col not in ("cell", "cpu_from", "hint", "mem_at_limit"):
            frame[col] = pd.to_numeric(frame[col], errors="coerce")  # None -> NaN: not measured
    return frame


def compact(row: pd.Series) -> str:
    """One short line for status: ``CPU 23% | RSS 1.1/16 GB | GPU 41%``."""
    parts = []
    if pd.notna(row["cpu_eff_pct"]):
        parts.append(f"CPU {row['cpu_eff_pct']:.0f}%")
    if pd.notna(row["rss_peak_gb"]):
        limit = " (at limit)" if bool(row.get("mem_at_limit", False)) else ""
        parts.append(f"RSS {row['rss_peak_gb']:.1f}/{row['mem_req_gb']:g} GB{limit}")
    parts.append(f"GPU {row['gpu_util_pct']:.0f}%" if pd.notna(row["gpu_util_pct"]) else "GPU -")
    return " | ".join(parts)


def markdown(frame: pd.DataFrame) -> list[str]:
    """The report's section: the table, then the hints."""
    if frame.empty:
        return []

    def f(v: Any, fmt: str) -> str:
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

    lines = ["## What each cell used", "",
             "Requested vs used (CPU efficiency = CPU time / (cores x elapsed); GPU-hours charged = GPUs x "
             "elapsed, useful = charged x mean GPU utilisation).", "",
             "| cell | cores | CPU eff | mem asked (GB) | RSS peak (GB) | GPUs | GPU util | "
             "GPU mem peak (GB) | GPU-h charged | GPU-h useful |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for _, r in frame.iterrows():
        eff = f(r["cpu_eff_pct"], ".0f")
        lines.append(f"| {r['cell']} | {r['cores']} | {eff + '%' if eff else ''} ({r['cpu_from']}) | "
                     f"{f(r['mem_req_gb'], 'g')} | {f(r['rss_peak_gb'], '.2f')} | {r['gpus']} | "
                     f"{f(r['gpu_util_pct'], '.0f')} | {f(r['gpu_mem_peak_gb'], '.2f')} | "
                     f"{f(r['gpu_h_charged'], '.3f')} | {f(r['gpu_h_useful'], '.3f')} |")
    hints = [f"- {r['cell']}: {r['hint']}" for _, r in frame.iterrows() if r["hint"]]
    return lines + ([""] + hints if hints else []) + [""]


# --------------------------------------------------------------------------- reading an experiment


def parse_duration_s(text: str) -> float | None:
    """sacct's ``[D-]HH:MM:SS`` / ``MM:SS.mmm`` -> seconds; None for ''/unknown."""
    text = (text or "").strip()
    if not text or text in ("INVALID", "Unknown"):
        return None
    days, _, rest = text.rpartition("-")
    try:
        parts = [float(p) for p in rest.split(":")]
        while len(parts) < 3:
            parts.insert(0, 0.0)
        return (int(days) if days else 0) * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]
    except ValueError:
        return None


def parse_rss_gb(text: str) -> float | None:
    """sacct's ``MaxRSS`` (``123456K``, ``1.5G``, bare bytes) in the paper's GB (MiB / 1000)."""
    text = text.strip()
    if not text:
        return None
    scale = {"K": 1 / 1024, "M": 1.0, "G": 1024.0, "T": 1024.0**2}
    try:
        mib = float(text[:-1]) * scale[text[-1].upper()] if text[-1].isalpha() else float(text) / 2**20
    except (KeyError, ValueError):
        return None
    return round(mib / 1000, 3)


def parse_sacct_usage(text: str) -> dict[str, tuple]:
    """job id -> (TotalCPU s, Elapsed s, MaxRSS GB) from ``sacct --parsable2 -n -o
    JobID,TotalCPU,Elapsed,MaxRSS`` output: CPU time and elapsed from the allocation row (a step's row,
    ``123.batch``, is part of its job's), MaxRSS the largest of its steps' (only steps have one)."""
    out: dict[str, list] = {}
    for line in text.splitlines():
        job, _, rest = line.partition("|")
        if not rest:
            continue
        cpu, _, rest = rest.partition("|")
        elapsed, _, rss = rest.partition("|")
        base = job.split(".", 1)[0]
        entry = out.setdefault(base, [None, None, None])
        if "." not in job:
            entry[0], entry[1] = parse_duration_s(cpu), parse_duration_s(elapsed)
        gb = parse_rss_gb(rss)
        if gb is not None and (entry[2] is None or gb > entry[2]):
            entry[2] = gb
    return {job: tuple(v) for job, v in out.items() if v[0] is not None or v[1] is not None}


def usage_from_result(cell: str, cores: int, mem_req_gb: float, gpus: int, res: Mapping[str, Any],
                      acct: tuple[float | None, float | None, float | None] | None) -> Usage:
    """One cell's :class:`Usage`: its request (cores, memory, GPUs) against its result.json's telemetry,
    with sacct's (TotalCPU, Elapsed, MaxRSS) where accounting had the job."""
    tel = res.get("telemetry") or {}
    cpu = tel.get("cpu") or {}
    gpu_list = [g for g in tel.get("gpus") or [] if isinstance(g, dict)]
    utils = [g["util_mean_pct"] for g in gpu_list if isinstance(g.get("util_mean_pct"), int | float)]
    peaks = [g["mem_peak_gb"] for g in gpu_list if isinstance(g.get("mem_peak_gb"), int | float)]
    totals = [g["mem_total_gb"] for g in gpu_list if isinstance(g.get("mem_total_gb"), int | float)]
    elapsed = acct[1] if acct and acct[1] else res.get("exec_time_s")
    # the memory peak: the cell's own samples, or sacct's MaxRSS where that is higher (the samples are a
    # few seconds apart and can miss a spike that SLURM's cgroup accounting saw)
    rss = [x for x in (cpu.get("rss_peak_gb"), acct[2] if acct else None)
           if isinstance(x, int | float)]
    return Usage(cell, cores, mem_req_gb, gpus, float(elapsed) if isinstance(elapsed, int | float) else None,
                 acct[0] if acct else None, cpu.get("util_mean_pct"), max(rss, default=None),
                 sum(utils) / len(utils) if utils else None, max(peaks, default=None),
                 max(totals, default=None), "" if gpu_list else str(tel.get("reason") or "no GPU sampled"))


def plot_usage(frame: pd.DataFrame, path: Path) -> Path | None:
    """Requested vs used per cell, as a picture: memory asked against the RSS peak, and CPU efficiency
    beside GPU utilisation (where measured). None when no cell has a figure to draw."""
    if frame.empty or not frame[["rss_peak_gb", "cpu_eff_pct", "gpu_util_pct"]].notna().any().any():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from aslhpc.analysis.plots import _save

    cells = frame["cell"].astype(str).tolist()
    x = list(range(len(cells)))
    fig, (mem, eff) = plt.subplots(1, 2, figsize=(max(8.0, 0.9 * len(cells) + 4), 4.2))
    w = 0.4
    mem.bar([i - w / 2 for i in x], frame["mem_req_gb"].fillna(0), w, label="asked (--mem)")
    mem.bar([i + w / 2 for i in x], frame["rss_peak_gb"].fillna(0), w, label="peak RSS (used)")
    at_limit = frame["mem_at_limit"].tolist()
    hot = [i for i, a in zip(x, at_limit, strict=True) if a]
    if hot:  # a request that was too small, drawn as visibly as one too large
        peaks = [float(frame["rss_peak_gb"].iloc[i]) for i in hot]
        mem.bar([i + w / 2 for i in hot], peaks, w, color="tab:red", label="RSS at limit")
        for i, peak in zip(hot, peaks, strict=True):
            mem.annotate("at limit", (i + w / 2, peak), ha="center", va="bottom", fontsize=7, color="tab:red")
    mem.set_ylabel("GB")
    mem.set_title("Memory: asked vs used", fontsize=10)
    eff.bar([i - w / 2 for i in x], frame["cpu_eff_pct"].fillna(0), w, label="CPU efficiency")
    gpu = frame["gpu_util_pct"]
    if gpu.notna().any():
        eff.bar([i + w / 2 for i in x], gpu.fillna(0), w, label="mean GPU utilisation")
        eff.set_title("CPU efficiency and GPU utilisation", fontsize=10)
    else:  # CPU cells: there is no GPU figure, and a zero bar would read as an idle GPU
        eff.set_title("CPU efficiency (GPU utilisation: not measured)", fontsize=10)
    eff.set_ylabel("%")
    # sampled CPU % is of one core: a multi-threaded cell can pass 100 % of a 1-core request
    top = pd.concat([frame["cpu_eff_pct"], gpu]).max()
    eff.set_ylim(0, max(105.0, float(top) * 1.15 if pd.notna(top) else 105.0))
    mem.set_ylim(0, float(frame[["mem_req_gb", "rss_peak_gb"]].max().max() or 1.0) * 1.3)
    for ax in (mem, eff):
        ax.set_xticks(x)
        ax.set_xticklabels(cells, rotation=45, ha="right", fontsize=7)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", ncol=2)
    fig.suptitle("What each cell used (measured by aslhpc)", fontsize=11)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.24, top=0.86, wspace=0.25)
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)
