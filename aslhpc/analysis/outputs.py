"""The files collect writes into an experiment directory (CSV, Markdown, JSON, PNG, report.md), each
atomically (temp file + rename): a killed collect leaves the earlier files whole.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from aslhpc.analysis.analyze import Analysis, CollectOutput
from aslhpc.analysis.recommend import candidates, recommend
from aslhpc.analysis.reference import REFERENCE_LABEL
from aslhpc.analysis.report import render_report
from aslhpc.analysis.tables import (
    comparison_tables,
    configs_line,
    reference_only,
    summary_view,
    to_markdown,
)
from aslhpc.analysis.verdicts import (
    H4_READING,
    paper_verdicts,
)
from aslhpc.atomic import atomic_write_text


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


def _write_comparison(out: CollectOutput, d: Path) -> dict[str, Path]:
    """comparison.csv (every reference row, "not run" included) and comparison.md (as report.md shows it)."""
    assert out.reference is not None
    a = out.analysis
    files: dict[str, Path] = {}
    cmp_md = [f"# This run vs the {REFERENCE_LABEL}", ""]
    frames = []
    for bs, t in out.comparison.items():  # the CSV keeps every reference row ("not run" included)
        frames.append(
            t.reset_index()
            .rename(columns={"": "row"})
            .assign(batch_size=bs, reference_source=REFERENCE_LABEL)
        )
    for bs, t in comparison_tables(a.summary, out.reference.summary, not_run=False).items():
        cmp_md += [f"## Batch size {bs}", "", to_markdown(t), ""]
    if missing := reference_only(a.summary, out.reference.summary):
        cmp_md += [f"Not run here, so no rows above: {configs_line(missing)}.", ""]
    files["comparison.csv"] = atomic_write_text(
        d / "comparison.csv", pd.concat(frames).to_csv(index=False)
    )
    files["comparison.md"] = atomic_write_text(d / "comparison.md", "\n".join(cmp_md))
    return files


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
        files.update(_write_comparison(out, d))
    scaling_files, scaling_plot = write_scaling_outputs(out, plots)
    files.update(scaling_files)
    if a.label != REFERENCE_LABEL or out.predictions is not None:
        out.recommendation = recommend(candidates(a.summary, out.predictions), out.within,
                                       out.budget_gpu_hours)
    payload = _verdicts_json(a)
    payload["scaling"] = out.scaling
    payload["recommendation"] = out.recommendation.lines() if out.recommendation is not None else []
    if out.rounds:
        payload["rounds"] = out.rounds
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

        usage = out.usage if out.usage is not None else pd.DataFrame()
        usage_plot = plot_usage(usage, d / "plots" / "usage.png")
        if usage_plot is not None:
            plot_paths["usage"] = usage_plot
        if scaling_plot is not None:
            plot_paths["scaling"] = scaling_plot
        files.update({f"plots/{p.name}": p for p in plot_paths.values()})
    out.report_path = atomic_write_text(d / "report.md", render_report(out, plot_paths))
    files["report.md"] = out.report_path
    out.files = files
    return out
