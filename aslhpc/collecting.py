"""collect's driver: read the experiment once (:mod:`aslhpc.snapshot`), analyse it (:mod:`aslhpc.analysis`,
pure functions), write the outputs and report.md, print the summary.

``python -m aslhpc.collect`` and :func:`aslhpc.api.collect` are thin layers over these two functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console

from aslhpc.analysis.analyze import (
    CollectOutput,
    analyze,
    as_reference,
    cpu_reference,
    recorded_settings,
    reference_cells,
)
from aslhpc.analysis.compare import compare_experiments
from aslhpc.analysis.console import (
    print_compared,
    print_full,
    print_scaling,
    print_summary,
    summary_input,
)
from aslhpc.analysis.outputs import write_outputs
from aslhpc.analysis.reference import REFERENCE_LABEL
from aslhpc.analysis.tables import comparison_tables
from aslhpc.errors import AslhpcError
from aslhpc.orchestration.manifest import MANIFEST
from aslhpc.snapshot import Snapshot, find_experiments, load_snapshot


def collect_experiment(
    exp_dir: str | Path,
    *,
    reference: pd.DataFrame | str | Path | None = None,
    compare: Snapshot | str | Path | None = None,
    states: dict[str, tuple[str, str]] | None = None,
    console: Console | None = None,
    ci: float = 0.95,
    h1_threshold: float = 95.0,
    h3_metric: str = "test_acc",
    h4_r2: float = 0.9,
    allow_mixed_splits: bool = False,
    plots: bool = True,
    write: bool = True,
    verbose: bool = False,
    accounting: bool = True,
    within: float = 0.10,
    budget_gpu_hours: float | None = None,
) -> CollectOutput:
    """Read an experiment's cells once, analyse them, write the outputs and report.md.

    ``reference`` (a table from :func:`~aslhpc.analysis.reference.load_reference`, or its path) adds the
    published-2020 comparison; ``compare`` (another experiment's snapshot, or its folder or results
    folder, see :func:`compared_dir`) puts that experiment beside this one; ``states`` passes the
    states ``status`` resolved for holes (cell_id ->
    (state, reason), see :func:`aslhpc.snapshot.load_matrix`); ``console`` prints the summary
    (``verbose``: every table); ``write=False`` computes only (nothing touches disk); ``accounting``
    asks sacct for the finished jobs' CPU time (one call); ``within`` / ``budget_gpu_hours`` set the
    recommendation (the cheapest configuration within that share of the fastest; the fastest within it).
    """
    other = load_compared(compare, allow_mixed_splits=allow_mixed_splits) if compare is not None else None
    snap = load_snapshot(exp_dir, states, allow_mixed_splits=allow_mixed_splits,
                         accounting=accounting and write)
    settings = {"ci": ci, "h1_threshold": h1_threshold, "h3_metric": h3_metric, "h4_r2": h4_r2}
    out = analyze_snapshot(snap, **settings)
    if other is not None:
        out = _with_comparison(out, snap, other, settings)
    out.within, out.budget_gpu_hours = within, budget_gpu_hours
    ref = as_reference(reference)
    if ref is not None:
        out.reference = analyze(reference_cells(ref), name="lad2020", label=REFERENCE_LABEL, ci=ci,
                                h1_threshold=h1_threshold, h3_metric=h3_metric, h4_r2=h4_r2)
        out.comparison = comparison_tables(out.analysis.summary, out.reference.summary)
        out.cpu_reference = cpu_reference()
    return _write_and_print(out, console, write=write, plots=plots, verbose=verbose)


def compared_dir(path: str | Path) -> Path:
    """The experiment ``collect --compare PATH`` means: PATH itself when it holds a manifest.json, else the
    only experiment under it. Anything else is one error naming the problem and the fix."""
    path = Path(path)
    if not path.exists():
        raise AslhpcError(f"--compare {path}: no such directory; give another experiment's results folder "
                          "(or the experiment's own folder, <results>/<experiment>)")
    if not path.is_dir():
        raise AslhpcError(f"--compare {path}: not a directory; give another experiment's results folder")
    if (path / MANIFEST).is_file():
        return path
    found = find_experiments(path)
    if not found:
        raise AslhpcError(f"--compare {path}: no experiment in it (no <experiment>/{MANIFEST}); give a "
                          "results folder that holds one, or the experiment's own folder")
    if len(found) > 1:
        raise AslhpcError(f"--compare {path}: {len(found)} experiments ({', '.join(found)}); pick one: "
                          f"--compare {path / found[0]}")
    return path / found[0]


def load_compared(compare: Snapshot | str | Path, *, allow_mixed_splits: bool = False) -> Snapshot:
    """The other experiment of ``--compare``, read once like this one (no accounting: only its figures are
    compared)."""
    if isinstance(compare, Snapshot):
        return compare
    return load_snapshot(compared_dir(compare), allow_mixed_splits=allow_mixed_splits, accounting=False)


def _with_comparison(out: CollectOutput, snap: Snapshot, other: Snapshot,
                     settings: dict[str, Any]) -> CollectOutput:
    """``out`` with ``other`` analysed alike and matched to it per configuration."""
    if other.exp_dir.resolve() == snap.exp_dir.resolve():
        raise AslhpcError(f"--compare {other.exp_dir} is the experiment being collected; give another "
                          "experiment's results folder")
    theirs = analyze_snapshot(other, **settings).analysis
    compared = compare_experiments(out.analysis.summary, theirs.summary, this_name=snap.name,
                                   this_dir=snap.exp_dir, other_name=other.name, other_dir=other.exp_dir)
    out.compared = compared
    return out


def analyze_snapshot(snap: Snapshot, *, ci: float = 0.95, h1_threshold: float = 95.0,
                     h3_metric: str = "test_acc", h4_r2: float = 0.9) -> CollectOutput:
    """The analysis of what :func:`~aslhpc.snapshot.load_snapshot` read (no file touched): verdicts with
    the paired per-image tests where the cells saved predictions, usage and recorded settings."""
    analysis = analyze(snap.cells, name=snap.name, ci=ci, h1_threshold=h1_threshold, h3_metric=h3_metric,
                       h4_r2=h4_r2, predictions=snap.predictions)
    return CollectOutput(exp_dir=snap.exp_dir, analysis=analysis, usage=snap.usage,
                         recorded=recorded_settings(snap.results, analysis.cells), rounds=list(snap.rounds))


def collect_reference(
    reference: pd.DataFrame | str | Path,
    out_dir: str | Path,
    *,
    console: Console | None = None,
    ci: float = 0.95,
    h1_threshold: float = 95.0,
    h3_metric: str = "test_acc",
    h4_r2: float = 0.9,
    plots: bool = True,
    write: bool = True,
    name: str = "lad2020",
    verbose: bool = False,
    within: float = 0.10,
    budget_gpu_hours: float | None = None,
) -> CollectOutput:
    """The same analysis on the published numbers alone (``collect --reference-only``)."""
    ref = as_reference(reference)
    assert ref is not None
    analysis = analyze(reference_cells(ref, name), name=name, label=REFERENCE_LABEL, ci=ci,
                       h1_threshold=h1_threshold, h3_metric=h3_metric, h4_r2=h4_r2)
    out = CollectOutput(exp_dir=Path(out_dir), analysis=analysis, cpu_reference=cpu_reference(),
                        within=within, budget_gpu_hours=budget_gpu_hours)
    return _write_and_print(out, console, write=write, plots=plots, verbose=verbose)


def _write_and_print(out: CollectOutput, console: Console | None, *, write: bool, plots: bool,
                     verbose: bool) -> CollectOutput:
    """The files (``write``), then the terminal: every table (``verbose``) or the summary, and the scaling
    model and recommendation lines."""
    if write:
        write_outputs(out, plots=plots)
    if console is not None:
        if verbose:
            print_full(console, out)
        else:
            print_summary(console, summary_input(out.analysis, out.reference), out.report_path)
        print_scaling(console, out, verbose)
        print_compared(console, out, verbose)
    return out
