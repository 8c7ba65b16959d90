"""``aslhpc collect``: gather every cell's outputs into the study's tables and verdicts.

A thin CLI over :func:`aslhpc.api.collect`; user mistakes print ``error: <one line>`` and exit 2
(docs/design.md).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from aslhpc import api
from aslhpc.analysis import REFERENCE_LABEL, CollectOutput, default_reference_path, load_reference
from aslhpc.api import live_states
from aslhpc.cli import add_experiment, add_results, parser, run_cli
from aslhpc.cli import console as cli_console
from aslhpc.collecting import load_compared
from aslhpc.errors import AslhpcError

__all__ = ["CollectOutput", "live_states", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = parser("collect", "Collect an experiment's cells into the 2020 study's tables, plots, verdicts and "
                          "report.md.")
    add_experiment(p)
    add_results(p)
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
    p.add_argument("--compare", type=Path, metavar="OTHER_RESULTS_DIR",
                   help="put another experiment beside this one in report.md: time, test accuracy and peak "
                   "GPU memory per configuration both completed, with the difference (OTHER_RESULTS_DIR: "
                   "its results folder, or the experiment's own folder)")
    p.add_argument("--out", type=Path, help="output directory of --reference-only (an experiment's report "
                                            "goes into its own folder)")
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
    p.add_argument("--expect", type=Path, metavar="FILE",
                   help="acceptance check: compare time, test accuracy and GPU memory per configuration "
                   "with FILE (the reference CSV format: last month's run, another cluster, the 2020 "
                   "table); exit 1 when any is outside --tolerance")
    p.add_argument("--tolerance", type=_tolerance, default=0.05, metavar="PCT",
                   help="--expect's tolerance, relative to the expected value (default 5%%)")
    p.add_argument("--within", type=_tolerance, default=0.10, metavar="PCT",
                   help="recommendation: the cheapest configuration (GPU-hours) within PCT of the fastest "
                   "(default 10%%)")
    p.add_argument("--budget-gpu-hours", type=float, default=None, metavar="H",
                   help="recommendation: also the fastest configuration within H GPU-hours")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    p.add_argument(
        "--verbose",
        action="store_true",
        help="print every table (paper layout, comparison, verdict evidence), not just the summary",
    )
    return p


def _tolerance(text: str) -> float:
    from aslhpc.analysis.acceptance import parse_tolerance

    try:
        return parse_tolerance(text)
    except ValueError as exc:  # argparse prints it as `argument --tolerance: ...`, exit 2
        raise argparse.ArgumentTypeError(str(exc)) from exc


def pick_experiment(results: Path | None, name: str | None) -> Path:
    """The experiment directory: ``name`` (or its .toml file), or the only one with a manifest there."""
    return api.experiment_dir(name, results)


def main(argv: Sequence[str] | None = None, console: Console | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: _collect(args, console or cli_console()))


def _check_flags(args: argparse.Namespace) -> None:
    """Flags that contradict each other or would be ignored: an error, not a silent choice."""
    if args.reference_only and args.reference:
        raise AslhpcError("--reference and --reference-only conflict: --reference adds the 2020 figures "
                          "beside an experiment, --reference-only analyses them alone; drop one")
    if args.reference_only and args.experiment:
        raise AslhpcError("--reference-only analyses the 2020 figures alone; drop --experiment (or "
                          "--reference-only)")
    if args.compare is not None and args.reference_only:
        raise AslhpcError("--compare puts another experiment beside this one; --reference-only analyses the "
                          "2020 figures alone: drop one")
    if args.out is not None and not args.reference_only:
        raise AslhpcError("--out is the output folder of --reference-only; an experiment's report goes into "
                          "its own folder (<results>/<experiment>/): drop --out")


def _collect(args: argparse.Namespace, console: Console) -> int:
    if not 0.0 < args.ci < 1.0:
        raise AslhpcError(f"--ci {args.ci} must be between 0 and 1 (e.g. 0.95)")
    if not 0.0 <= args.h4_r2 <= 1.0:
        raise AslhpcError(f"--h4-r2 {args.h4_r2} must be between 0 and 1 (e.g. 0.9)")
    _check_flags(args)
    if args.budget_gpu_hours is not None and not args.budget_gpu_hours > 0:
        raise AslhpcError(f"--budget-gpu-hours {args.budget_gpu_hours} must be a positive number of hours")
    expected = load_reference(args.expect) if args.expect is not None else None  # its errors come first
    results = Path(args.results or "results")
    ref_path = args.reference_file or default_reference_path(results)
    common = {
        "console": console,
        "ci": args.ci,
        "h1_threshold": args.h1_threshold,
        "h3_metric": args.h3_metric,
        "h4_r2": args.h4_r2,
        "verbose": args.verbose,
        "within": args.within,
        "budget_gpu_hours": args.budget_gpu_hours,
    }
    if args.reference_only:
        ref = load_reference(ref_path)
        name = ref_path.stem
        out_dir = args.out or results / f"{name}-analysis"
        out = api.collect_reference(ref, out_dir, plots=not args.no_plots, name=name, **common)
    else:
        exp_dir = pick_experiment(args.results, args.experiment)
        if args.results is None:  # an experiment file's own results folder holds its reference copy, if any
            ref_path = args.reference_file or default_reference_path(exp_dir.parent)
        ref = load_reference(ref_path) if args.reference or args.reference_file else None
        other = None  # read (and its errors raised) before anything is written
        if args.compare is not None:
            other = load_compared(args.compare, allow_mixed_splits=args.allow_mixed_splits)
        out = api.collect(exp_dir, reference=ref, compare=other, allow_mixed_splits=args.allow_mixed_splits,
                          plots=not args.no_plots, **common)
    ignored = out.analysis.cells.attrs.get("ignored") or []
    if ignored and not args.verbose:  # a note, not a result: stderr (--verbose lists them with the tables)
        print(f"note: ignored under cells/ (no cell identity): {'; '.join(ignored)}", file=sys.stderr)
    console.print(f"report: {out.report_path}", soft_wrap=True)
    if expected is not None:
        from aslhpc.analysis.acceptance import accept

        result = accept(out.analysis.summary, expected, args.tolerance, str(args.expect))
        for line in result.lines():
            console.print(line, highlight=False, markup=False, soft_wrap=True)
        return 0 if result.passed else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
