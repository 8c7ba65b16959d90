"""Assemble everything collect produces: analysis, files, report.md, console output.

:func:`analyze` is pure (frame in, :class:`Analysis` out); :func:`collect_experiment`
and :func:`collect_reference` add the I/O (atomic CSV/Markdown/PNG/JSON writes under the
experiment directory) and, given a rich console, print the paper-shaped tables, verdicts
and conclusions. The report links plots relatively so the experiment directory can be
copied or published as is.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from aslhpc.analysis.console import STUDY_EPOCHS, SummaryInput
from aslhpc.analysis.hypotheses import Conclusions, conclusions
from aslhpc.analysis.leakage import (
    LEAK_FREE,
    LEAK_FREE_LABEL,
    gap_line,
    gap_sentence,
    gap_table,
    gap_view,
    has_both,
    split_label,
)
from aslhpc.analysis.matrix import COMPLETED, holes
from aslhpc.analysis.paired import (
    attach_block_intervals,
    block_intervals,
    paired_table,
)
from aslhpc.analysis.recommend import Recommendation, candidates, recommend
from aslhpc.analysis.reference import REFERENCE_LABEL, REFERENCE_TITLE, load_reference, reference_matrix
from aslhpc.analysis.reference_cpu import CpuReference, default_cpu_reference_path, load_cpu_reference
from aslhpc.analysis.stats import SINGLE_RUN_NOTE
from aslhpc.analysis.tables import (
    breakdown_view,
    derive,
    gpu_label,
    has_breakdown,
    paper_tables,
    summarize,
    summary_view,
    to_markdown,
)
from aslhpc.analysis.verdicts import (
    H4_READING,
    Evidence,
    Settings,
    Verdict,
    capped,
    completed,
    evaluate,
    h4_literal_steps,
    paper_verdicts,
    shared_host,
)
from aslhpc.atomic import atomic_write_text
from aslhpc.errors import AslhpcError

MEASURED_LABEL = "measured by aslhpc"
#: under the paper-shaped tables: what their GPU columns measure (not quite what the paper's did)
MEMORY_NOTE = (
    "`GPU n (GB, per-process)` is the peak memory of the cell's own process on that GPU (NVML's "
    "per-process figure, `proc_mem_peak_gb`, `gpu<i>_proc_gb` in `cells.csv`; sampled every few seconds, "
    "so a shorter spike can be missed): the figure the 2020 study read off nvidia-smi's process list, so "
    "these columns compare like with like. `Device-wide total (GB)` sums the NVML device peaks "
    "(`mem_peak_gb`, `gpu<i>_device_gb` in `cells.csv`: everything on the device, other processes "
    "included) and `Data on GPU "
    "(GB)` is the fast pipeline's dataset held there (inside the device-wide figure); each is shown only "
    "when measured."
)

#: under the paper-shaped tables: which epoch the accuracies are from (status shows the last one)
ACCURACY_NOTE = (
    "Train/Valid/Test Acc are from the epoch with the lowest validation loss (`best_epoch` in `cells.csv`), "
    "not the last epoch that `status` shows."
)


def cpu_fallback_note(summary: pd.DataFrame) -> str:
    """A sentence naming the configurations that asked for GPUs but ran on the CPU ("" if none):
    their speed-up and efficiency compare CPU runs, not GPU scaling."""
    cpu = summary[(summary["n"] > 0) & (summary["gpus"] > 0) & (summary["gpus_used"] == 0)]
    if cpu.empty:
        return ""
    names = ", ".join(f"b={int(r['batch_size'])} × {gpu_label(int(r['gpus']))}" for _, r in cpu.iterrows())
    return (
        f"Ran on the CPU (GPU fallback): {names}; their speed-up and efficiency (marked `(CPU run)`) are "
        "not GPU scaling."
    )


@dataclass
class Analysis:
    """Everything computed from one matrix; no files involved."""

    name: str
    label: str
    cells: pd.DataFrame
    summary: pd.DataFrame
    tables: dict[int, pd.DataFrame]
    verdicts: list[Verdict]
    conclusions: Conclusions
    holes: pd.DataFrame
    #: every hypothesis' knobs (ci, thresholds, metric, R²): the one object the registry reads
    settings: Settings = field(default_factory=Settings)
    #: the paired per-image tests the verdicts used (empty without test_predictions.csv)
    evidence: Evidence = field(default_factory=Evidence)
    #: whether the paired tests were run on the cells' test_predictions.csv
    predictions_read: bool = False
    #: H4 read literally (steps per epoch), shown only as a labelled aside
    h4_literal: Verdict | None = None
    #: with both splits in the matrix: each split's own analysis (tables, verdicts), and the gap per
    #: configuration (:mod:`aslhpc.analysis.leakage`); empty otherwise
    by_split: dict[str, Analysis] = field(default_factory=dict)
    gap: pd.DataFrame | None = None

    @property
    def ci(self) -> float:
        return self.settings.ci

    @property
    def h1_threshold(self) -> float:
        return self.settings.h1_threshold

    @property
    def h4_r2(self) -> float:
        return self.settings.h4_r2


@dataclass
class CollectOutput:
    """What collect produced: the analysis (and the reference's), the files it wrote."""

    exp_dir: Path
    analysis: Analysis
    reference: Analysis | None = None
    comparison: dict[int, pd.DataFrame] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    report_path: Path | None = None
    #: the study's CPU run (Section 6.6), shown as reference data beside this run's figures
    cpu_reference: CpuReference | None = None
    #: what each cell asked for and used (analysis.efficiency, from the snapshot); None: not read
    usage: pd.DataFrame | None = None
    #: per completed cell, what its result.json recorded beyond the matrix (:func:`recorded_settings`)
    recorded: pd.DataFrame | None = None
    #: the scaling model's one sentence per series (analysis.scaling), filled by write_outputs
    scaling: list[str] = field(default_factory=list)
    #: the same fits in one console line each (scaling.scaling_briefs)
    scaling_brief: list[str] = field(default_factory=list)
    #: predictions.csv's frame (None without a fit), and the recommendation drawn from it and the summary
    predictions: pd.DataFrame | None = None
    recommendation: Recommendation | None = None
    #: the recommendation's settings: within this share of the fastest; the GPU-hour budget (None: none)
    within: float = 0.10
    budget_gpu_hours: float | None = None


def analyze(
    cells: pd.DataFrame,
    *,
    name: str = "",
    label: str = MEASURED_LABEL,
    ci: float = 0.95,
    h1_threshold: float = 95.0,
    h3_metric: str = "test_acc",
    h4_r2: float = 0.9,
    predictions: Mapping[str, pd.DataFrame] | None = None,
) -> Analysis:
    """Derived columns, CI summary, paper tables, verdicts and conclusions from a matrix; with both
    splits in it, also each split's analysis and the leakage gap (the conclusions then say it).

    ``predictions`` (cell_id -> test predictions, as :mod:`aslhpc.snapshot` read them) lets
    H3 compare cells on the same test images pairwise; without it H3 compares intervals."""
    settings = Settings(ci=ci, h1_threshold=h1_threshold, h3_metric=h3_metric, h4_r2=h4_r2)
    derived = derive(cells)
    summary = summarize(derived, ci)
    a = Analysis(
        name=name or (str(cells["experiment"].dropna().iloc[0]) if cells["experiment"].notna().any() else ""),
        label=label,
        cells=derived,
        summary=summary,
        tables=paper_tables(summary),
        verdicts=evaluate(summary, settings),
        conclusions=conclusions(summary),
        holes=holes(derived),
        settings=settings,
        h4_literal=h4_literal_steps(summary),
    )
    if has_both(cells):
        a.by_split = {
            str(kind): analyze(grp, name=a.name, label=label, ci=ci, h1_threshold=h1_threshold,
                               h3_metric=h3_metric, h4_r2=h4_r2)
            for kind, grp in sorted(cells.groupby("split_kind"), key=lambda kg: (kg[0] != "random", kg[0]))
        }
        a.gap = gap_table(derived, ci)
        a.conclusions = _conclude(a)
    return _with_predictions(a, predictions) if predictions is not None else a


def _conclude(a: Analysis) -> Conclusions:
    """The conclusions on ``a``'s summary and paired tests, with the leakage sentence when both splits ran."""
    c = conclusions(a.summary, a.evidence.paired, a.settings.paired_alpha)
    if a.gap is not None and (sentence := gap_sentence(a.gap)):
        c = dataclasses.replace(c, text=f"{c.text} {sentence}")
    return c


def _with_predictions(a: Analysis, predictions: Mapping[str, pd.DataFrame]) -> Analysis:
    """``a`` (and each split's analysis) with the paired tests on ``predictions``, single blocked-split runs'
    test accuracies given their block bootstrap interval, and the verdicts re-decided on both."""
    a.predictions_read = True
    if predictions:
        intervals = block_intervals(a.cells, predictions, a.ci)
        if not intervals.empty:
            a.summary = attach_block_intervals(a.summary, a.cells, intervals)
        a.evidence = Evidence(paired_table(a.cells, predictions))
        a.verdicts = evaluate(a.summary, a.settings, a.evidence)
        a.conclusions = _conclude(a)
        a.h4_literal = h4_literal_steps(a.summary)
    for sub in a.by_split.values():
        _with_predictions(sub, predictions)
    return a


def h1_by_split(a: Analysis) -> dict[str, str]:
    """H1's verdict on each split ({} without a splits axis), the blocked one labelled leakage-free."""
    out = {}
    for kind, sub in a.by_split.items():
        h1 = [v for v in sub.verdicts if v.hypothesis == "H1"]
        if h1:
            out[kind + (" (leakage-free)" if kind == LEAK_FREE else "")] = h1[0].verdict
    return out


def _leakage_md(a: Analysis, plot: Path | None, exp_dir: Path) -> list[str]:
    """The leakage section: the gap table (+ plot) and, per split, its paper tables and verdicts."""
    if not a.by_split or a.gap is None:
        return []
    lines = [
        "## Leakage: random vs blocked split",
        "",
        "The images are consecutive video frames: the random split leaves a near-identical neighbour of "
        "every test frame in training, the blocked split tests on contiguous frame blocks the model never "
        f"saw neighbours of, so its figures are the {LEAK_FREE_LABEL}. Both splits come from the same "
        "seed (`split_seed`, hashes in `cells.csv`); every other setting is shared. Gap = random − blocked "
        "test accuracy per configuration, in percentage points; its interval is the paired Student t over "
        "repeats (repeat r of each split share a seed), or with one run each the Newcombe interval built "
        "from the two Wilson intervals on the test images.",
        "",
        to_markdown(gap_view(a.gap), index=False),
        "",
    ]
    if sentence := gap_sentence(a.gap):
        lines += [sentence, ""]
    if plot is not None:
        rel = plot.relative_to(exp_dir) if plot.is_relative_to(exp_dir) else plot
        lines += [f"![leakage_gap]({rel.as_posix()})", ""]
    for kind, sub in a.by_split.items():
        lines += [f"### Split: {split_label(kind)}", ""]
        for bs, t in sub.tables.items():
            lines += [f"#### Batch size {bs} ({kind} split)", "", to_markdown(t), ""]
        lines += [f"Hypotheses judged on the {kind} split alone:", "", _verdicts_md(sub.verdicts), ""]
    return lines


# --------------------------------------------------------------------------- report


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _verdicts_md(verdicts: list[Verdict], with_paper: bool = True) -> str:
    cols = (
        ["hypothesis", "statement", "verdict"]
        + (["2020 paper concluded"] if with_paper else [])
        + ["evidence"]
    )
    rows = []
    for v in verdicts:
        row = [v.hypothesis, v.statement, f"**{v.verdict}**"]
        if with_paper:
            row.append(paper_verdicts().get(v.hypothesis, ""))
        rows.append([*row, v.evidence + (f" (test: {v.test})" if v.test else "")])
    return to_markdown(pd.DataFrame(rows, columns=cols), index=False)


PROVENANCE_COLUMNS = [
    ("cell_id", "cell"),
    ("state", "state"),
    ("host", "host"),
    ("device_names", "devices"),
    ("gpus_used", "GPUs used"),
    ("driver", "driver"),
    ("cuda", "CUDA"),
    ("torch", "torch"),
    ("aslhpc_version", "aslhpc"),
    ("slurm_job_id", "SLURM job"),
    ("slurm_partition", "partition"),
    ("slurm_nodelist", "nodes"),
    ("split_hash", "split hash"),
    ("finished_at", "finished"),
]


def _provenance_md(cells: pd.DataFrame) -> str:
    view = cells[[c for c, _ in PROVENANCE_COLUMNS]].copy()
    view["split_hash"] = view["split_hash"].map(lambda h: str(h)[:12] if isinstance(h, str) else "")
    view["gpus_used"] = view["gpus_used"].map(lambda v: "" if pd.isna(v) else str(int(v)))
    # identical values in a column are shown once, above the table, to keep it compact
    common = {}
    for col, label in PROVENANCE_COLUMNS[2:]:
        vals = view.loc[cells["state"] == COMPLETED, col].dropna().astype(str).unique()
        if len(vals) == 1 and col not in ("slurm_job_id", "finished_at", "gpus_used"):
            common[label] = vals[0]
            view = view.drop(columns=col)
    view = view.rename(columns=dict(PROVENANCE_COLUMNS))
    head = ""
    if common:
        head = (
            "Same for every completed cell: " + "; ".join(f"{k}: `{v}`" for k, v in common.items()) + ".\n\n"
        )
    return head + to_markdown(view, index=False)


BREAKDOWN_NOTE = (
    "Summed over the epochs (result.json `time_breakdown`): waiting for the next batch (the input "
    "pipeline), compute (forward, backward and optimiser step), validation, and the rest. \"data wait / "
    "training loop\" is waiting ÷ (waiting + compute); GPU util is NVML's mean utilisation over the GPUs "
    "the cell used."
)


def _breakdown_md(a: Analysis) -> list[str]:
    """Where the time went, per configuration, or a note that the cells did not record it."""
    lines = ["## Where the time went", ""]
    if a.label == REFERENCE_LABEL:
        return []
    if not has_breakdown(a.summary):
        return lines + [
            "Time breakdown: not recorded (the cells' result.json has no `time_breakdown`: the trainer "
            "that ran them predates it), so H2's evidence cannot say what limited scaling.",
            "",
        ]
    return lines + [BREAKDOWN_NOTE, "", to_markdown(breakdown_view(a.summary), index=False), ""]


def _cpu_reference_md(out: CollectOutput) -> list[str]:
    """The study's CPU epoch beside its own 1-GPU epoch at the same batch size and any CPU cell of ours."""
    c = out.cpu_reference
    if c is None:
        return []
    lines = [
        f"## The 2020 CPU run — {REFERENCE_LABEL}",
        "",
        f"{c.source}: {c.epochs} epoch at batch size {c.batch_size} in {c.exec_time_s:.2f} s on {c.device} "
        f"(train accuracy {c.train_acc:.2f} %, validation {c.val_acc:.2f} %; the study ran no more epochs "
        "on the CPU).",
    ]
    ref = out.reference.summary if out.reference is not None else out.analysis.summary
    if out.analysis.label == REFERENCE_LABEL or out.reference is not None:
        one = ref[(ref["gpus"] == 1) & (ref["batch_size"] == c.batch_size) & (ref["n"] > 0)]
        if len(one):
            epoch_gpu = float(one["exec_time_s"].iloc[0]) / STUDY_EPOCHS
            lines[-1] += (
                f" Its 1-GPU run at the same batch size took {epoch_gpu:.2f} s per epoch (all {STUDY_EPOCHS} "
                f"epochs averaged): {c.epoch_s / epoch_gpu:.1f}× faster than the CPU epoch."
            )
    mine = out.analysis.summary
    cpu = mine[(mine["gpus"] == 0) & (mine["n"] > 0)] if out.analysis.label != REFERENCE_LABEL else mine[:0]
    for _, r in cpu.iterrows():
        epochs = _cells_epochs(out.analysis.cells, r)
        if epochs:
            lines[-1] += (
                f" This run's CPU cell at batch size {int(r['batch_size'])}: "
                f"{float(r['exec_time_s']) / epochs:.2f} s per epoch over {epochs} epochs."
            )
    return lines + [""]


def _cells_epochs(cells: pd.DataFrame, r: pd.Series) -> int:
    done = cells[(cells["gpus"] == r["gpus"]) & (cells["batch_size"] == r["batch_size"])]
    vals = pd.to_numeric(done["epochs"], errors="coerce").dropna()
    return int(vals.median()) if len(vals) else 0


def _literal_aside(a: Analysis) -> list[str]:
    """The literal reading of H4 as a labelled aside (not one of the four verdicts)."""
    v = a.h4_literal
    if v is None:
        return []
    return [
        f"*Aside, not the study's meaning:* {v.statement} On these numbers that reading is "
        f"**{v.verdict}** ({v.evidence}).",
        "",
    ]


def _header_md(out: CollectOutput) -> list[str]:
    a = out.analysis
    n_cells = len(a.cells)
    n_done = int((a.cells["state"] == COMPLETED).sum())
    lines = [f"# {a.name or out.exp_dir.name}: collected results", ""]
    if a.label == REFERENCE_LABEL:
        lines += [
            f"**These are {REFERENCE_LABEL}**: {REFERENCE_TITLE}, transcribed in "
            "`results/reference/lad2020.csv` (memory read off nvidia-smi by hand). aslhpc only recomputes "
            "the paper's derived figures and verdicts from them.",
            "",
        ]
    return lines + [
        f"Generated {_now()} by `python -m aslhpc.collect` from `{out.exp_dir}`: "
        f"{n_cells} cells, {n_done} completed, "
        f"{n_cells - n_done} hole{'' if n_cells - n_done == 1 else 's'}.",
        f"Where a configuration has repeats, figures are mean ± {a.ci * 100:g} % confidence-interval "
        "half-width (Student t) and `n` is completed/expected runs. `NA` = GPU not used (as in the paper); "
        "`n/m` = not measured (e.g. no NVML).",
        "",
    ] + _model_md(a.cells)


def _model_md(cells: pd.DataFrame) -> list[str]:
    """Which network the cells trained, with its size (parameters and FLOPs per image, from result.json)."""
    if "model" not in cells or "model_params" not in cells:
        return []
    lines = []
    for spec, group in cells[cells["model_params"].notna()].groupby("model"):
        params, gflops = group["model_params"].iloc[0], group["model_gflops"].iloc[0]
        flops = f", {gflops:.3g} GFLOPs per image (one forward pass)" if pd.notna(gflops) else ""
        lines.append(f"Model: `{spec}`, {int(params):,} parameters{flops}.")
    return lines + [""] if lines else []


def _tables_md(a: Analysis) -> list[str]:
    lines = ["## Tables (the paper's layout)", ""]
    for bs, t in a.tables.items():
        lines += [f"### Batch size {bs}", "", to_markdown(t), ""]
    if a.label != REFERENCE_LABEL and a.tables:
        lines += [ACCURACY_NOTE, "", MEMORY_NOTE, ""]
    lines += [
        "## All configurations",
        "",
        "Speed-up is over the 1-GPU time at the same batch size; efficiency = T1 / (N · TN); GPU-hours = "
        "exec time × GPUs used / 3600; GPU util = NVML's mean utilisation over the GPUs used. Every number: "
        "`summary.csv` (per configuration) and `cells.csv` (per cell).",
        "",
        to_markdown(summary_view(a.summary), index=False),
        "",
    ]
    if note := cpu_fallback_note(a.summary):
        lines += [note, ""]
    return lines


#: how the verdicts weigh noise, under the Hypotheses heading
NOISE_NOTE = (
    "Decided from the numbers alone; a difference inside the intervals counts neither way (inconclusive). "
    "With repeats the intervals are Student-t over the runs. Without repeats an accuracy still has the "
    "binomial noise of the images it was measured on: it is shown as `value [a, b]`, the Wilson interval at "
    "the same confidence level; a time from a single run has no interval, so its comparisons say "
    "\"single runs\" and how large the deciding gap was. Two cells tested on the same images (both saved "
    "`test_predictions.csv`) are compared pairwise instead, by McNemar's exact test on the images only one "
    "of them got right (a difference where p < 1 − the confidence level). Each evidence ends with the test "
    "used; verdicts.json holds its figures."
)


def _verdicts_section(a: Analysis) -> list[str]:
    return [
        "## Hypotheses",
        "",
        NOISE_NOTE,
        "",
        _verdicts_md(a.verdicts),
        "",
        f"How H4 is read: {H4_READING}",
        "",
        *_literal_aside(a),
        "## Conclusions",
        "",
        a.conclusions.text,
        "",
    ]


# --------------------------------------------------------------------------- caveats


def recorded_settings(results: Mapping[str, Mapping[str, Any]], cells: pd.DataFrame) -> pd.DataFrame:
    """Per completed cell, what its result.json recorded that the matrix does not carry: ``tf32`` (bool or
    None) and ``clock`` (``time_breakdown.clock``, the clock the times were taken on; None if absent)."""
    ids = [str(c) for c in cells.loc[cells["state"] == COMPLETED, "cell_id"]]
    rows = []
    for cid in ids:
        res = results.get(cid)
        res = res if isinstance(res, Mapping) else {}
        tb = res.get("time_breakdown") if isinstance(res.get("time_breakdown"), Mapping) else {}
        tf32 = res.get("tf32")
        rows.append({"cell_id": cid, "tf32": tf32 if isinstance(tf32, bool) else None,
                     "clock": str(tb["clock"]) if tb.get("clock") else None})
    return pd.DataFrame(rows, columns=["cell_id", "tf32", "clock"])


def _ids(frame: pd.DataFrame, limit: int = 6) -> str:
    ids = [f"`{c}`" for c in frame["cell_id"].astype(str)]
    return ", ".join(ids[:limit]) + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def _repeats_caveat(summary: pd.DataFrame) -> str:
    """Configurations with one run: their times carry no noise estimate, their accuracies only the test
    images' binomial noise."""
    done = completed(summary, "exec_time_s")
    single = done[done["n"] == 1]
    if single.empty:
        return ""
    scope = ("Every configuration ran once (no repeats)" if len(single) == len(done)
             else f"{len(single)} of {len(done)} configurations ran once")
    return (f"{scope}: a single time has no run-to-run noise estimate, so timing comparisons are between "
            f"single runs. {SINGLE_RUN_NOTE}")


def _cpu_caveat(cells: pd.DataFrame) -> str:
    """Cells that asked for GPUs but ran on the CPU."""
    done = cells[cells["state"] == COMPLETED]
    cpu = done[(done["gpus"] > 0) & (done["gpus_used"] == 0)]
    if cpu.empty:
        return ""
    return (f"{len(cpu)} cell(s) asked for GPUs but fell back to the CPU: {_ids(cpu)}; their "
            "times, speed-up and "
            "memory are CPU figures, and H2 does not compare GPU counts while they are in the matrix.")


def _tf32_caveat(cells: pd.DataFrame, recorded: pd.DataFrame) -> str:
    """TF32 as each GPU cell recorded it (the study ran full FP32)."""
    done = cells[(cells["state"] == COMPLETED) & (cells["gpus_used"] > 0)]
    rec = recorded[recorded["cell_id"].isin(done["cell_id"].astype(str))]
    if rec.empty:
        return ""
    on, off = rec[rec["tf32"].eq(True)], rec[rec["tf32"].eq(False)]
    unknown = rec[rec["tf32"].isna()]
    parts = []
    if len(on):
        parts.append(f"on in {len(on)} GPU cell(s) ({_ids(on)}): matmuls and convolutions ran in TF32, "
                     "not the study's full FP32")
    if len(off):
        parts.append(f"off (full FP32) in {len(off)} GPU cell(s)")
    if len(unknown):
        parts.append(f"not recorded in {len(unknown)} GPU cell(s) ({_ids(unknown)}: an older trainer)")
    return "TF32, as each cell's result.json recorded it (`tf32`): " + "; ".join(parts) + "."


def _clock_caveat(cells: pd.DataFrame, recorded: pd.DataFrame) -> str:
    """Which clock Exec. Time is, and what it leaves out."""
    done = cells[cells["state"] == COMPLETED]
    if done.empty:
        return ""
    clocks = sorted({c for c in recorded["clock"] if c})
    on = f"on {'; '.join(clocks)}" if clocks else "its clock not recorded (an older trainer)"
    prep = pd.to_numeric(done["data_prep_s"], errors="coerce").dropna()
    apart = (f"; data preparation (cache build/open, {prep.mean():.1f} s on average, `data_prep_s`) is apart"
             if len(prep) else "")
    return (f"`Exec. Time` is `exec_time_s`: the trainer's wall-clock time over all "
            "epochs, validation included "
            f"({on}){apart}; queueing and job start-up are not in it.")


def _memory_caveat(cells: pd.DataFrame) -> str:
    """Which memory figure the tables show: NVML per-process peaks vs device-wide totals, and where none."""
    done = cells[(cells["state"] == COMPLETED) & (cells["gpus_used"] > 0)]
    if done.empty:
        return ""
    proc = [c for c in done.columns if c.startswith("gpu") and c.endswith("_proc_gb") and c[3:-8].isdigit()]
    has_proc = done[proc].notna().any(axis=1) if proc else pd.Series(False, index=done.index)
    no_nvml = done[done["nvml"].eq(False)]
    parts = []
    if has_proc.any():
        parts.append(f"`GPU n (GB, per-process)` is NVML's per-process peak of the cell's own process "
                     f"({int(has_proc.sum())} of {len(done)} GPU cells), `Device-wide total (GB)` "
                     "the sum of the "
                     "device peaks, other processes included")
    elif no_nvml.empty:
        parts.append("no per-process memory was recorded: only the device-wide NVML peaks (everything on the "
                     "device) are shown, which are not the study's per-process figures")
    if len(no_nvml):
        why = next((str(r) for r in no_nvml["nvml_reason"] if isinstance(r, str) and r), "no reason recorded")
        parts.append(f"no NVML in {len(no_nvml)} GPU cell(s) ({_ids(no_nvml)}: {why}), "
                     "so their memory is n/m")
    return "Memory: " + "; ".join(parts) + "." if parts else ""


def caveats(out: CollectOutput) -> list[str]:
    """What limits this run's figures, computed from its data: only the caveats that apply."""
    a = out.analysis
    measured = a.label != REFERENCE_LABEL
    recorded = out.recorded if out.recorded is not None and measured else recorded_settings({}, a.cells[:0])
    done = completed(a.summary, "exec_time_s")
    items = [_repeats_caveat(a.summary)]
    if measured:
        items += [_cpu_caveat(a.cells), _tf32_caveat(a.cells, recorded), _clock_caveat(a.cells, recorded),
                  _memory_caveat(a.cells)]
    if not measured or out.reference is not None or out.cpu_reference is not None:
        items.append(f"The {'rows' if not measured else '`2020 …` columns and the 2020 CPU run'} are the "
                     f"{REFERENCE_LABEL} ({REFERENCE_TITLE}), transcribed from the paper, not "
                     "measured by aslhpc; "
                     "its memory is nvidia-smi's per-process figure read off by hand.")
    for why in (capped(done), shared_host(done)):
        if why:
            items.append(f"{why[0].upper()}{why[1:]}.")
    return [i for i in items if i]


def _caveats_md(out: CollectOutput) -> list[str]:
    items = caveats(out)
    return ["## Caveats", "", *[f"- {i}" for i in items], ""] if items else []


def _reference_section(out: CollectOutput) -> list[str]:
    if out.reference is None:
        return []
    r = out.reference
    lines = [
        f"## Compared with the {REFERENCE_LABEL}",
        "",
        "`2020 …` columns are the published figures; `time / 2020` < 1 means this run was faster; memory "
        "compares per-process totals on both sides (the study's are nvidia-smi process readings).",
        "",
    ]
    for bs, t in out.comparison.items():
        lines += [f"### Batch size {bs}", "", to_markdown(t), ""]
    lines += [f"Verdicts recomputed from the {REFERENCE_LABEL}:", ""]
    return lines + [_verdicts_md(r.verdicts), "", f"Reference conclusions: {r.conclusions.text}", ""]


def _holes_md(a: Analysis) -> list[str]:
    lines = ["## Holes", ""]
    if a.holes.empty:
        lines += ["None: every expected cell has a result.", ""]
    else:
        n = len(a.holes)
        lines += [
            f"{n} cell{' has' if n == 1 else 's have'} no usable result:",
            "",
            to_markdown(a.holes, index=False),
            "",
        ]
    ignored = a.cells.attrs.get("ignored") or []
    if ignored:
        lines += [
            f"Ignored {len(ignored)} director{'y' if len(ignored) == 1 else 'ies'} under `cells/` that "
            f"name{'s' if len(ignored) == 1 else ''} no cell (not in the manifest, no readable result, "
            "not named g<gpus>-b<batch>-r<repeat>): "
            + "; ".join(f"`{i}`" for i in ignored),
            "",
        ]
    lines += ["## Provenance", ""]
    if a.label == REFERENCE_LABEL:
        return lines + [to_markdown(a.cells[["cell_id", "source"]], index=False), ""]
    return lines + [_provenance_md(a.cells), ""]


def render_report(out: CollectOutput, plot_paths: dict[str, Path] | None = None) -> str:
    """report.md as text: tables, time breakdown, plots, verdicts, conclusions, reference, holes,
    provenance."""
    a = out.analysis
    plot_paths = dict(plot_paths or {})
    gap_plot = plot_paths.pop("leakage_gap", None)
    usage_plot = plot_paths.pop("usage", None)
    lines = _header_md(out) + _tables_md(a) + _leakage_md(a, gap_plot, out.exp_dir)
    lines += _breakdown_md(a) + _cpu_reference_md(out)
    if plot_paths:
        lines += ["## Plots", ""]
        for key, p in plot_paths.items():
            rel = p.relative_to(out.exp_dir) if p.is_relative_to(out.exp_dir) else p
            lines += [f"![{key}]({rel.as_posix()})", ""]
    lines += _scaling_md(out, plot_paths.get("scaling")) + _recommendation_md(out)
    lines += _verdicts_section(a) + _caveats_md(out) + _reference_section(out)
    lines += _holes_md(a) + _usage_md(out, usage_plot)
    return "\n".join(lines)


def _scaling_md(out: CollectOutput, plot: Path | None = None) -> list[str]:
    """The scaling model's sentences (T(N) = serial + parallel / N, fitted per series)."""
    if not out.scaling:
        return []
    lines = ["## Scaling model", "",
             "T(N) = serial + parallel / N fitted by non-negative least squares over every measured GPU "
             "count (scaling.csv; predictions.csv extends it to GPU counts not run, with intervals).", ""]
    lines += [f"- {s}" for s in out.scaling] + [""]
    return lines


def write_scaling_outputs(out: CollectOutput, plots: bool) -> tuple[dict[str, Path], Path | None]:
    """scaling.csv, predictions.csv and (with plots) plots/scaling.png; the sentences go on ``out``."""
    from aslhpc.analysis import scaling

    a = out.analysis
    fits = scaling.fit_scaling(a.cells)
    if fits.empty:
        return {}, None
    preds = scaling.predict(fits)
    label = REFERENCE_LABEL if a.label == REFERENCE_LABEL else None
    files = scaling.write_scaling(out.exp_dir, fits, preds, label=label)
    out.scaling = scaling.scaling_sentences(fits, a.summary)
    out.scaling_brief = scaling.scaling_briefs(fits)
    out.predictions = preds
    plot = None
    if plots:
        plot = scaling.scaling_plot(a.cells, fits, out.exp_dir / "plots" / scaling.PLOT_FILE, preds, label)
    return files, plot


def _recommendation_md(out: CollectOutput) -> list[str]:
    """The cheapest configuration within X % of the fastest, and the fastest within a budget."""
    rec = out.recommendation
    if rec is None or not rec.lines():
        return []
    return ["## Recommendation", "",
            "Over the configurations measured on GPUs (a CPU fallback is no GPU figure) and the GPU counts "
            "the scaling model predicts (predictions.csv, labelled predicted); time is a cell's wall clock "
            "(Exec. Time), GPU-hours = GPUs × time / 3600.", "",
            *[f"- {line}" for line in rec.lines()], ""]


def _usage_md(out: CollectOutput, plot: Path | None = None) -> list[str]:
    """What each cell asked for vs used (aslhpc.analysis.efficiency), with its plot when drawn."""
    from aslhpc.analysis.efficiency import markdown

    lines = markdown(_usage(out))
    if lines and plot is not None:
        rel = plot.relative_to(out.exp_dir) if plot.is_relative_to(out.exp_dir) else plot
        lines += [f"![what each cell used]({rel.as_posix()})", ""]
    return lines


def _usage(out: CollectOutput) -> pd.DataFrame:
    """The usage frame the snapshot read (empty when none was)."""
    return out.usage if out.usage is not None else pd.DataFrame()


# --------------------------------------------------------------------------- console


def _rich_table(frame: pd.DataFrame, title: str) -> Table:
    """Values are never wrapped or cut (numbers must stay whole); headers wrap instead."""
    t = Table(title=escape(title), title_justify="left", padding=(0, 1))
    t.add_column(
        str(frame.index.name or ""),
        style="bold",
        no_wrap=True,
        min_width=max((len(str(i)) for i in frame.index), default=1),
    )
    values = frame.to_numpy(dtype=object)
    for j, c in enumerate(frame.columns):
        width = max((len(str(v)) for v in values[:, j]), default=1)
        t.add_column(Text(str(c)), justify="right", no_wrap=True, min_width=width)
    for idx, row in zip(frame.index, values, strict=True):
        t.add_row(Text(str(idx)), *[Text(str(v)) for v in row])
    return t


def print_analysis(console: Console, a: Analysis, comparison: dict[int, pd.DataFrame] | None = None) -> None:
    """The paper tables, verdicts, conclusions and holes, on the terminal."""
    tag = f" — {a.label}"
    for bs, t in a.tables.items():
        console.print(_rich_table(t, f"{a.name}: batch size {bs}{tag}"))
    for bs, t in (comparison or {}).items():
        console.print(_rich_table(t, f"batch size {bs}: this run vs {REFERENCE_LABEL}"))
    vt = Table(title=f"Hypotheses{tag}", title_justify="left", show_lines=True)
    for col in ("", "verdict", "2020 paper", "evidence"):
        vt.add_column(col)
    colour = {"supported": "green", "not supported": "red", "inconclusive": "yellow"}
    for v in a.verdicts:
        vt.add_row(
            Text(f"{v.hypothesis}: {v.statement}"),
            Text(v.verdict, style=colour.get(v.verdict, "")),
            paper_verdicts().get(v.hypothesis, ""),
            Text(v.evidence),
        )
    console.print(vt)
    console.print(Panel(Text(a.conclusions.text), title=escape(f"Conclusions{tag}"), title_align="left"))
    if not a.holes.empty:
        ht = Table(title=f"Holes ({len(a.holes)})", title_justify="left")
        for c in ("cell_id", "state", "reason"):
            ht.add_column(c)
        for r in a.holes.head(20).itertuples():
            ht.add_row(Text(str(r.cell_id)), Text(str(r.state)), Text(str(r.reason)))
        console.print(ht)
        if len(a.holes) > 20:
            console.print(f"… and {len(a.holes) - 20} more holes (see report.md)")
    ignored = a.cells.attrs.get("ignored") or []
    if ignored:
        console.print(Text(f"ignored under cells/ (no cell identity): {'; '.join(ignored)}"))


def summary_input(a: Analysis, reference: Analysis | None = None) -> SummaryInput:
    """The console summary's view of an analysis (and the reference's, for the comparison lines)."""
    c = a.conclusions
    return SummaryInput(
        name=a.name,
        label=a.label,
        summary=a.summary,
        cells=a.cells,
        verdicts=a.verdicts,
        fastest=c.fastest,
        fastest_time_s=c.fastest_time_s,
        most_accurate=c.most_accurate,
        most_accurate_test_acc=c.most_accurate_test_acc,
        reference=reference.summary if reference is not None else None,
        reference_verdicts=reference.verdicts if reference is not None else (),
        leakage=gap_line(a.gap, h1_by_split(a)) if a.gap is not None else "",
    )


def print_full(console: Console, out: CollectOutput) -> None:
    """Every table, as ``collect --verbose`` prints them (report.md holds the same)."""
    print_analysis(console, out.analysis, out.comparison)
    if out.analysis.gap is not None and (line := gap_line(out.analysis.gap, h1_by_split(out.analysis))):
        console.print(Text(line))
    if out.reference is not None:
        console.print(
            Panel(
                out.reference.conclusions.text,
                title=f"Conclusions — {REFERENCE_LABEL}",
                title_align="left",
            )
        )
        for v in out.reference.verdicts:
            console.print(f"{v.hypothesis} ({REFERENCE_LABEL}): {v.verdict} — {v.evidence}")


# --------------------------------------------------------------------------- files


def _finite(obj: Any) -> Any:
    """``obj`` with NaN/inf replaced by None: strict JSON parsers reject bare NaN."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _verdicts_json(a: Analysis) -> dict[str, Any]:
    return {
        "label": a.label,
        "ci": a.ci,
        "h1_threshold": a.h1_threshold,
        "h4_r2": a.h4_r2,
        "h3_metric": a.settings.h3_metric,
        "settings": dataclasses.asdict(a.settings),
        "paired_tests": a.evidence.paired.to_dict(orient="records"),
        "h4_reading": H4_READING,
        "h4_literal_aside": dataclasses.asdict(a.h4_literal) if a.h4_literal else None,
        "verdicts": [dataclasses.asdict(v) for v in a.verdicts],
        "paper_verdicts": paper_verdicts(),
        "conclusions": dataclasses.asdict(a.conclusions),
    }


_DEVICE_COL = re.compile(r"^gpu(\d+)_gb(_hw)?$")


def csv_memory_names(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with CSV headers that say what each memory figure measures: the NVML device-wide peaks
    ``gpu<i>_gb`` / ``total_gpu_gb`` become ``gpu<i>_device_gb`` / ``total_device_gb``; the per-process
    ``gpu<i>_proc_gb`` / ``total_proc_gb`` and ``data_device_gb`` keep their names."""
    names = {}
    for c in frame.columns:
        if m := _DEVICE_COL.match(str(c)):
            names[c] = f"gpu{m[1]}_device_gb{m[2] or ''}"
        elif str(c).startswith("total_gpu_gb"):
            names[c] = "total_device_gb" + str(c)[len("total_gpu_gb") :]
    return frame.rename(columns=names)


def write_outputs(out: CollectOutput, plots: bool = True) -> CollectOutput:
    """Write CSV/Markdown/JSON/PNG and report.md into ``out.exp_dir``, all atomically."""
    d = out.exp_dir
    a = out.analysis
    files: dict[str, Path] = {}
    cells = a.cells.copy()
    summary = a.summary.copy()
    if a.label == REFERENCE_LABEL:
        cells["source"] = REFERENCE_LABEL
        summary.insert(0, "source", REFERENCE_LABEL)
    files["cells.csv"] = atomic_write_text(d / "cells.csv", csv_memory_names(cells).to_csv(index=False))
    files["summary.csv"] = atomic_write_text(d / "summary.csv", csv_memory_names(summary).to_csv(index=False))
    summary_md = f"# {a.name}: all configurations ({a.label})\n\n" + to_markdown(
        summary_view(a.summary), index=False
    )
    files["summary.md"] = atomic_write_text(d / "summary.md", summary_md)
    md = [f"# {a.name}: tables in the paper's layout ({a.label})", ""]
    for bs, t in a.tables.items():
        csv = t.assign(source=REFERENCE_LABEL) if a.label == REFERENCE_LABEL else t
        files[f"table_b{bs}.csv"] = atomic_write_text(d / f"table_b{bs}.csv", csv.to_csv())
        md += [f"## Batch size {bs}", "", to_markdown(t), ""]
    files["tables.md"] = atomic_write_text(d / "tables.md", "\n".join(md))
    if out.reference is not None:
        cmp_md = [f"# This run vs the {REFERENCE_LABEL}", ""]
        frames = []
        for bs, t in out.comparison.items():
            frames.append(
                t.reset_index()
                .rename(columns={"": "row"})
                .assign(batch_size=bs, reference_source=REFERENCE_LABEL)
            )
            cmp_md += [f"## Batch size {bs}", "", to_markdown(t), ""]
        files["comparison.csv"] = atomic_write_text(
            d / "comparison.csv", pd.concat(frames).to_csv(index=False)
        )
        files["comparison.md"] = atomic_write_text(d / "comparison.md", "\n".join(cmp_md))
    scaling_files, scaling_plot = write_scaling_outputs(out, plots)
    files.update(scaling_files)
    if a.label != REFERENCE_LABEL or out.predictions is not None:
        out.recommendation = recommend(candidates(a.summary, out.predictions), out.within,
                                       out.budget_gpu_hours)
    payload = _verdicts_json(a)
    payload["scaling"] = out.scaling
    payload["recommendation"] = out.recommendation.lines() if out.recommendation is not None else []
    if a.by_split and a.gap is not None:
        payload["by_split"] = {kind: _verdicts_json(sub) for kind, sub in a.by_split.items()}
        payload["leakage_gap"] = a.gap.to_dict(orient="records")
        files["leakage_gap.csv"] = atomic_write_text(d / "leakage_gap.csv", a.gap.to_csv(index=False))
    if out.reference is not None:
        payload["reference"] = _verdicts_json(out.reference)
    files["verdicts.json"] = atomic_write_text(
        d / "verdicts.json",
        json.dumps(_finite(payload), indent=2, sort_keys=True, default=str, allow_nan=False) + "\n",
    )
    plot_paths: dict[str, Path] = {}
    if plots:
        from aslhpc.analysis.plots import write_plots  # matplotlib costs ~1 s to import: only when plotting

        ref_summary = out.reference.summary if out.reference is not None else None
        plot_paths = write_plots(a.summary, d / "plots", a.label, ref_summary)
        if a.gap is not None and a.gap["gap_pp"].notna().any():
            from aslhpc.analysis.leakage import plot_gap

            plot_paths["leakage_gap"] = plot_gap(a.gap, d / "plots" / "leakage_gap.png")
        from aslhpc.analysis.efficiency import plot_usage

        usage_plot = plot_usage(_usage(out), d / "plots" / "usage.png")
        if usage_plot is not None:
            plot_paths["usage"] = usage_plot
        if scaling_plot is not None:
            plot_paths["scaling"] = scaling_plot
        files.update({f"plots/{p.name}": p for p in plot_paths.values()})
    out.report_path = atomic_write_text(d / "report.md", render_report(out, plot_paths))
    files["report.md"] = out.report_path
    out.files = files
    return out


def cpu_reference() -> CpuReference | None:
    """The study's CPU run from the packaged table, or None where it is missing or unreadable (it is
    context, not something a collect should fail over)."""
    path = default_cpu_reference_path()
    if not path.is_file():
        return None
    try:
        return load_cpu_reference(path)
    except AslhpcError:
        return None


def reference_cells(reference: pd.DataFrame, name: str = "lad2020") -> pd.DataFrame:
    """The reference as a matrix whose memory says what it measured: the study's figures are nvidia-smi
    per-process readings, so they go to ``gpu<i>_proc_gb``; device-wide ``gpu<i>_gb`` stays unmeasured."""
    m = reference_matrix(reference, name)
    for c in [c for c in m.columns if c.startswith("gpu") and c.endswith("_gb") and c[3:-3].isdigit()]:
        m[f"{c[:-3]}_proc_gb"] = m[c]
        m[c] = math.nan
    return m


def as_reference(reference: pd.DataFrame | str | Path | None) -> pd.DataFrame | None:
    """A reference table as given, or loaded from its path (None stays None)."""
    if reference is None or isinstance(reference, pd.DataFrame):
        return reference
    return load_reference(reference)


def print_scaling(console: Console, out: CollectOutput, verbose: bool = False) -> None:
    """The scaling model, one line per fit (its sentence with the reason under --verbose and in
    report.md); plain text, so it reads whole when piped."""
    lines = out.scaling if verbose else out.scaling_brief
    if lines:
        console.print(Text("Scaling model T(N) = serial + parallel/N (scaling.csv; why: report.md):"))
        for line in lines:
            console.print(Text(f"  {line}"))
    if out.recommendation is not None:
        rec = out.recommendation.lines() if verbose else out.recommendation.console_lines()
        for line in rec:
            console.print(Text(line))
