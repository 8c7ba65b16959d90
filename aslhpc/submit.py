"""``aslhpc submit [JOB.toml | --experiment NAME_OR_TOML]``: one SLURM job per experiment cell.

Validates everything first (dataset, partition, reservation, GPUs per node, ...) and submits
nothing if anything is wrong. Then submits and exits, printing one line per cell; ``--wait``
follows the jobs live. Re-running it is safe: completed and live cells are skipped, failed ones
are resubmitted with ``--retry-failed``. Without SLURM the cells run here (``--cluster local``),
in the foreground, or with ``--detach`` in the background, surviving the shell.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

from aslhpc import api
from aslhpc.cli import (
    MIN_INTERVAL_S,
    add_experiment,
    add_results,
    add_train_flags,
    interval,
    parser,
    positive_int,
    run_cli,
    train_fields,
)
from aslhpc.cli import console as cli_console
from aslhpc.errors import AslhpcError
from aslhpc.invocation import aslhpc_command, python_command
from aslhpc.orchestration.arrays import DEFAULT_SUBMIT_TIMEOUT_S
from aslhpc.orchestration.backend import CLUSTERS
from aslhpc.orchestration.detach import is_detached_child, start_detached, strip_detach
from aslhpc.orchestration.experiment import ExperimentSpec, Overrides, parse_int_list, parse_splits
from aslhpc.orchestration.submission import RoundPolicy, SubmitOptions, SubmitResult
from aslhpc.training.config import PER_CELL, STRATEGIES

DEFAULT_JOB = "lad2020"
#: --until-conclusive without --max-rounds
DEFAULT_MAX_ROUNDS = 3
#: --wait refresh period: polite to a shared controller (the demo passes its own short one)
WAIT_INTERVAL_S = 30.0
#: [train] flags that Overrides carries itself (apply_overrides checks --split against a splits axis)
_OVERRIDE_TRAIN = ("epochs", "allow_cpu", "pipeline", "split", "split_seed", "max_steps")
_CLUSTER_FLAGS = ("partition", "reservation", "gpu_type", "time", "mem", "cpus_per_gpu", "gpus_per_node",
                  "preamble", "constraint", "exclude", "account", "qos")


def build_parser() -> argparse.ArgumentParser:
    # No abbreviations: the background copy of a --detach run drops the exact flag (detach.strip_detach).
    p = parser("submit", __doc__.splitlines()[0].replace("``", ""), allow_abbrev=False)
    p.add_argument("job", nargs="?", metavar="JOB.toml",
                   help=f"experiment file or name (default {DEFAULT_JOB}); the same as --experiment")
    add_experiment(p, DEFAULT_JOB)
    o = p.add_argument_group("overrides (win over the file)")
    o.add_argument("--data", help="dataset directory: the Kaggle ASL Alphabet layout or any ImageFolder")
    add_results(o)
    o.add_argument("--gpus", type=_int_list, help="GPU counts, e.g. 1,2")
    o.add_argument("--batch-sizes", type=_int_list, help="batch sizes, e.g. 128,256")
    o.add_argument("--strategy", type=_strategies, help="dp, ddp or dp,ddp")
    o.add_argument("--repeats", type=positive_int, help="jobs per cell, each with seed + repeat")
    o.add_argument("--splits", type=parse_splits, help="random,blocked: the split as a matrix axis "
                                                        "(cells per split, same seed)")
    t = p.add_argument_group("[train] overrides (one per [train] key; default: the file's value)")
    add_train_flags(t, exclude=PER_CELL, keep_defaults=False)
    c = p.add_argument_group("[cluster] overrides")
    c.add_argument("--partition")
    c.add_argument("--reservation", help="SLURM reservation ('' for none)")
    c.add_argument("--gpu-type", help="GPU type in the gres request, e.g. v100-sxm2 (gpu:<type>:N)")
    c.add_argument("--time", help="time limit per job: minutes, H:MM:SS or D-HH:MM:SS")
    c.add_argument("--mem", help="memory per node, e.g. 16G or 95000M")
    c.add_argument("--cpus-per-gpu", type=positive_int)
    c.add_argument("--gpus-per-node", type=int,
                   help="GPUs per node; a wider ddp cell spans nodes (0 = each cell on one node)")
    c.add_argument("--preamble", help="sbatch_templates/NAME.sh setup lines, or a path to a .sh file ('' "
                                      "for none)")
    c.add_argument("--constraint", help="sbatch --constraint: node features, e.g. 'v100&ib' ('' for none)")
    c.add_argument("--exclude", help="sbatch --exclude: nodes to avoid, e.g. 'node[01-02]' ('' for none)")
    c.add_argument("--account", help="sbatch --account to charge ('' for none)")
    c.add_argument("--qos", help="sbatch --qos ('' for none)")
    _running_flags(p.add_argument_group("running"))
    _round_flags(p.add_argument_group("repeats until the verdicts are clear"))
    return p


def _running_flags(r: argparse._ArgumentGroup) -> None:
    r.add_argument("--cluster", choices=CLUSTERS, default="auto",
                   help="auto (default) = SLURM if it answers; this machine only where SLURM is not "
                        "installed")
    r.add_argument("--max-parallel", type=positive_int, default=2,
                   help="cells at once when running locally (default 2)")
    r.add_argument("--dry-run", action="store_true", help="write the sbatch scripts to "
                                                          "results/<exp>/dry-run/ only")
    r.add_argument("--retry-failed", action="store_true",
                   help="resubmit failed, cancelled, timed-out, out-of-memory and node-fail cells")
    r.add_argument("--wait", action="store_true", help="stay and show live progress until all cells end")
    r.add_argument("--detach", action="store_true",
                   help="local runs: run in the background, in a session of its own (closing the shell does "
                        "not stop it), logging to results/<exp>/submit-<time>-<pid>.log; returns once the "
                        "cells run")
    r.add_argument("--interval", type=interval("--interval"), default=WAIT_INTERVAL_S, metavar="SECONDS",
                   help=f"--wait refresh period, seconds (default {WAIT_INTERVAL_S:.0f}, at least "
                        f"{MIN_INTERVAL_S:.0f}: one sacct and one squeue call for your jobs per refresh)")
    r.add_argument("--collect", action="store_true",
                   help="also submit one small job that runs collect (report.md) when the last cell ends; "
                        "submitting again replaces it")
    r.add_argument("--no-array", dest="arrays", action="store_false",
                   help="one SLURM job per cell (default: cells of one job shape go into one job array)")
    r.add_argument("--array-parallelism", type=positive_int, metavar="N",
                   help="tasks of one job array running at once (default: [cluster] array_parallelism, 4)")
    r.add_argument("--submit-timeout", type=float, default=DEFAULT_SUBMIT_TIMEOUT_S, metavar="SECONDS",
                   help="how long, in all, to wait and retry when sbatch is refused for submit limits "
                        f"(MaxSubmitJobs; default {DEFAULT_SUBMIT_TIMEOUT_S:.0f})")
    r.add_argument("--verbose", action="store_true", help="warnings in full (default: their first clause)")
    r.add_argument("--list", action="store_true",
                   help="list the experiments and sbatch preambles you can name, and where each comes from")


def _round_flags(u: argparse._ArgumentGroup) -> None:
    u.add_argument("--until-conclusive", action="store_true",
                   help="after each round, run one more repeat of just the configurations whose overlapping "
                   "intervals keep a verdict open; stop when none is left (or it cannot be settled by "
                   "repeats), or the rounds or budget are spent. Locally (or with --wait) in the foreground; "
                   "on SLURM the dependent job of each round submits the next")
    u.add_argument("--max-rounds", type=positive_int, metavar="R",
                   help=f"at most R rounds, the first included (default {DEFAULT_MAX_ROUNDS})")
    u.add_argument("--budget-gpu-hours", type=positive_float, metavar="H",
                   help="no round that would take the GPU-hours spent (exec time x GPUs) past H")
    u.add_argument("--next-round", action="store_true",
                   help="take the rounds' next step for --experiment NAME in --results: decide after the "
                   "last round, write its report, submit the next round (what the dependent job runs)")


def positive_float(text: str) -> float:
    """argparse type: a number > 0 (a budget of 0 or less, or nan, can never be met)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def spec_from_args(args: argparse.Namespace) -> ExperimentSpec:
    """The experiment file with the flags that were given (None = the file's value)."""
    if args.job and args.experiment and args.job != args.experiment:
        raise AslhpcError(f"two experiments given ({args.job} and --experiment {args.experiment}); "
                          "name one")
    train_keys = [f.name for f in train_fields(PER_CELL)]
    overrides = Overrides(
        data=args.data, results=args.results, gpus=args.gpus, batch_sizes=args.batch_sizes,
        strategies=args.strategy, repeats=args.repeats, splits=args.splits,
        **{k: getattr(args, k) for k in _OVERRIDE_TRAIN}, **{k: getattr(args, k) for k in _CLUSTER_FLAGS})
    train = {k: getattr(args, k) for k in train_keys if k not in _OVERRIDE_TRAIN}
    return api.load_experiment(args.job or args.experiment or DEFAULT_JOB, overrides, train)


