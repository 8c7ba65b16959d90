"""The study's figures, redrawn from the per-configuration summary.

Matplotlib is driven through ``matplotlib.figure.Figure`` (PNG via Agg, no pyplot state
machine, no global backend switch) so collect can run on a login node without a display and from
threads; each PNG is
rendered to memory and written with :func:`aslhpc.atomic.atomic_write_bytes`, so a
report never links a half-written image.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from aslhpc.analysis.reference import REFERENCE_LABEL
from aslhpc.analysis.stats import wilson_interval
from aslhpc.analysis.tables import BREAKDOWN_PARTS, gpu_label, has_breakdown, main_split_kind
from aslhpc.atomic import atomic_write_bytes

PLOT_FILES = {
    "time": "time_vs_gpus.png",
    "time_batch": "time_vs_batch.png",
    "accuracy": "accuracy_vs_batch.png",
    "memory": "memory_per_gpu.png",
    "throughput": "throughput_efficiency.png",
}
#: drawn only when the cells recorded a time breakdown
BREAKDOWN_FILE = "time_breakdown.png"
CPU_NOTE = "hollow markers: asked for GPUs, ran on the CPU (not GPU scaling)"


def _main(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[(summary["split_kind"] == main_split_kind(summary)) & (summary["n"] > 0)]


def _cpu_mask(frame: pd.DataFrame) -> pd.Series:
    """Cells that asked for GPUs but ran on the CPU (GPU fallback)."""
    if "gpus_used" not in frame:
        return pd.Series(False, index=frame.index)
    return (frame["gpus"] > 0) & (frame["gpus_used"] == 0)


def _mark_cpu(ax: object, x: pd.Series, y: pd.Series, colour: str | None) -> None:
    """Hollow markers over CPU-run points, so they do not read as GPU measurements."""
    ax.plot(x, y, linestyle="none", marker="o", markersize=11,  # type: ignore[attr-defined]
            markerfacecolor="white",
            markeredgecolor=colour or "black", zorder=3)


def _contended_mask(frame: pd.DataFrame) -> pd.Series:
    """Configurations whose cells shared a host with other cells at the same time (``concurrent`` in the
    summary): their time breakdown measures the contention as much as the configuration."""
    if "concurrent" not in frame:
        return pd.Series(False, index=frame.index)
    return frame["concurrent"].map(lambda v: isinstance(v, str) and bool(v))


def _series_key(frame: pd.DataFrame) -> list[str]:
    """Series are split by strategy/pipeline only when the matrix mixes them."""
    return [c for c in ("strategy", "pipeline") if frame[c].nunique() > 1]


#: markers cycled per series, so lines that coincide (the 1- and 2-GPU accuracy at one batch size) stay
#: visible as two series
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _dodge(i: int, n: int, step: float) -> float:
    """The i-th of n series' offset: centred on 0, ``step`` apart, so equal points sit side by side."""
    return (i - (n - 1) / 2.0) * step


def _accuracy_bars(grp: pd.DataFrame, col: str = "test_acc") -> tuple[list[float], list[float], str]:
    """(below, above) error bar lengths of an accuracy and what they are: the CI over repeats where a
    configuration has repeats, else the 95 % Wilson interval of one run's accuracy on its n test images
    (the binomial noise the verdicts weigh). Zero where neither is known."""
    lo, hi, kinds = [], [], set()
    for _, r in grp.iterrows():
        acc, hw = r.get(col), r.get(f"{col}_hw")
        n_test = r.get("n_test")
        if pd.notna(hw) and r.get("n", 1) > 1:
            lo.append(float(hw))
            hi.append(float(hw))
            kinds.add("repeats")
        elif pd.notna(acc) and pd.notna(n_test) and n_test > 0:
            a, b = wilson_interval(float(acc) / 100.0, int(n_test), float(r.get("ci_level", 0.95) or 0.95))
            lo.append(max(float(acc) - a * 100.0, 0.0))
            hi.append(max(b * 100.0 - float(acc), 0.0))
            kinds.add("wilson")
        else:
            lo.append(0.0)
            hi.append(0.0)
    level = f"{float(grp['ci_level'].iloc[0]) * 100:.0f} %" if "ci_level" in grp and len(grp) else "95 %"
    what = {"repeats": f"{level} CI over repeats", "wilson": f"{level} Wilson interval on the test images"}
    return lo, hi, " or ".join(what[k] for k in sorted(kinds))


def _hw(frame: pd.DataFrame, col: str) -> list[float] | None:
    hw = frame.get(f"{col}_hw")
    if hw is None or not hw.notna().any():
        return None
    return [v if math.isfinite(v) else 0.0 for v in hw]


