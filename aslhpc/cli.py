"""What every ``python -m aslhpc.X`` shares: the one-line error rule, ``--version``, the console.

A CLI parses its flags, then hands its work to :func:`run_cli`: a user error
(:class:`~aslhpc.errors.AslhpcError`) prints ``error: <what is wrong; how to fix it>`` on one line of
stderr and exits 2, without a traceback. Results go to stdout, notes and warnings to stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from rich.console import Console

from aslhpc import __version__
from aslhpc.errors import AslhpcError

# Piped or redirected output (a log file, a job's stdout) has no width; rich would squeeze tables into
# 80 columns of ellipses. One rule for every CLI: that wide, or the terminal's own width.
PIPE_WIDTH = 200


def add_version(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--version``: the package version, the same for every CLI."""
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__} (aslhpc)")
    return parser


def console(stderr: bool = False, **kwargs: object) -> Console:
    """A rich console at the terminal's width, or :data:`PIPE_WIDTH` columns when not a terminal."""
    out = Console(stderr=stderr, **kwargs)
    if not out.is_terminal:
        out = Console(stderr=stderr, width=max(out.width, PIPE_WIDTH), **kwargs)
    return out


def one_line(message: object) -> str:
    """The message on one line, whatever the raiser put in it."""
    return " ".join(str(message).split())


def run_cli(body: Callable[[], int | None]) -> int:
    """Run a CLI's work; its int is the exit status (None = 0). A user error: one ``error:`` line, exit 2."""
    try:
        rc = body()
    except AslhpcError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr, flush=True)
        return 2
    return rc if isinstance(rc, int) else 0