def options_from_args(args: argparse.Namespace) -> SubmitOptions:
    if (args.max_rounds is not None or args.budget_gpu_hours is not None) and not args.until_conclusive:
        flag = "--max-rounds" if args.max_rounds is not None else "--budget-gpu-hours"
        raise AslhpcError(f"{flag} only applies to --until-conclusive; add --until-conclusive or drop {flag}")
    until = None
    if args.until_conclusive and not args.dry_run:
        until = RoundPolicy(args.max_rounds or DEFAULT_MAX_ROUNDS, args.budget_gpu_hours)
    return SubmitOptions(cluster=args.cluster, dry_run=args.dry_run, retry_failed=args.retry_failed,
                         max_parallel=args.max_parallel, arrays=args.arrays,
                         array_parallelism=args.array_parallelism,
                         submit_timeout_s=max(0.0, args.submit_timeout), collect=args.collect, until=until,
                         chain=until is not None and not args.wait)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if args.list:
        print(list_text())
        return 0
    return run_cli(lambda: _submit(argv, args))


def _submit(argv: list[str], args: argparse.Namespace) -> int:
    console, err = cli_console(), cli_console(stderr=True)
    if args.next_round:
        return _next_round(args, console)
    spec = spec_from_args(args)
    options = options_from_args(args)
    if args.detach and not is_detached_child():  # the background copy itself runs in place
        status_cmd = status_command(spec.name, spec.results)
        return _detach(argv, args, spec.experiment_dir, status_cmd, console, err)
    if options.until is not None:
        return rounds_and_show(spec, options, console, interval_s=args.interval, verbose=args.verbose)
    return submit_and_show(spec, options, console, wait=args.wait, interval_s=args.interval,
                           verbose=args.verbose)


