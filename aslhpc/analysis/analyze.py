"""The analysis of one matrix, as data: derived columns, the summary with intervals, the paper's tables,
the verdicts (with the paired per-image tests where the cells saved predictions) and the conclusions.

:func:`analyze` is pure (a frame in, an :class:`Analysis` out); :class:`CollectOutput` is what collect
produced around it. Rendering is :mod:`aslhpc.analysis.report` (Markdown) and
:mod:`aslhpc.analysis.console` (terminal); the files are written by :mod:`aslhpc.analysis.outputs`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from aslhpc.analysis.compare import ExperimentComparison
from aslhpc.analysis.hypotheses import Conclusions, conclusions
from aslhpc.analysis.leakage import (
    LEAK_FREE,
    gap_sentence,
    gap_table,
    has_both,
)
from aslhpc.analysis.matrix import holes
from aslhpc.analysis.paired import (
    attach_block_intervals,
    block_intervals,
    paired_table,
)
from aslhpc.analysis.recommend import Recommendation
from aslhpc.analysis.reference import load_reference, reference_matrix
from aslhpc.analysis.reference_cpu import CpuReference, default_cpu_reference_path, load_cpu_reference
from aslhpc.analysis.tables import (
    derive,
    gpu_label,
    paper_tables,
    summarize,
)
from aslhpc.analysis.verdicts import (
    Evidence,
    Settings,
    Verdict,
    evaluate,
    h4_literal_steps,
)
from aslhpc.errors import AslhpcError
from aslhpc.states import CellState

MEASURED_LABEL = "measured by aslhpc"
#: under the paper-shaped tables: what their GPU columns measure (not quite what the paper's did)


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
    #: collect --compare: this experiment against another, per configuration (None: no --compare)
    compared: ExperimentComparison | None = None
    #: submit --until-conclusive: each round (cells added, verdicts still open, GPU-hours, why it stopped)
    rounds: list[dict[str, Any]] = field(default_factory=list)


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


def recorded_settings(results: Mapping[str, Mapping[str, Any]], cells: pd.DataFrame) -> pd.DataFrame:
    """Per completed cell, what its result.json recorded that the matrix does not carry: ``tf32`` (bool or
    None) and ``clock`` (``time_breakdown.clock``, the clock the times were taken on; None if absent)."""
    ids = [str(c) for c in cells.loc[cells["state"] == CellState.COMPLETED, "cell_id"]]
    rows = []
    for cid in ids:
        res = results.get(cid)
        res = res if isinstance(res, Mapping) else {}
        tb = res.get("time_breakdown") if isinstance(res.get("time_breakdown"), Mapping) else {}
        tf32 = res.get("tf32")
        rows.append({"cell_id": cid, "tf32": tf32 if isinstance(tf32, bool) else None,
                     "clock": str(tb["clock"]) if tb.get("clock") else None})
    return pd.DataFrame(rows, columns=["cell_id", "tf32", "clock"])


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
