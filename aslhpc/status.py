"""``python -m aslhpc.status``: one row per cell of an experiment, from any shell, at any time.

Reads the manifest written by submit, asks SLURM once (sacct; squeue without accounting) and
reads each cell's files (epoch, accuracy, images/s, errors). Exit status 1 when a cell failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aslhpc.errors import AslhpcError, ConfigError
from aslhpc.orchestration.manifest import find_manifests, manifest_path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m aslhpc.status", description=__doc__.splitlines()[0])
    p.add_argument("--experiment", help="experiment name (default: the most recently submitted one)")
    p.add_argument("--results", default="results", help="results directory (default results/)")
    p.add_argument("--watch", nargs="?", type=float, const=5.0, metavar="SECONDS",
                   help="refresh in place every SECONDS (default 5) until all cells end or Ctrl-C")
    return p


def resolve_manifest(results: str, experiment: str | None) -> Path:
    if experiment:
        path = manifest_path(results, experiment)
        if not path.exists():
            known = ", ".join(p.parent.name for p in find_manifests(results)) or "none"
            raise ConfigError(f"no experiment {experiment!r} in {results}/ (found: {known}); "
                              "check --experiment/--results or run python -m aslhpc.submit")
        return path
    found = find_manifests(results)
    if not found:
        raise ConfigError(f"no experiments in {results}/; run python -m aslhpc.submit first or pass --results")
    return found[0]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from rich.console import Console

    from aslhpc.orchestration.cellstate import experiment_status, render_table, watch

    console = Console()
    if not console.is_terminal:  # a log file or pipe: keep whole rows instead of 80 columns of ellipses
        console = Console(width=max(console.width, 200))
    try:
        path = resolve_manifest(args.results, args.experiment)
        if args.watch is not None:
            report = watch(lambda: experiment_status(path), max(args.watch, 0.5), console)
        else:
            report = experiment_status(path)
            console.print(render_table(report))
    except AslhpcError as exc:
        for line in str(exc).splitlines():
            Console(stderr=True).print(f"error: {line}", highlight=False, markup=False)
        return 2
    return 1 if report.any_failed else 0


if __name__ == "__main__":
    sys.exit(main())