def _next_round(args: argparse.Namespace, console) -> int:  # noqa: ANN001
    """``--next-round``: the chain's step for an experiment submitted with --until-conclusive."""
    from aslhpc.rounds import next_round

    if args.job:
        raise AslhpcError("--next-round reads the experiment from its manifest: name it with --experiment "
                          f"NAME (and --results DIR), not {args.job}")
    name = args.experiment or DEFAULT_JOB
    exp_dir = Path(args.results or "results") / name
    if not (exp_dir / "manifest.json").is_file():
        raise AslhpcError(f"no experiment {name!r} in {exp_dir.parent} (no manifest.json); check "
                          "--experiment and --results")
    options = SubmitOptions(cluster=args.cluster, max_parallel=args.max_parallel, arrays=args.arrays,
                            submit_timeout_s=max(0.0, args.submit_timeout), chain=True)
    from aslhpc.orchestration.manifest import load_manifest

    manifest = load_manifest(exp_dir / "manifest.json")
    if manifest is not None and manifest.rounds is not None:
        options = replace(options, until=RoundPolicy(manifest.rounds.max_rounds,
                                                     manifest.rounds.budget_gpu_hours))
    next_round(exp_dir, options, _printer(console, args.verbose))
    return 0


def rounds_and_show(spec: ExperimentSpec, options: SubmitOptions, console, *,  # noqa: ANN001
                    interval_s: float = WAIT_INTERVAL_S, verbose: bool = False) -> int:
    """``--until-conclusive``: every round shown as a plain submit is (waiting on SLURM unless
    ``options.chain``), then how the rounds ended. Returns 1 if a cell failed, 130 if interrupted."""
    from aslhpc.rounds import run_rounds

    codes: list[int] = []

    def submit(s: ExperimentSpec, o: SubmitOptions) -> SubmitResult | None:
        got: list[SubmitResult] = []
        codes.append(submit_and_show(s, o, console, wait=not o.chain, interval_s=interval_s, verbose=verbose,
                                     results=got))
        return got[0] if got and codes[-1] != 130 else None

    decision = run_rounds(spec, options, out=_printer(console, verbose), submit=submit)
    if not decision.text.startswith("round"):
        console.print(decision.text, highlight=False, soft_wrap=True)
    if codes and codes[-1] == 130:
        return 130
    return 1 if any(codes) else 0


