"""``python -m aslhpc.collect``: gather every cell's outputs into the study's tables and verdicts.

A thin CLI over :func:`aslhpc.analysis.collect_experiment`; user mistakes print
``error: <one line>`` and exit 2 (docs/design.md).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from aslhpc.analysis import (
    REFERENCE_LABEL,
    CollectOutput,
    collect_experiment,
    collect_reference,
    default_reference_path,
    find_experiments,
    load_reference,
)
from aslhpc.cli import add_version, run_cli
from aslhpc.cli import console as cli_console
from aslhpc.errors import AslhpcError
from aslhpc.orchestration.cellstate import CellRow

__all__ = ["CollectOutput", "collect_experiment", "main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m aslhpc.collect",
        description="Collect an experiment's cells into the 2020 study's tables, plots, verdicts and "
        "report.md.",
    )
    add_version(p)
    p.add_argument("--experiment", help="experiment name under --results (default: the only one there)")
    p.add_argument("--results", default="results", help="results directory (default: results)")
    p.add_argument(
        "--reference", action="store_true", help=f"also show the {REFERENCE_LABEL} beside this run"
    )
    p.add_argument(
        "--reference-only",
        action="store_true",
        help="analyse the published 2020 figures alone (writes <results>/<reference-name>-analysis/)",
    )
    p.add_argument(
        "--reference-file",
        type=Path,
        help="reference table in lad2020.csv format (default: results/reference/lad2020.csv)",
    )
    p.add_argument("--out", type=Path, help="output directory for --reference-only")
    p.add_argument(
        "--ci", type=float, default=0.95, help="confidence level of the intervals over repeats (default 0.95)"
    )
    p.add_argument(
        "--h1-threshold",
        type=float,
        default=95.0,
        help="H1: test accuracy (%%) every configuration must exceed (default 95)",
    )
    p.add_argument(
        "--h3-metric",
        choices=("test_acc", "val_acc"),
        default="test_acc",
        help="H3: accuracy judged (default test_acc)",
    )
    p.add_argument(
        "--h4-r2",
        type=float,
        default=0.9,
        help="H4: least-squares R² that time against batch size must reach to count as linear (default 0.9)",
    )
    p.add_argument(
        "--allow-mixed-splits",
        action="store_true",
        help="analyse cells of one split kind trained on different splits (hashes) anyway; random and "
        "blocked cells (a splits axis) are always analysed side by side",
    )
    p.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    p.add_argument(
        "--verbose",
        action="store_true",
        help="print every table (paper layout, comparison, verdict evidence), not just the summary",
    )
    return p


def pick_experiment(results: Path, name: str | None) -> Path:
    """The experiment directory: ``name``, or the only one with a manifest under ``results``."""
    if name:
        d = results / name
        if not d.is_dir():
            found = find_experiments(results)
            listing = f"found: {', '.join(found)}" if found else "none found"
            raise AslhpcError(
                f"no experiment {name!r} under {results} ({listing}); check --experiment/--results"
            )
        return d
    found = find_experiments(results)
    if len(found) == 1:
        return results / found[0]
    if not found:
        raise AslhpcError(
            f"no experiment with a manifest.json under {results}; run submit first or pass --results DIR"
        )
    raise AslhpcError(
        f"{len(found)} experiments under {results} ({', '.join(found)}); pick one with --experiment NAME"
    )


def live_states(exp_dir: Path) -> dict[str, tuple[str, str]] | None:
    """Each unfinished cell's (state, reason) exactly as ``status`` shows it (one sacct call), so holes
    say why and collect never disagrees with status."""
    manifest = exp_dir / "manifest.json"
    if not manifest.is_file():
        return None
    from aslhpc.orchestration.cellstate import UNKNOWN, experiment_status

    report = experiment_status(manifest)
    # UNKNOWN (SLURM unreachable or the job forgotten) says less than the cell's own files:
    # leave those holes to them.
    return {r.cell_id: (r.state, _reason(r)) for r in report.rows if r.state not in ("COMPLETED", UNKNOWN)}


def _reason(row: CellRow) -> str:
    """The hole's reason: the error line of a failed cell, else where its job stands."""
    if row.failed:
        return row.error + (f" (log: {row.log})" if row.log else "")
    job = f"{row.cluster} job {row.job_id}".strip() if row.job_id else ""
    parts = [job + (f" on {row.node}" if row.node else "")] if job else []
    if row.slurm_state and row.slurm_state.split(" ")[0] != row.state:
        parts.append(f"SLURM: {row.slurm_state}")
    if row.state == "RUNNING" and row.epochs:
        parts.append(f"epoch {row.epoch}/{row.epochs} done")
    if row.elapsed and row.state != "PENDING":
        parts.append(f"elapsed {row.elapsed}")
    if row.state == "PENDING" and not job:
        parts.append("waiting for the local run to start it")
    return ", ".join(p for p in parts if p)


def main(argv: Sequence[str] | None = None, console: Console | None = None) -> int:
    args = _parser().parse_args(argv)
    return run_cli(lambda: _collect(args, console or cli_console()))


def _collect(args: argparse.Namespace, console: Console) -> int:
    if not 0.0 < args.ci < 1.0:
        raise AslhpcError(f"--ci {args.ci} must be between 0 and 1 (e.g. 0.95)")
    if not 0.0 <= args.h4_r2 <= 1.0:
        raise AslhpcError(f"--h4-r2 {args.h4_r2} must be between 0 and 1 (e.g. 0.9)")
    results = Path(args.results)
    ref_path = args.reference_file or default_reference_path(results)
    common = {
        "console": console,
        "ci": args.ci,
        "h1_threshold": args.h1_threshold,
        "h3_metric": args.h3_metric,
        "h4_r2": args.h4_r2,
        "verbose": args.verbose,
    }
    if args.reference_only:
        ref = load_reference(ref_path)
        name = ref_path.stem
        out_dir = args.out or results / f"{name}-analysis"
        out = collect_reference(ref, out_dir, plots=not args.no_plots, name=name, **common)
    else:
        ref = load_reference(ref_path) if args.reference or args.reference_file else None
        exp_dir = pick_experiment(results, args.experiment)
        out = collect_experiment(
            exp_dir,
            reference=ref,
            states=live_states(exp_dir),
            allow_mixed_splits=args.allow_mixed_splits,
            plots=not args.no_plots,
            **common,
        )
    ignored = out.analysis.cells.attrs.get("ignored") or []
    if ignored and not args.verbose:  # a note, not a result: stderr (--verbose lists them with the tables)
        print(f"note: ignored under cells/ (no cell identity): {'; '.join(ignored)}", file=sys.stderr)
    console.print(f"report: {out.report_path}", soft_wrap=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