def _save(fig: Figure, path: Path) -> Path:
    """Render to memory, then replace the file atomically.

    Margins are fixed by each plot (``subplots_adjust``) rather than computed with
    ``bbox_inches="tight"``/constrained layout, which draws every figure twice: on a
    2-core login node that halves the plotting time of collect.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return atomic_write_bytes(path, buf.getvalue())


def _subtitle(summary: pd.DataFrame, label: str, error_bars: bool = True) -> str:
    n = summary["n"].max() if len(summary) else 0
    ci = summary["ci_level"].iloc[0] if "ci_level" in summary and len(summary) else 0.95
    if not n or n <= 1:
        return label
    return f"{label}; " + (
        f"error bars: {ci * 100:.0f} % CI over repeats" if error_bars else "means over repeats"
    )


def plot_time_vs_gpus(
    summary: pd.DataFrame, path: Path, label: str = "", reference: pd.DataFrame | None = None
) -> Path:
    """Execution time against GPU count, one line per batch size (the paper's Observation 1)."""
    data = _main(summary)
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot()
    keys = ["batch_size", *_series_key(data)]
    colours: dict[int, str] = {}
    groups = list(data.groupby(keys, sort=True))
    for i, (k, grp) in enumerate(groups):
        k = k if isinstance(k, tuple) else (k,)
        grp = grp.sort_values("gpus")
        name = f"batch {k[0]}" + ("" if len(k) == 1 else " (" + "/".join(map(str, k[1:])) + ")")
        x = grp["gpus"] + _dodge(i, len(groups), 0.04)  # equal times side by side, not one on the other
        bars = ax.errorbar(x, grp["exec_time_s"], yerr=_hw(grp, "exec_time_s"),
                           marker=MARKERS[i % len(MARKERS)], capsize=4, label=name)
        colours.setdefault(int(k[0]), bars[0].get_color())
        cpu = _cpu_mask(grp)
        if cpu.any():
            _mark_cpu(ax, x[cpu], grp.loc[cpu, "exec_time_s"], bars[0].get_color())
    if reference is not None and len(reference):
        ref = _main(reference)
        for bs, grp in ref.groupby("batch_size", sort=True):
            grp = grp.sort_values("gpus")
            ax.plot(
                grp["gpus"],
                grp["exec_time_s"],
                linestyle="--",
                marker="x",
                alpha=0.6,
                color=colours.get(int(bs)),
                label=f"batch {bs}, 2020",
            )
    ax.set_xlabel("GPUs (count requested)")
    ax.set_ylabel("execution time, all epochs (s)")
    ref_times = _main(reference)["exec_time_s"] if reference is not None else None
    times = pd.concat([data["exec_time_s"], ref_times]).dropna()
    if len(times) and times.min() > 0 and times.max() / times.min() > 20:
        # A laptop demo (seconds) beside the 2020 cells (40 minutes): a log axis keeps both readable.
        ax.set_yscale("log")
        ax.set_ylabel("execution time, all epochs (s, log scale)")
    ax.set_xticks(sorted(set(data["gpus"]) | (set(reference["gpus"]) if reference is not None else set())))
    title = "Execution time vs GPU count, per batch size\n" + _subtitle(data, label)
    if reference is not None and len(reference):
        title += f"\ndashed: {REFERENCE_LABEL}"
    if _cpu_mask(data).any():
        title += f"\n{CPU_NOTE}"
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    lines = title.count("\n")
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.11, top=0.91 - 0.035 * lines)
    return _save(fig, path)