def submit_and_show(spec: ExperimentSpec, options: SubmitOptions, console, *, wait: bool = False,  # noqa: ANN001
                    interval_s: float = WAIT_INTERVAL_S, verbose: bool = False,
                    results: list[SubmitResult] | None = None) -> int:
    """Submit (or run here), showing the cells live on a terminal, then one line per cell and what to run
    next; ``wait``: follow SLURM jobs until they end; ``results`` gets the submit's result. Returns the exit
    status (1: a cell failed)."""
    live = _LocalDisplay(console)
    live.manifest = spec.experiment_dir / "manifest.json"
    try:
        result = api.submit(spec, options, out=_printer(console, verbose), on_local_tick=live.tick)
    except KeyboardInterrupt:
        live.stop()
        print("interrupted: cells running on this machine were cancelled (SLURM jobs already submitted keep "
              "going); re-run submit, with --retry-failed for the cancelled cells, to continue",
              file=sys.stderr)
        return 130
    except BaseException:
        live.stop()
        raise
    live.stop(final=True)
    if results is not None:
        results.append(result)
    if result.dry_run_dir is not None:
        _show_dry_run(result, console)
        return 0
    _show_actions(result, console, live.shown)
    console.print(f"status: {status_command(result.experiment, spec.results)}", highlight=False,
                  soft_wrap=True)
    if result.backend.runs_here:
        from aslhpc.status import render_table

        report = api.status(result.manifest.parent)
        if not live.shown:  # a log or pipe saw no live table: print the final one
            console.print(render_table(report))
        return 1 if report.any_failed else 0
    if wait:
        from aslhpc.status import watch

        report = watch(lambda: api.status(result.manifest.parent), interval_s, console)
        return 1 if report.any_failed else 0
    return 0


def _printer(console, verbose: bool):  # noqa: ANN001, ANN202 - rich Console -> out(str)
    """submit's notes as plain lines; a warning shortened to its first clause unless ``verbose``."""

    def out(text: str) -> None:
        if text.startswith("warning: ") and not verbose and ";" in text:
            text = (text.split(";", 1)[0] + f" (details: {aslhpc_command('submit --verbose')}, or "
                    f"{aslhpc_command('doctor')})")
        console.print(text, highlight=False, markup=False, soft_wrap=True)

    return out


def _show_dry_run(result: SubmitResult, console) -> None:  # noqa: ANN001
    n = sum(a.submits for a in result.actions)
    for a in result.actions:
        script = result.dry_run_dir / f"{a.cell.cell_id}.sbatch"
        what = str(script) if a.submits else f"skipped: {a.reason}"
        console.print(f"{a.cell.cell_id:<16} {what}", highlight=False, soft_wrap=True)
    console.print(f"dry run: {n} sbatch script(s) in {result.dry_run_dir}, one per cell; nothing submitted, "
                  "manifest untouched (run one with: sbatch FILE; a real submit puts cells of one job shape "
                  "into one job array)", highlight=False)


def _show_actions(result: SubmitResult, console, live_shown: bool) -> None:  # noqa: ANN001
    for a in result.actions:
        if a.submits and live_shown:
            continue  # the live table on screen has each cell's job and final state
        if a.submits:
            ran = "ran" if result.backend.runs_here else "submitted"
            verb = "resubmitted" if a.action == "retry" else ran
            console.print(f"{a.cell.cell_id:<16} {verb:<11} job {a.job_id}" + (f" ({a.reason})" if a.reason
                                                                               else ""), highlight=False)
        else:
            console.print(f"{a.cell.cell_id:<16} skipped     {a.reason}", highlight=False)
    submitted = sum(a.submits for a in result.actions)
    arrays = f" (as {len(result.arrays)} job array(s): {', '.join(result.arrays)})" if result.arrays else ""
    verb = "run locally" if result.backend.runs_here else "submitted"
    console.print(f"{submitted} job(s) {verb}{arrays}; manifest {result.manifest}", highlight=False)


