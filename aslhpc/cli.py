"""What every ``aslhpc <command>`` shares: its parser, the shared options, the one-line error rule, output.

This is the one module of option definitions (as pip's ``cmdoptions``): ``--experiment``,
``--results`` and ``--version`` are declared here once and mean the same in every command.

- ``--experiment NAME_OR_TOML``: an experiment by name (``jobs/NAME.toml`` or a shipped one, and its
  folder ``<results>/NAME``) or a path to its ``.toml`` file (then its name and its results folder).
- ``--results DIR``: where experiments' folders are (default: the experiment file's ``results``, else
  ``./results``).

A CLI parses its flags with :class:`ArgumentParser` (a usage error is one line naming the flag the user
typed, and "see --help"), then hands its work to :func:`run_cli`: a user error
(:class:`~aslhpc.errors.AslhpcError`) prints ``error: <what is wrong; how to fix it>`` on one line of
stderr and exits 2, without a traceback. Results go to stdout, notes and warnings to stderr.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import MISSING, Field, fields
from typing import Any, NoReturn

from rich.console import Console

from aslhpc import __version__
from aslhpc.errors import AslhpcError

# Piped or redirected output (a log file, a job's stdout) has no width; rich would squeeze tables into
# 80 columns of ellipses. Wide enough for any table, and rich pads nothing: lines end at their last
# character (soft_wrap, see :func:`console`).
PIPE_WIDTH = 200
#: the most often a refresh (--watch, --interval) may ask a shared controller: at most every 5 s
MIN_INTERVAL_S = 5.0
#: write errors that are the disk's or the mount's, not a bug: one line naming the file (run_cli)
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM})


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's error rule: ``error: --epochs: invalid int value: '2.5' (see aslhpc
    train --help)``, one line on stderr, exit 2 (argparse prints the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        text = one_line(message).removeprefix("argument ")
        self.exit(2, f"error: {text} (see {self.prog} --help)\n")


def parser(command: str, description: str, **kwargs: Any) -> ArgumentParser:
    """The parser of ``aslhpc COMMAND`` (its usage line says so), with ``--version``."""
    p = ArgumentParser(prog=f"aslhpc {command}", description=description, **kwargs)
    add_version(p)
    return p


def add_version(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--version``: the package version, the same for every CLI."""
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__} (aslhpc)")
    return p


def add_experiment(p: argparse.ArgumentParser, default: str = "", *short: str) -> None:
    """``--experiment NAME_OR_TOML``: the same meaning in every command (module docstring)."""
    fallback = f"default {default}" if default else "default: the only (status: the latest) one there"
    p.add_argument(*short, "--experiment", metavar="NAME_OR_TOML",
                   help=f"an experiment's name (its folder <results>/NAME, its file jobs/NAME.toml) or its "
                        f".toml file ({fallback})")


def add_results(p: argparse.ArgumentParser) -> None:
    """``--results DIR``: the folder holding experiments' folders (module docstring)."""
    p.add_argument("--results", metavar="DIR",
                   help="folder of the experiments' results (default: the experiment file's, else ./results)")