def plot_time_vs_batch(
    summary: pd.DataFrame, path: Path, label: str = "", reference: pd.DataFrame | None = None
) -> Path:
    """Execution time against batch size, one line per GPU count: the study's own view (Observation 3),
    the one H4 is about."""
    data = _main(summary)
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot()
    colours: dict[int, str] = {}
    groups = list(data.groupby(["gpus", *_series_key(data)], sort=True))
    for i, (k, grp) in enumerate(groups):
        k = k if isinstance(k, tuple) else (k,)
        grp = grp.sort_values("batch_size")
        name = gpu_label(int(k[0])) + ("" if len(k) == 1 else " (" + "/".join(map(str, k[1:])) + ")")
        x = grp["batch_size"] * 2.0 ** _dodge(i, len(groups), 0.04)  # log2 axis: a fixed nudge per series
        bars = ax.errorbar(x, grp["exec_time_s"], yerr=_hw(grp, "exec_time_s"),
                           marker=MARKERS[i % len(MARKERS)], capsize=4, label=name)
        colours.setdefault(int(k[0]), bars[0].get_color())
        cpu = _cpu_mask(grp)
        if cpu.any():
            _mark_cpu(ax, x[cpu], grp.loc[cpu, "exec_time_s"], bars[0].get_color())
    ref = _main(reference) if reference is not None and len(reference) else None
    if ref is not None:
        for g, grp in ref.groupby("gpus", sort=True):
            grp = grp.sort_values("batch_size")
            ax.plot(grp["batch_size"], grp["exec_time_s"], linestyle="--", marker="x", alpha=0.6,
                    color=colours.get(int(g)), label=f"{gpu_label(int(g))}, 2020")
    ticks = sorted(set(data["batch_size"]) | (set(ref["batch_size"]) if ref is not None else set()))
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.set_xlabel("batch size (images per step, log scale)")
    ax.set_ylabel("execution time, all epochs (s)")
    times = pd.concat([data["exec_time_s"], ref["exec_time_s"] if ref is not None else None]).dropna()
    if len(times) and times.min() > 0 and times.max() / times.min() > 20:
        ax.set_yscale("log")
        ax.set_ylabel("execution time, all epochs (s, log scale)")
    title = "Execution time vs batch size, per GPU count (H4)\n" + _subtitle(data, label)
    if ref is not None:
        title += f"\ndashed: {REFERENCE_LABEL}"
    if _cpu_mask(data).any():
        title += f"\n{CPU_NOTE}"
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.11, top=0.91 - 0.035 * title.count("\n"))
    return _save(fig, path)


def plot_accuracy_vs_batch(summary: pd.DataFrame, path: Path, label: str = "") -> Path:
    """Test and validation accuracy against batch size, one line per GPU count (Observation 2), each
    test point with its interval, so a gap inside the noise reads as one; series side by side."""
    data = _main(summary)
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot()
    keys = ["gpus", *_series_key(data)]
    groups = list(data.groupby(keys, sort=True))
    kinds = set()
    for i, (k, grp) in enumerate(groups):
        k = k if isinstance(k, tuple) else (k,)
        grp = grp.sort_values("batch_size")
        name = gpu_label(int(k[0])) + ("" if len(k) == 1 else " (" + "/".join(map(str, k[1:])) + ")")
        x = grp["batch_size"] * 2.0 ** _dodge(i, len(groups), 0.04)  # the axis is log2: a fixed nudge
        lo, hi, kind = _accuracy_bars(grp)
        kinds.add(kind)
        line = ax.errorbar(x, grp["test_acc"], yerr=[lo, hi], marker=MARKERS[i % len(MARKERS)], capsize=3,
                           label=f"{name}, test")
        cpu = _cpu_mask(grp)
        if cpu.any():
            _mark_cpu(ax, x[cpu], grp.loc[cpu, "test_acc"], line[0].get_color())
        if grp["val_acc"].notna().any():
            ax.plot(x, grp["val_acc"], linestyle=":", marker=".", color=line[0].get_color(),
                    label=f"{name}, valid")
    ax.set_xscale("log", base=2)
    ticks = sorted(set(data["batch_size"]))
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.set_xlabel("batch size (images per step, log scale)")
    ax.set_ylabel("accuracy (%)")
    title = "Accuracy vs batch size, per GPU count\n" + (label or "")
    bars = " or ".join(sorted(k for k in kinds if k))
    if bars:
        title += f"\nerror bars: {bars}"
    if _cpu_mask(data).any():
        title += f"\n{CPU_NOTE}"
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.subplots_adjust(left=0.11, right=0.97, bottom=0.11, top=0.91 - 0.035 * title.count("\n"))
    return _save(fig, path)


def _memory_columns(data: pd.DataFrame) -> tuple[list[str], str]:
    """The per-GPU columns to stack and what they measure: per-process peaks (the study's figure) when
    any was measured, else the device-wide ones."""
    proc = sorted(
        (c for c in data.columns if c.startswith("gpu") and c.endswith("_proc_gb") and c[3:-8].isdigit()),
        key=lambda c: int(c[3:-8]),
    )
    if proc and data[proc].notna().any().any():
        return proc, "per-process"
    dev = sorted(
        (c for c in data.columns if c.startswith("gpu") and c.endswith("_gb") and c[3:-3].isdigit()),
        key=lambda c: int(c[3:-3]),
    )
    return dev, "device-wide"