def list_text() -> str:
    """What ``--list`` prints: each experiment and preamble by name, with its file and where it comes from."""
    from aslhpc.packaged import available, search_dirs

    lines = []
    for kind, title in (("experiment", "experiments (submit NAME or --experiment NAME)"),
                        ("preamble", "sbatch preambles (--preamble NAME or [cluster] preamble)")):
        lines.append(f"{title}; looked up in " + ", then ".join(f"{d} "
                                                                f"({o})" for d, o in search_dirs(kind)) + ":")
        found = available(kind)
        width = max((len(f.name) for f in found), default=0)
        lines += [f"  {f.name:<{width}}  {f.origin:<7}  {f.path}" for f in found] or ["  (none)"]
    return "\n".join(lines)


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return parse_int_list(text)
    except AslhpcError as exc:  # argparse then prints it as `argument --gpus: ...`, exit 2
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _strategies(text: str) -> tuple[str, ...]:
    found = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [s for s in found if s not in STRATEGIES]
    if bad or not found:
        raise argparse.ArgumentTypeError(f"{text!r}: use {', '.join(STRATEGIES)} or a comma list of them")
    return found


def _detach(argv: list[str], args: argparse.Namespace, experiment_dir: Path, status_cmd: str,  # noqa: ANN001
            console, err) -> int:
    """Hand the run to a background submit (see detach.py) and report how it stands."""
    if args.wait or args.dry_run:
        raise AslhpcError("--detach cannot be combined with --wait or --dry-run; drop one of them")
    try:
        d = start_detached(strip_detach(argv), experiment_dir)
    except KeyboardInterrupt:
        err.print("interrupted: the background submit was stopped (its running cells, if any, were "
                  "cancelled)")
        return 130
    if d.running:
        console.print(f"running in the background as pid {d.pid}, in its own session (closing this shell "
                      f"does not stop it)\nlog:    {d.log}\nstatus: {status_cmd}\nstop:   kill {d.pid}   "
                      "(cancels its running cells; re-run submit with --retry-failed to "
                      "continue)", highlight=False, markup=False)
        return 0
    target = console if d.returncode == 0 else err
    target.print(d.output.rstrip(), highlight=False, markup=False, soft_wrap=True)
    return int(d.returncode or 0)


def status_command(experiment: str, results: str) -> str:
    """The status command for this experiment, as the user can paste it (this interpreter's aslhpc)."""
    cmd = f"{python_command()} status --experiment {shlex.quote(experiment)}"
    if Path(results) != Path("results"):
        cmd += f" --results {shlex.quote(results)}"
    return cmd + " [--watch]"


class _LocalDisplay:
    """The status table, live, while local cells run in this process (refreshed every 2 s)."""

    def __init__(self, console) -> None:  # noqa: ANN001 - rich Console
        self.console = console
        self.manifest: Path | None = None
        self._live = None
        self._last = 0.0
        self._shown = False

    def tick(self) -> None:
        # Not a terminal (a log, a pipe, a detached run): no live redraws; the final table is printed anyway.
        if self.manifest is None or not self.console.is_terminal or time.monotonic() - self._last < 2.0:
            return
        self._last = time.monotonic()
        from rich.live import Live

        from aslhpc.status import render_table

        table = render_table(api.status(self.manifest.parent))
        if self._live is None:
            self._live = Live(table, console=self.console, refresh_per_second=2)
            self._live.start()
            self._shown = True
        else:
            self._live.update(table)

    @property
    def shown(self) -> bool:
        """Whether the table was drawn live (then its last frame, the final states, stays on screen)."""
        return self._shown

    def stop(self, final: bool = False) -> None:
        """End the live table; ``final``: redraw it with the cells' final states first."""
        if self._live is not None:
            if final and self.manifest is not None:
                from aslhpc.status import render_table

                self._live.update(render_table(api.status(self.manifest.parent)), refresh=True)
            self._live.stop()
            self._live = None


if __name__ == "__main__":
    sys.exit(main())
