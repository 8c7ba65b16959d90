"""collect's console summary: the result at a glance, in the terminal's width.

One compact matrix (rows: GPU count, columns: batch size; time and test accuracy per cell,
holes by state), the four verdicts one line each with the figure that decided them, the
fastest and most accurate configuration, the 2020 comparison only where both ran the same
configuration, and the path of report.md, which holds every full table (``--verbose`` prints
them too). Nothing here is cut to an ellipsis: a matrix too wide for the terminal stacks each
cell's two figures, then splits into several tables of fewer batch sizes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from aslhpc.analysis.analyze import Analysis, CollectOutput, h1_by_split
from aslhpc.analysis.compare import COMPARED_LABELS, comparison_view, configurations
from aslhpc.analysis.hypotheses import PAPER_VERDICTS, Verdict
from aslhpc.analysis.leakage import gap_line
from aslhpc.analysis.reference import REFERENCE_LABEL
from aslhpc.analysis.tables import (
    comparison_tables,
    configs_line,
    gpu_label,
    main_split_kind,
    reference_only,
)
from aslhpc.analysis.verdicts import paper_verdicts
from aslhpc.states import CellState

#: the study's epochs per cell; fewer make accuracies (and H1/H3) incomparable to its results
STUDY_EPOCHS = 25
COLOURS = {"supported": "green", "not supported": "red", "inconclusive": "yellow"}
CPU_MARK = "*"


@dataclass(frozen=True)
class SummaryInput:
    """What the summary needs, whoever computed it (an experiment or the reference alone)."""

    name: str
    label: str
    summary: pd.DataFrame
    cells: pd.DataFrame
    verdicts: Sequence[Verdict]
    fastest: str | None
    fastest_time_s: float
    most_accurate: str | None
    most_accurate_test_acc: float
    reference: pd.DataFrame | None = None  # the reference's summary, for the comparison lines
    reference_verdicts: Sequence[Verdict] = ()
    leakage: str = ""  # the leakage gap's one line (an experiment over both splits), else ""


def _time(t: float) -> str:
    return f"{t:.2f} s" if t < 100 else f"{t:.1f} s"


def _rows(summary: pd.DataFrame) -> pd.DataFrame:
    main = summary[summary["split_kind"] == main_split_kind(summary)] if len(summary) else summary
    return main


def _series_label(frame: pd.DataFrame, strategy: str, pipeline: str) -> str:
    parts = []
    if frame["strategy"].nunique() > 1:
        parts.append(str(strategy))
    if frame["pipeline"].nunique() > 1:
        parts.append(str(pipeline))
    return "/".join(parts)


def _ran_on_cpu(r: pd.Series) -> bool:
    used = r.get("gpus_used")
    return int(r["n"]) > 0 and r["gpus"] > 0 and used is not None and math.isfinite(used) and used == 0


Cells = dict[tuple[str, int], tuple[str, str]]


def matrix_cells(summary: pd.DataFrame) -> tuple[list[str], list[int], Cells]:
    """Row labels, batch sizes and, per (row, batch size), the (time, accuracy) strings ("" acc for holes)."""
    rows = _rows(summary)
    labels: list[str] = []
    cells: dict[tuple[str, int], tuple[str, str]] = {}
    for (g, strat, pipe), grp in rows.groupby(["gpus", "strategy", "pipeline"], sort=True, dropna=False):
        suffix = _series_label(rows, strat, pipe)
        label = gpu_label(int(g)) + (f" {suffix}" if suffix else "")
        labels.append(label)
        for _, r in grp.iterrows():
            if int(r["n"]) == 0:
                cells[(label, int(r["batch_size"]))] = (str(r["state"]), "")
                continue
            mark = CPU_MARK if _ran_on_cpu(r) else ""
            t = r["exec_time_s"]
            a = r["test_acc"]
            cells[(label, int(r["batch_size"]))] = (
                (_time(t) if math.isfinite(t) else "n/m") + mark,
                f"{a:.2f} %" if math.isfinite(a) else "n/m",
            )
    return labels, sorted({int(b) for b in rows["batch_size"]}), cells


def _matrix_table(
    labels: list[str], sizes: list[int], cells: dict[tuple[str, int], tuple[str, str]], stacked: bool
) -> Table:
    t = Table(box=box.SIMPLE_HEAD, padding=(0, 1), show_edge=False, pad_edge=False)
    t.add_column("GPUs", no_wrap=True, style="bold")
    for bs in sizes:
        t.add_column(f"b={bs}", justify="right", no_wrap=True)
    for label in labels:
        row = []
        for bs in sizes:
            time_s, acc = cells.get((label, bs), ("—", ""))
            sep = "\n" if stacked else " · "
            row.append(Text(time_s + (sep + acc if acc else "")))
        t.add_row(Text(label), *row)
    return t


def print_matrix(console: Console, summary: pd.DataFrame) -> None:
    """The compact matrix of this run."""
    labels, sizes, cells = matrix_cells(summary)
    if labels:
        _print_fitting(console, labels, sizes, cells)


def _print_fitting(
    console: Console, labels: list[str], sizes: list[int], cells: dict[tuple[str, int], tuple[str, str]]
) -> None:
    """A matrix stacked (two lines per cell) or split into several so that it fits ``console.width`` whole."""
    for stacked in (False, True):
        table = _matrix_table(labels, sizes, cells, stacked)
        if _width(console, table) <= console.width:
            console.print(table)
            return
    per = len(sizes)
    while per > 1:
        per -= 1
        chunks = [sizes[i : i + per] for i in range(0, len(sizes), per)]
        tables = [_matrix_table(labels, c, cells, True) for c in chunks]
        if all(_width(console, t) <= console.width for t in tables):
            break
    for t in tables:
        console.print(t)


def _width(console: Console, table: Table) -> int:
    """The width the table needs to show every cell whole (console.measure caps it at the terminal's)."""
    return table.__rich_measure__(console, console.options).maximum


def print_verdicts(console: Console, verdicts: Sequence[Verdict]) -> None:
    """One line per hypothesis (wrapped under its own column when the terminal is narrow): verdict and
    the figure that decided it."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(no_wrap=True)
    grid.add_column(ratio=1, overflow="fold")
    for v in verdicts:
        verdict = Text(v.verdict, style=COLOURS.get(v.verdict, ""))
        grid.add_row(v.hypothesis, verdict, Text(v.key or v.evidence))
    console.print(grid)


def _indent(text: str) -> Padding:
    return Padding(Text(text), (0, 0, 0, 2))


def paper_verdicts_line() -> str:
    """What the 2020 study concluded, grouped: "H1 supported; H2, H3, H4 not supported"."""
    by: dict[str, list[str]] = {}
    for h, v in PAPER_VERDICTS.items():
        by.setdefault(v, []).append(h)
    return "; ".join(f"{', '.join(hs)} {v}" for v, hs in by.items())


def _config_label(label: str | None) -> str:
    return f"b={label}" if label else "none"


def _common(s: SummaryInput) -> tuple[list[tuple[pd.Series, pd.Series]], pd.DataFrame]:
    """(ours, 2020) rows for configurations both ran, and the 2020 rows this run did not have."""
    ref = _rows(s.reference)
    ref = ref[ref["n"] > 0]
    mine = _rows(s.summary)
    mine = mine[mine["n"] > 0]
    pairs = []
    have = set()
    for _, r in mine.iterrows():
        m = ref[(ref["batch_size"] == r["batch_size"]) & (ref["gpus"] == r["gpus"])]
        if len(m):
            pairs.append((r, m.iloc[0]))
            have.add((int(r["batch_size"]), int(r["gpus"])))
    rest = ref[[(int(b), int(g)) not in have for b, g in zip(ref["batch_size"], ref["gpus"], strict=True)]]
    return pairs, rest


def print_reference(console: Console, s: SummaryInput) -> None:
    """This run against the 2020 figures as a matrix of the configurations both ran; the rest in one line."""
    if s.reference is None:
        return
    pairs, rest = _common(s)
    console.print(Text(f"Compared with the {REFERENCE_LABEL}:"))
    if pairs:
        console.print(_indent("time this run / 2020 · test accuracy this run − 2020 (percentage points):"))
        labels: list[str] = []
        cells: dict[tuple[str, int], tuple[str, str]] = {}
        for r, ref in pairs:
            label = gpu_label(int(r["gpus"]))
            if label not in labels:
                labels.append(label)
            ratio = r["exec_time_s"] / ref["exec_time_s"] if ref["exec_time_s"] else math.nan
            diff = r["test_acc"] - ref["test_acc"]
            cells[(label, int(r["batch_size"]))] = (
                f"×{ratio:.2f}" + (CPU_MARK if _ran_on_cpu(r) else ""),
                f"{diff:+.2f} pp" if math.isfinite(diff) else "n/m",
            )
        sizes = sorted({b for _, b in cells})
        _print_fitting(console, labels, sizes, cells)
    if len(rest):
        sizes_s = "/".join(str(int(b)) for b in sorted(set(rest["batch_size"])))
        gpus = sorted({int(g) for g in rest["gpus"]})
        span = f"{gpus[0]}–{gpus[-1]} GPUs" if len(gpus) > 1 else gpu_label(gpus[0])
        lead = "the 2020 study also ran" if pairs else "no configuration in common: the 2020 study ran"
        console.print(_indent(f"{lead} b={sizes_s} × {span}, not run here"))
    if s.reference_verdicts:
        said = ", ".join(f"{v.hypothesis} {v.verdict}" for v in s.reference_verdicts)
        console.print(_indent(f"verdicts recomputed from its numbers: {said}"))


def _epochs_note(cells: pd.DataFrame) -> str:
    """A line when the cells trained fewer epochs than the study ("" otherwise)."""
    done = cells[cells["state"] == CellState.COMPLETED] if "state" in cells else cells
    if "epochs_planned" not in done or done["epochs_planned"].dropna().empty:
        return ""
    epochs = int(done["epochs_planned"].dropna().max())
    if epochs >= STUDY_EPOCHS:
        return ""
    return (
        f"note: {epochs} epoch{'s' if epochs != 1 else ''} per cell (the study ran {STUDY_EPOCHS}): "
        "accuracies, "
        "and the verdicts resting on them, are not comparable with the study's"
    )


def print_summary(console: Console, s: SummaryInput, report_path: object | None = None) -> None:
    """The whole console summary (stdout); the report path comes last."""
    done = int((s.cells["state"] == CellState.COMPLETED).sum()) if "state" in s.cells else len(s.cells)
    console.print(Text(f"{s.name}: {done} of {len(s.cells)} cells completed ({s.label})", style="bold"))
    console.print(Text("Execution time · test accuracy per configuration (holes show their state):"))
    print_matrix(console, s.summary)
    notes = []
    rows = _rows(s.summary)
    if any(_ran_on_cpu(r) for _, r in rows.iterrows()):
        notes.append(f"{CPU_MARK} ran on the CPU (GPU fallback): not GPU scaling")
    if len(rows) and int(rows["n"].max()) > 1:
        notes.append("means over repeats; intervals in report.md")
    for n in notes:
        console.print(Text(n))
    if note := _epochs_note(s.cells):
        console.print(Text(note))
    paper = f" (the 2020 study concluded {paper_verdicts_line()})" if s.label != REFERENCE_LABEL else ""
    console.print(Text(f"Hypotheses{paper}:"))
    print_verdicts(console, s.verdicts)
    if s.leakage:
        console.print(Text(s.leakage))
    if s.fastest:
        console.print(
            Text(
                f"Fastest: {_config_label(s.fastest)} at {_time(s.fastest_time_s)}; most accurate: "
                f"{_config_label(s.most_accurate)} at {s.most_accurate_test_acc:.2f} % test accuracy"
            )
        )
    print_reference(console, s)
    if report_path is not None:
        console.print(
            Text("Every table, plot and the evidence behind each verdict: report.md (or --verbose)")
        )


# --------------------------------------------------------------------------- collect's full output


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
    comparison: dict[int, pd.DataFrame] = {}
    if out.reference is not None:  # the configurations both ran; the reference's others in one line
        comparison = comparison_tables(out.analysis.summary, out.reference.summary, not_run=False)
    print_analysis(console, out.analysis, comparison)
    if out.reference is not None and (missing := reference_only(out.analysis.summary, out.reference.summary)):
        console.print(Text(f"{REFERENCE_LABEL}, not run here: {configs_line(missing)}"))
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


def print_compared(console: Console, out: CollectOutput, verbose: bool = False) -> None:
    """``collect --compare``: how many configurations both experiments completed and the range of the
    time and accuracy differences (the table: report.md, or here with ``verbose``)."""
    c = out.compared
    if c is None:
        return
    this, other = c.labels()
    head = f"Compared with {c.other_name} ({c.other_dir}): {len(c.both)} configuration(s) in both"
    if len(c.both):
        t = (c.both["exec_time_s_other"] / c.both["exec_time_s_this"] - 1) * 100
        d = c.both["test_acc_other"] - c.both["test_acc_this"]
        if t.notna().any():
            head += f"; time {other} vs {this} {t.min():+.1f} % to {t.max():+.1f} %"
        if d.notna().any():
            head += f"; test accuracy {d.min():+.2f} to {d.max():+.2f} pp"
    console.print(Text(head))
    for side, frame in ((this, c.only_this), (other, c.only_other)):
        if len(frame):
            console.print(_indent(f"only in {side}: {configurations(frame)}"))
    if verbose and len(c.both):  # one table per figure: the three side by side do not fit a terminal
        view = comparison_view(c).set_index("batch")
        keys = [k for k in view.columns if not any(k.startswith(label) for label in COMPARED_LABELS)]
        for label in COMPARED_LABELS:
            part = view[keys + [k for k in view.columns if k.startswith(label)]]
            console.print(_rich_table(part, f"{label}: {this} vs {other}"))


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
