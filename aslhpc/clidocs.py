"""docs/cli.md, the CLI reference, generated from each command's own ``--help`` (a test keeps it in step).

``python -m aslhpc.clidocs`` rewrites the page; ``--check`` exits 1 when the committed page differs.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

from aslhpc.__main__ import COMMANDS

PAGE = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
WIDTH = "100"  # argparse wraps help at $COLUMNS: fixed, so the page does not depend on the terminal


def command_help(name: str) -> str:
    """``aslhpc NAME --help`` as text, wrapped at :data:`WIDTH` columns."""
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        return importlib.import_module(f"aslhpc.{name}").build_parser().format_help().rstrip() + "\n"
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


def render() -> str:
    """The whole page: one section per command, in the order ``aslhpc --help`` lists them."""
    parts = ["# aslhpc command reference\n",
             "Generated from each command's `--help` by `python -m aslhpc.clidocs`; do not edit by hand.",
             "Every command runs as `aslhpc NAME`, `python -m aslhpc NAME`, `python -m aslhpc.NAME` or",
             "`aslhpc-NAME`.\n"]
    for name, what in COMMANDS:
        parts += [f"## aslhpc {name}\n", f"{what}.\n", "```", command_help(name).rstrip(), "```\n"]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if "--check" in args:
        same = PAGE.is_file() and PAGE.read_text(encoding="utf-8") == text
        print(f"{PAGE}: {'in step' if same else 'out of step; run python -m aslhpc.clidocs'}")
        return 0 if same else 1
    PAGE.write_text(text, encoding="utf-8")
    print(PAGE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
