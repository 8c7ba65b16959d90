"""``python -m aslhpc.doctor``: check this node before a cell runs here (exit 0: a cell would run).

    python -m aslhpc.doctor                           # this machine, default settings
    python -m aslhpc.doctor -e lad2020 --data DIR     # with an experiment's image size, cache, results
    python -m aslhpc.doctor --json report.json        # also the full report as JSON
    python -m aslhpc.doctor --submit lad2020          # the same checks as a short SLURM job per job shape

Checks: package versions and torch's GPU kernels, CUDA devices and one LadNet step on each,
bf16/fp16, cuDNN, NVML (init, UUIDs, per-process memory), the sampler's tick cost,
DataParallel, DDP over two processes, the data, the cache and results directories, and a
throughput probe. See aslhpc/preflight/.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from aslhpc.cli import ArgumentParser, add_version, run_cli
from aslhpc.errors import AslhpcError
from aslhpc.preflight.context import Context, context_for
from aslhpc.preflight.runner import Report, render, run_checks, write_json


def build_parser() -> argparse.ArgumentParser:
    p = add_version(ArgumentParser(prog="aslhpc doctor",
                                            description=__doc__.splitlines()[0]))
    p.add_argument("-e", "--experiment", metavar="JOB", help="jobs/<name>.toml or its name: take the cells' "
                   "image size, cache dir, results dir, data and GPU type from it")
    p.add_argument("--data", help="dataset root to check (default: the experiment's, if given)")
    p.add_argument("--results", help="results directory (default: the experiment's, else ./results)")
    p.add_argument("--cache-dir", default=None,
                   help="the cells' configured cache_dir (default: resolved as a cell does: "
                   "$ASLHPC_CACHE_DIR, node-local scratch with --node-local, ~/.cache/aslhpc)")
    p.add_argument("--node-local", action="store_true", help="resolve the cache dir to $SLURM_TMPDIR/$TMPDIR")
    p.add_argument("--image-size", type=int, default=None, help="default: the experiment's, else 150")
    p.add_argument("--ddp", action="store_true",
                   help="run the 2-process DDP check even with fewer than 2 GPUs")
    p.add_argument("--quick", action="store_true", help="fewer steps and samples (tests, CI)")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON (atomically)")
    p.add_argument("--submit", nargs="?", const="", metavar="JOB",
                   help="run the checks as one short SLURM job per job shape of JOB (default: --experiment)")
    p.add_argument("--timeout", type=float, default=900.0, help="with --submit: seconds to wait for the jobs")
    return p


def context_from_args(args: argparse.Namespace) -> Context:
    """The checks' inputs from doctor's flags (preflight.context.context_for does the work)."""
    return context_for(args.experiment, data=args.data, results=args.results, cache_dir=args.cache_dir,
                       image_size=args.image_size, ddp=args.ddp, quick=args.quick,
                       node_local=args.node_local)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: _doctor(args))


def _doctor(args: argparse.Namespace) -> int:
    width = min(shutil.get_terminal_size((80, 24)).columns, 120)
    if args.submit is not None:
        from aslhpc.preflight.remote import submit_doctor

        job = args.submit or args.experiment
        if not job:
            raise AslhpcError("--submit needs an experiment: --submit jobs/NAME.toml (or -e NAME)")
        return submit_doctor(job, args, width=width)
    ctx = context_from_args(args)
    report = run_checks(ctx, progress=_progress if sys.stderr.isatty() else None)
    if sys.stderr.isatty():
        print("\r\033[K", end="", file=sys.stderr, flush=True)
    print(render(report, width=width), end="")
    if args.json:
        path = write_json(report, args.json)
        print(f"report written to {Path(path)}")
    return report.exit_code


def _progress(name: str) -> None:
    print(f"\r\033[Kchecking {name} ...", end="", file=sys.stderr, flush=True)


def report_from_json(data: dict) -> Report:
    return Report.from_dict(data)


if __name__ == "__main__":
    sys.exit(main())