def plot_memory(summary: pd.DataFrame, path: Path, label: str = "") -> Path:
    """Peak memory per GPU, stacked per configuration (the paper's section 6.5), labelled per-process
    (what the study read off nvidia-smi) or device-wide."""
    data = _main(summary).sort_values(["batch_size", "gpus", "strategy", "pipeline"])
    gcols, kind = _memory_columns(data)
    fig = Figure(figsize=(max(7.5, 0.55 * len(data) + 2), 4.8))
    ax = fig.add_subplot()
    x = list(range(len(data)))
    bottom = [0.0] * len(data)
    for c in gcols:
        vals = [v if math.isfinite(v) else 0.0 for v in data[c]]
        if not any(vals):
            continue
        ax.bar(x, vals, bottom=bottom, label=f"GPU {c[3:].split('_')[0]}")
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    known = data[gcols].notna().any(axis=1) if gcols else pd.Series(False, index=data.index)
    for xi, tot, k in zip(x, bottom, known, strict=True):
        ax.annotate(f"{tot:.2f}" if k else "n/m", (xi, tot), ha="center", va="bottom", fontsize=7)
    if not known.any():
        ax.text(0.5, 0.5, "no GPU memory measured\n(no NVML: the cells ran on the CPU or without a driver)",
                transform=ax.transAxes, ha="center", va="center", fontsize=9, color="dimgrey")
    ax.set_xlim(-0.6, len(data) - 0.4)
    cpu = _cpu_mask(data).to_list()
    ax.set_xticks(x)
    ax.set_xticklabels(
        [f"b{int(b)}\n{int(g)}G" + ("\nCPU" if c else "") for b, g, c in
         zip(data["batch_size"], data["gpus"], cpu, strict=True)],
        fontsize=8,
    )
    ax.set_xlabel("configuration (batch size, GPU count; CPU = ran on the CPU)")
    what = "one nvidia-smi reading per GPU" if label == REFERENCE_LABEL else "peaks"
    ax.set_ylabel(f"GPU memory, {kind} (GB), stacked over GPUs")
    ax.set_title(
        f"GPU memory per configuration, {kind}, {what} (n/m = not measured)\n"
        + _subtitle(data, label, error_bars=False),
        fontsize=10,
    )
    ax.grid(axis="y", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    width = fig.get_figwidth()
    fig.subplots_adjust(left=0.8 / width, right=1 - 0.2 / width, bottom=0.2, top=0.88)
    return _save(fig, path)


def plot_throughput(summary: pd.DataFrame, path: Path, label: str = "") -> Path:
    """Training throughput and scaling efficiency T1/(N·TN) against GPU count. Cells that ran on the CPU
    are hollow in the throughput panel and left out of the efficiency panel, which is about GPUs."""
    data = _main(summary)
    fig = Figure(figsize=(11, 4.6))
    ax1, ax2 = fig.subplots(1, 2)
    keys = ["batch_size", *_series_key(data)]
    drawn = 0
    for k, grp in data.groupby(keys, sort=True):
        k = k if isinstance(k, tuple) else (k,)
        grp = grp.sort_values("gpus")
        name = f"batch {k[0]}" + ("" if len(k) == 1 else " (" + "/".join(map(str, k[1:])) + ")")
        bars = ax1.errorbar(
            grp["gpus"], grp["images_per_s"], yerr=_hw(grp, "images_per_s"), marker="o", capsize=4, label=name
        )
        cpu = _cpu_mask(grp)
        if cpu.any():
            _mark_cpu(ax1, grp.loc[cpu, "gpus"], grp.loc[cpu, "images_per_s"], bars[0].get_color())
        g = grp[(grp["gpus"] > 0) & ~cpu]
        if len(g):
            ax2.plot(g["gpus"], g["efficiency"], marker="o", label=name, color=bars[0].get_color())
            drawn += 1
    gpus = sorted(set(data["gpus"]))
    if gpus and drawn:
        ax2.plot(gpus, [1.0] * len(gpus), color="grey", linestyle="--", label="ideal (linear scaling)")
    n_cpu = int(_cpu_mask(data).sum())
    if n_cpu:
        ax2.text(0.5, 0.5 if not drawn else 0.08,
                 f"{n_cpu} configuration(s) ran on the CPU:\nnot GPU scaling, not drawn here",
                 transform=ax2.transAxes, ha="center", va="center", fontsize=9, color="dimgrey")
    for ax in (ax1, ax2):
        ax.set_xlabel("GPUs (count requested)")
        ax.set_xticks(gpus)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    estimated = "images_per_s_estimated" in data and bool(data["images_per_s_estimated"].fillna(False).any())
    ax1.set_ylabel(
        "training throughput (images/s)"
        + ("\nestimated: train images × epochs / exec time" if estimated else "")
    )
    ax1.set_title("Throughput vs GPU count" + ("\n" + CPU_NOTE if n_cpu else ""), fontsize=10)
    ax2.set_ylabel("scaling efficiency T1 / (N · TN)")
    ax2.set_ylim(bottom=0)
    ax2.set_title("Scaling efficiency vs GPU count (GPU runs only)", fontsize=10)
    fig.suptitle(_subtitle(data, label), fontsize=9)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.11, top=0.82 if n_cpu else 0.86, wspace=0.22)
    return _save(fig, path)


