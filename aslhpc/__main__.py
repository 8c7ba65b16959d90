"""``aslhpc COMMAND ...`` (or ``python -m aslhpc COMMAND ...``): one entry point for every command.

Each command is also ``python -m aslhpc.COMMAND`` and the console script ``aslhpc-COMMAND``; all three
run the same ``main``. ``aslhpc COMMAND --help`` is that command's own help.
"""

from __future__ import annotations

import importlib
import shutil
import sys
import textwrap
from functools import partial

from aslhpc import __version__

#: (name, what it does), in the order a user meets them; each is the module aslhpc.<name> with a main(argv)
COMMANDS = (
    ("demo", "the whole flow on this machine: generated data, the smoke experiment, matrix + report"),
    ("submit", "validate an experiment, then one SLURM job per cell (or run them here)"),
    ("status", "progress of every cell, from any shell"),
    ("collect", "tables, plots, hypothesis verdicts and report.md"),
    ("cancel", "stop every queued and running job of an experiment (resume with submit --retry-failed)"),
    ("doctor", "check this machine, or a node of the job's shape, before the matrix runs"),
    ("train", "train one cell (resumable)"),
    ("predict", "letters and text from images, folders, video, a camera"),
    ("bench", "the 2020 data pipeline against the fast one, side by side"),
)
NAMES = tuple(name for name, _ in COMMANDS)


def usage(columns: int | None = None) -> str:
    """The command list, wrapped at word boundaries to the terminal (as argparse wraps its help)."""
    cols = max(columns or shutil.get_terminal_size((80, 24)).columns, 40)
    width = max(len(n) for n in NAMES)
    indent = " " * (width + 4)
    wrap = partial(textwrap.fill, width=cols - 1)
    lines = [f"usage: aslhpc COMMAND [options]   (aslhpc {__version__})", "",
             wrap("SLURM job orchestration for the data-parallel scaling study of an image classifier."), "",
             "commands:"]
    lines += [wrap(what, initial_indent=f"  {name:<{width}}  ", subsequent_indent=indent)
              for name, what in COMMANDS]
    lines += ["", wrap("aslhpc COMMAND --help shows a command's options; --version the package version.")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if args else 2
    if args[0] == "--version":
        print(f"aslhpc {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name not in NAMES:
        print(f"error: unknown command {name!r}; use one of {', '.join(NAMES)} (see aslhpc --help)",
              file=sys.stderr)
        return 2
    command = importlib.import_module(f"aslhpc.{name}")
    return int(command.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
