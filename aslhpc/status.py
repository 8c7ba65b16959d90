"""``python -m aslhpc.status``: one row per cell of an experiment, from any shell, at any time.

Reads the manifest written by submit, asks SLURM once (sacct; squeue without accounting) and
reads each cell's files (epoch, accuracy, images/s, errors). Exit status 1 when a cell failed
or is damaged. The table is drawn here; :mod:`aslhpc.orchestration.cellstate` returns the rows.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from aslhpc.cli import add_version, console, one_line, run_cli
from aslhpc.errors import ConfigError
from aslhpc.orchestration.cellstate import (
    NOT_SUBMITTED,
    UNKNOWN,
    CellRow,
    StatusReport,
    experiment_status,
    format_duration,
)
from aslhpc.orchestration.manifest import find_manifests, manifest_path

#: --watch refresh period: a shared controller is asked at most this often (site admins ask >= 30 s)
WATCH_INTERVAL_S = 30.0
_STYLE = {"COMPLETED": "green", "RUNNING": "cyan", "PENDING": "yellow", "REQUEUED": "yellow",
          "COMPLETING": "cyan", NOT_SUBMITTED: "dim", UNKNOWN: "magenta"}
_COLUMNS = (("cell", "left"), ("job", "right"), ("state", "left"), ("node", "left"), ("elapsed", "right"),
            ("epoch", "right"), ("val acc", "right"), ("img/s", "right"), ("ETA", "right"))
# Long values (array task ids, OUT_OF_MEMORY (2 requeues), node lists) fold onto a second line rather
# than lose their end to an ellipsis; short ones never wrap. Headers keep their whole width.
_FOLDS = {"cell", "job", "state", "node"}


def _state_text(r: CellRow) -> Text:
    requeues = f" ({r.restarts} requeue{'s' if r.restarts != 1 else ''})" if r.restarts else ""
    return Text(r.state + requeues, style=_STYLE.get(r.state, "red" if r.failed else ""))


def _problems(report: StatusReport) -> list[Text]:
    """One block per failed or damaged cell, under the table: its error and log, wrapped at spaces.

    Beside the table the error column was a few characters wide at 80 columns and split words;
    on lines of their own, rich wraps at word boundaries (only a word longer than the line folds)."""
    out = []
    for r in report.rows:
        if r.failed and (r.error or r.log):
            text = Text(f"{r.cell_id}: ", style="bold red")
            text.append(r.error or r.state)
            if r.log:
                text.append(f"\n  log: {r.log}", style="dim")
            out.append(text)
    return out


def render_table(report: StatusReport) -> RenderableType:
    """The status table (one row per cell), its summary caption, then the error lines of failed cells."""
    # Horizontal rules only: vertical borders would cost ten of an 80-column terminal's columns.
    table = Table(title=f"{report.experiment}  ({report.manifest})", title_justify="left", expand=False,
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for name, justify in _COLUMNS:
        table.add_column(name, justify=justify, min_width=len(name),  # type: ignore[arg-type]
                         no_wrap=name not in _FOLDS, overflow="fold")
    for r in report.rows:
        table.add_row(
            r.cell_id, r.job_id or "-", _state_text(r), r.node, r.elapsed,
            f"{r.epoch}/{r.epochs}" if r.epochs else "",
            f"{r.val_acc:.2f}%" if r.val_acc is not None else "",
            f"{r.images_per_s:.0f}" if r.images_per_s is not None else "",
            format_duration(r.eta_s))
    if report.collect is not None:
        c = report.collect
        table.add_section()
        table.add_row("collect", c.job_id, _state_text(c), c.node, c.elapsed, "", "", "",
                      "report.md" if c.out_dir else (c.error.removeprefix("waiting: ") if c.error else ""))
    table.caption = report.summary() + (f"\n{report.note}" if report.note else "")
    table.caption_justify = "left"
    problems = _problems(report)
    return Group(table, *problems) if problems else table


def watch(get_report: Callable[[], StatusReport], interval_s: float,
          console: Console | None = None) -> StatusReport:
    """Refresh the table in place (rich Live) until every cell has ended or Ctrl-C; return the last report."""
    from rich.live import Live

    console = console or Console()
    report = get_report()
    with Live(render_table(report), console=console, refresh_per_second=4, transient=False) as live:
        try:
            while not report.all_ended:
                time.sleep(interval_s)
                report = get_report()
                live.update(render_table(report))
        except KeyboardInterrupt:
            pass
    return report


def _adopt_interrupted_submissions(path: Path) -> None:
    """A submit killed between sbatch and writing the job id left an intent: adopt its job (found by its
    tag) so the row shows it, instead of NOT_SUBMITTED while it runs. Notes go to stderr."""
    from aslhpc.orchestration.reconcile import reconcile

    try:
        done = reconcile(path)
    except (RuntimeError, OSError) as exc:  # squeue not answering: show what the files and sacct say
        print(f"note: interrupted submissions not reconciled ({one_line(exc)}); run submit again to settle "
              "them", file=sys.stderr)
        return
    for line in done.lines():
        print(line, file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    p = add_version(argparse.ArgumentParser(prog="python -m aslhpc.status",
                                            description=__doc__.splitlines()[0]))
    p.add_argument("--experiment", help="experiment name (default: the most recently submitted one)")
    p.add_argument("--results", default="results", help="results directory (default results/)")
    p.add_argument("--watch", nargs="?", type=float, const=WATCH_INTERVAL_S, metavar="SECONDS",
                   help=f"refresh in place every SECONDS (default {WATCH_INTERVAL_S:.0f}: each refresh is "
                        "one sacct and one squeue call for your jobs) until all cells end or Ctrl-C")
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
        raise ConfigError(f"no experiments in {results}/; "
                          "run python -m aslhpc.submit first or pass --results")
    return found[0]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: _status(args, console()))


def _status(args: argparse.Namespace, out: Console) -> int:
    path = resolve_manifest(args.results, args.experiment)
    _adopt_interrupted_submissions(path)
    if args.watch is not None:
        report = watch(lambda: experiment_status(path), max(args.watch, 0.5), out)
    else:
        report = experiment_status(path)
        out.print(render_table(report))
        for line in usage_lines(path.parent):
            out.print(line, highlight=False, markup=False)
    return 1 if report.any_failed else 0


def usage_lines(exp_dir: Path) -> list[str]:
    """Finished cells, compact: what they used against what they asked for (their own samples; the full
    table with sacct's CPU time is in collect's report), with the hint where a request was too large."""
    from aslhpc.analysis.efficiency import compact, experiment_efficiency

    try:
        frame = experiment_efficiency(exp_dir, use_sacct=False)
    except Exception:  # noqa: BLE001 - an extra line: never fail status for it
        return []
    if frame.empty:
        return []
    lines = ["used (finished cells; asked: cores/memory per job):"]
    for _, r in frame.iterrows():
        lines.append(f"  {r['cell']:<16} {compact(r)}" + (f"  - {r['hint']}" if r["hint"] else ""))
    return lines


if __name__ == "__main__":
    sys.exit(main())
