"""``aslhpc status``: one row per cell of an experiment, from any shell, at any time.

Reads the manifest written by submit, asks SLURM once (sacct; squeue without accounting) and
reads each cell's files (epoch, accuracy, images/s, errors). Exit status 1 when a cell failed
or is damaged. The table is drawn here; :mod:`aslhpc.orchestration.cellstate` returns the rows.
Read-only: status writes nothing (a cell an interrupted submit left is shown as SUBMITTING, with
its job if squeue finds it; ``aslhpc submit`` adopts it into the manifest).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from aslhpc import api
from aslhpc.cli import add_experiment, add_results, console, interval, parser, run_cli
from aslhpc.orchestration.cellstate import (
    NOT_SUBMITTED,
    UNKNOWN,
    CellRow,
    StatusReport,
    format_duration,
)
from aslhpc.schema import FileProblem, clean_line, clean_text, tail_text_file
from aslhpc.schema.text import LONG_LIMIT
from aslhpc.states import CellState

#: --watch refresh period: a shared controller is asked at most this often (site admins ask >= 30 s)
WATCH_INTERVAL_S = 30.0
#: how status shows a cell an interrupted submit left (a display word, not a CellState: nothing records it)
SUBMITTING = "SUBMITTING"
#: lines of a cell's log that --logs prints
LOG_TAIL = 20
_STYLE = {CellState.COMPLETED: "green", CellState.RUNNING: "cyan", CellState.PENDING: "yellow",
          CellState.REQUEUED: "yellow", CellState.COMPLETING: "cyan", NOT_SUBMITTED: "dim",
          UNKNOWN: "magenta", SUBMITTING: "yellow"}
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


def build_parser() -> argparse.ArgumentParser:
    p = parser("status", __doc__.splitlines()[0].replace("``", ""))
    add_experiment(p)
    add_results(p)
    p.add_argument("--watch", nargs="?", type=interval("--watch"), const=WATCH_INTERVAL_S, metavar="SECONDS",
                   help=f"refresh in place every SECONDS (default {WATCH_INTERVAL_S:.0f}, at least 5: each "
                        "refresh is one sacct and one squeue call for your jobs) until all cells end or "
                        "Ctrl-C")
    p.add_argument("--logs", metavar="CELL", help="print where a cell's job logs are, and the end of each")
    return p


def resolve_manifest(results: str | None, experiment: str | None) -> Path:
    """The manifest of ``--experiment`` (default: the most recently submitted one) under ``--results``."""
    return api.experiment_dir(experiment, results, latest=True) / "manifest.json"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: _status(args, console()))


def _status(args: argparse.Namespace, out: Console) -> int:
    exp_dir = resolve_manifest(args.results, args.experiment).parent
    if args.logs:
        return _logs(exp_dir, args.logs)
    if args.watch is not None:
        report = watch(lambda: _report(exp_dir), args.watch, out)
    else:
        report = _report(exp_dir, notes=True)
        out.print(render_table(report))
        for line in usage_lines(exp_dir, out.width):
            out.print(line, highlight=False, markup=False, soft_wrap=True)
    return 1 if report.any_failed else 0


def _report(exp_dir: Path, notes: bool = False) -> StatusReport:
    """The rows, with the cells an interrupted submit left shown as SUBMITTING (in memory only)."""
    report = api.status(exp_dir)
    left = api.interrupted_submissions(exp_dir)
    for row in report.rows:
        if row.cell_id not in left or (row.job_id and row.state != NOT_SUBMITTED):
            continue
        job_id, state = left[row.cell_id]
        row.state, row.job_id = SUBMITTING, job_id
        row.slurm_state = state
        if notes:
            found = f"job {job_id} ({state})" if job_id else "no job found yet"
            print(f"{row.cell_id:<16} adopted     {found}, left by an interrupted submit; shown here only: "
                  "run submit to record it", file=sys.stderr)
    return report


def _logs(exp_dir: Path, cell_id: str) -> int:
    """``--logs CELL``: each log file's path, then its last lines."""
    logs = api.cell_logs(exp_dir, cell_id)
    if not logs:
        print(f"{cell_id}: no log files yet under {exp_dir} (its job has not started, or ran elsewhere)")
        return 0
    for path in logs:
        print(f"==> {clean_text(path, LONG_LIMIT)} <==")
        try:  # files others could write: the tail only, regular files only, no terminal escapes
            lines = tail_text_file(path).splitlines()
        except FileProblem as exc:
            print(f"(not shown: {exc})")
            continue
        for line in lines[-LOG_TAIL:]:
            print(clean_line(line, 1000))
    return 0


def usage_lines(exp_dir: Path, width: int = 80) -> list[str]:
    """Finished cells, compact: what they used against what they asked for (their own samples; the full
    table with sacct's CPU time is in collect's report), with the hint where a request was too large."""
    from aslhpc.analysis.efficiency import compact
    from aslhpc.snapshot import experiment_efficiency

    try:
        frame = experiment_efficiency(exp_dir, use_sacct=False)
    except Exception:  # noqa: BLE001 - an extra line: never fail status for it
        return []
    if frame.empty:
        return []
    # one cell per line, its hint on a line of its own: nothing wraps raggedly at 80 columns
    lines = ["used (finished cells; asked: cores/memory per job):"]
    for _, r in frame.iterrows():
        lines.append(f"  {r['cell']:<16} {compact(r)}")
        if r["hint"]:
            indent = " " * 19
            lines += textwrap.wrap(f"hint: {r['hint']}", width=max(40, min(width, 120)),
                                   initial_indent=indent,
                                   subsequent_indent=indent + "      ", break_on_hyphens=False)
    return lines


if __name__ == "__main__":
    sys.exit(main())