def interval(flag: str) -> Callable[[str], float]:
    """An argparse type for a refresh period: a finite number of seconds, floored at :data:`MIN_INTERVAL_S`
    (a shared controller is asked at most that often); NaN, inf and negative numbers are usage errors."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds (at least "
                                             f"{MIN_INTERVAL_S:.0f})")
        return max(value, MIN_INTERVAL_S)

    parse.__name__ = flag
    return parse


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return value


# --------------------------------------------------------------------------- TrainConfig fields as flags

_TYPES: dict[str, type] = {"int": int, "float": float, "str": str}


def train_fields(exclude: Iterable[str] = ()) -> list[Field]:
    """The :class:`~aslhpc.training.config.TrainConfig` fields that become flags, less ``exclude``."""
    from aslhpc.training.config import TrainConfig

    skip = set(exclude)
    return [f for f in fields(TrainConfig) if f.name not in skip]


def _field_type(f: Field, flag: str) -> Callable[[str], Any]:
    """Convert and check one flag's value with the field's own rules; the message names the flag."""
    from aslhpc.training.config import config_problems

    convert = _TYPES[str(f.type)]

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {convert.__name__} value: {text!r}") from None
        problems = config_problems({f.name: value})
        if problems:  # "epochs=-3 must be an integer >= 1" -> "-3 must be an integer >= 1"
            raise argparse.ArgumentTypeError(problems[0].removeprefix(f"{f.name}=").strip())
        return value

    parse.__name__ = flag
    return parse


def add_train_flags(p: argparse._ActionsContainer, *, exclude: Iterable[str] = (),
                    keep_defaults: bool = True) -> list[str]:
    """One flag per TrainConfig field (name, type, default, choices, help from the field); returns the
    dests. ``keep_defaults=False``: every default is None ("keep the experiment file's value": submit)."""
    from aslhpc.training.config import cli_flag

    dests = []
    for f in train_fields(exclude):
        flag = cli_flag(f)
        kw: dict[str, Any] = {"dest": f.name, "help": f.metadata.get("help") or ""}
        if keep_defaults and f.default is MISSING:
            kw["required"] = True
        elif keep_defaults:
            kw["default"] = f.default
            kw["help"] += f" (default: {f.default!r})" if f.default != "" else ""
        else:
            kw["default"] = None
        if str(f.type) == "bool":
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = _field_type(f, flag)
            kw["choices"] = f.metadata.get("choices")
            kw["metavar"] = None if kw["choices"] else flag[2:].upper().replace("-", "_")
        p.add_argument(flag, **kw)
        dests.append(f.name)
    return dests


# --------------------------------------------------------------------------- output and errors


class TrimmedLines:
    """A text stream that writes each line without its trailing spaces: rich pads table cells to the
    column's width, which a terminal hides and a log or ``grep`` does not."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self._partial = ""

    @property
    def encoding(self) -> str:
        return getattr(self.stream, "encoding", None) or "utf-8"

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        head, newline, tail = (self._partial + text).rpartition("\n")
        if newline:
            self.stream.write("\n".join(line.rstrip() for line in head.split("\n")) + "\n")
        kept = tail.rstrip(" ")
        self.stream.write(kept)  # only the spaces at the end are held back (they may be padding)
        self._partial = tail[len(kept):]
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def console(stderr: bool = False, **kwargs: Any) -> Console:
    """A rich console at the terminal's width; piped, :data:`PIPE_WIDTH` columns, lines unpadded."""
    out = Console(stderr=stderr, **kwargs)
    if not out.is_terminal:
        stream = TrimmedLines(sys.stderr if stderr else sys.stdout)
        out = Console(file=stream, width=max(out.width, PIPE_WIDTH), soft_wrap=True, **kwargs)
    return out


def plain(lines: Iterable[str], file: Any = None) -> None:
    """Commands to copy: plain lines, never wrapped inside rich text (a terminal folds them whole)."""
    for line in lines:
        print(line.rstrip(), file=file or sys.stdout, flush=True)


def one_line(message: object) -> str:
    """The message on one line, whatever the raiser put in it."""
    return " ".join(str(message).split())


def write_error(exc: OSError, output_flag: str = "--results") -> str:
    """The one line for a disk or mount error while writing results (the earlier files are intact),
    naming the flag that chose the folder as the user typed it (``--out`` for train, ``--dir`` for demo)."""
    where = exc.filename or "a results file"
    verb = "no permission for" if exc.errno in (errno.EACCES, errno.EPERM) else "cannot write"
    return (f"{verb} {where}: {exc.strerror or exc}; free space or choose a writable {output_flag} "
            "folder (files written before are intact)")


def run_cli(body: Callable[[], int | None], output_flag: str = "--results") -> int:
    """Run a CLI's work; its int is the exit status (None = 0). A user error: one ``error:`` line, exit 2.

    A full disk, a read-only mount or a folder without write permission met half-way is one line too."""
    try:
        rc = body()
    except BrokenPipeError:
        # the reader went away (``aslhpc status --logs C | head``): stop quietly, as cat does; stdout is
        # pointed at /dev/null so the interpreter's final flush does not raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a command killed by it
    except AslhpcError as exc:
        # several problems found at once (an experiment file's): one line each
        for problem in getattr(exc, "problems", None) or [exc]:
            print(f"error: {one_line(problem)}", file=sys.stderr, flush=True)
        return 2
    except OSError as exc:
        if exc.errno not in WRITE_ERRNOS:
            raise
        print(f"error: {one_line(write_error(exc, output_flag))}", file=sys.stderr, flush=True)
        return 2
    return rc if isinstance(rc, int) else 0
