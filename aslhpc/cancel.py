"""``aslhpc cancel [--experiment NAME] [--results DIR]``: stop every queued and running job of an experiment.

The jobs (cells and the dependent collect job) are cancelled with one scancel, a local runner gets
SIGTERM, and what was stopped is recorded beside the manifest; ``aslhpc status`` then shows the cells
CANCELLED and ``aslhpc submit --retry-failed`` resumes them after their last finished epoch.
"""

from __future__ import annotations

import argparse
import sys

from aslhpc import api
from aslhpc.cli import add_experiment, add_results, parser, run_cli
from aslhpc.invocation import aslhpc_command


def build_parser() -> argparse.ArgumentParser:
    p = parser("cancel", __doc__.splitlines()[0].replace("``", ""))
    add_experiment(p)
    add_results(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: _cancel(args))


def _cancel(args: argparse.Namespace) -> int:
    exp_dir = api.experiment_dir(args.experiment, args.results, latest=True)
    done = api.cancel(exp_dir)
    if not (done.jobs or done.local_pids):
        print(f"{exp_dir.name}: nothing queued or running to cancel")
        return 0
    what = [f"SLURM jobs {' '.join(done.jobs)}"] if done.jobs else []
    what += [f"local runner pid {pid}" for pid in done.local_pids]
    print(f"{exp_dir.name}: cancelled {', '.join(what)} ({len(set(done.cells))} cells); "
          f"resume them with: {aslhpc_command('submit --retry-failed')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
