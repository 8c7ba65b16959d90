"""``python -m aslhpc``: which commands there are (each is ``python -m aslhpc.NAME`` or ``aslhpc-NAME``)."""

import sys

from aslhpc import __version__

COMMANDS = (
    ("demo", "the whole flow on this machine: generated data, the smoke experiment, matrix + report"),
    ("submit", "validate an experiment, then one SLURM job per cell (or run them here)"),
    ("status", "progress of every cell, from any shell"),
    ("collect", "tables, plots, hypothesis verdicts and report.md"),
    ("doctor", "check this machine, or a node of the job's shape, before the matrix runs"),
    ("train", "train one cell (resumable)"),
    ("predict", "letters and text from images, folders, video, a camera"),
    ("bench", "the 2020 data pipeline against the fast one, side by side"),
)


def main() -> int:
    print(f"aslhpc {__version__}: the 2020 ASL-alphabet data-parallel study as SLURM jobs\n")
    for name, what in COMMANDS:
        print(f"  python -m aslhpc.{name:<8} {what}")
    print("\nEach takes --help and --version.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