def plot_breakdown(summary: pd.DataFrame, path: Path, label: str = "") -> Path:
    """Where the time went (waiting for data, compute, validation, other), stacked per configuration and
    ordered by GPU count within each batch size: what limited scaling."""
    data = _main(summary)
    data = data[data[[c for c, _ in BREAKDOWN_PARTS if c in data]].notna().any(axis=1)]
    data = data.sort_values(["batch_size", "gpus", "strategy", "pipeline"])
    fig = Figure(figsize=(max(7.5, 0.6 * len(data) + 2), 4.8))
    ax = fig.add_subplot()
    x = list(range(len(data)))
    bottom = [0.0] * len(data)
    shared = _contended_mask(data).to_list()
    for col, name in BREAKDOWN_PARTS:
        vals = [v if math.isfinite(v) else 0.0 for v in data.get(col, pd.Series(math.nan, index=data.index))]
        bars = ax.bar(x, vals, bottom=bottom, label=name)
        for bar, contended in zip(bars, shared, strict=True):
            if contended:  # the parts of cells that waited on each other are not the configuration's own
                bar.set_hatch("//")
                bar.set_edgecolor("black")
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    labelled = False
    for xi, (_, r) in zip(x, data.iterrows(), strict=True):
        util = r.get("gpu_util_pct", math.nan)
        if util is not None and math.isfinite(util):
            ax.annotate(f"GPU {util:.0f} %", (xi, bottom[xi]), ha="center", va="bottom", fontsize=7)
            labelled = True
    cpu = _cpu_mask(data).to_list()
    ax.set_xticks(x)
    ax.set_xticklabels(
        [f"b{int(b)}\n{int(g)}G" + (f"\n{p}" if data["pipeline"].nunique() > 1 else "")
         + ("\nCPU" if c else "") + ("\nshared" if sh else "")
         for b, g, p, c, sh in zip(data["batch_size"], data["gpus"], data["pipeline"], cpu, shared,
                                   strict=True)],
        fontsize=8,
    )
    ax.set_xlabel("configuration (batch size, GPU count; CPU = ran on the CPU"
                  + ("; shared = ran beside other cells)" if any(shared) else ")"))
    ax.set_ylabel("time, summed over epochs (s)")
    what = " (labels: mean GPU utilisation)" if labelled else ""  # CPU cells have no GPU figure to show
    ax.set_title(f"Where the time went, per configuration{what}\n"
                 + _subtitle(data, label, error_bars=False), fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.set_ylim(0, max(bottom, default=1.0) * 1.3 or 1.0)  # headroom for the legend above the bars
    handles, names = ax.get_legend_handles_labels()
    if any(shared):
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="//"))
        names.append("hatched: shared a host (contended)")
    ax.legend(handles, names, fontsize=8, ncol=4, loc="upper center")
    width = fig.get_figwidth()
    fig.subplots_adjust(left=0.8 / width, right=1 - 0.2 / width, bottom=0.2, top=0.88)
    return _save(fig, path)


def write_plots(
    summary: pd.DataFrame, out_dir: Path, label: str = "", reference: pd.DataFrame | None = None
) -> dict[str, Path]:
    """All figures into ``out_dir`` (created); returns name -> path. Nothing to plot -> {}."""
    if _main(summary).empty:
        return {}
    out_dir = Path(out_dir)
    paths = {
        "time": plot_time_vs_gpus(summary, out_dir / PLOT_FILES["time"], label, reference),
        "time_batch": plot_time_vs_batch(summary, out_dir / PLOT_FILES["time_batch"], label, reference),
        "accuracy": plot_accuracy_vs_batch(summary, out_dir / PLOT_FILES["accuracy"], label),
        "memory": plot_memory(summary, out_dir / PLOT_FILES["memory"], label),
        "throughput": plot_throughput(summary, out_dir / PLOT_FILES["throughput"], label),
    }
    if has_breakdown(summary):
        paths["breakdown"] = plot_breakdown(summary, out_dir / BREAKDOWN_FILE, label)
    return paths
