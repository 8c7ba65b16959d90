"""Reading a file another user could have planted: only a regular file, only so much, only so deep.

A results directory is shared on purpose, so status and collect must survive whatever sits in it: a
FIFO (an ordinary ``read`` blocks forever), a symlink to ``/dev/zero`` (reads until memory runs out),
a directory, an unreadable file, JSON nested 2,000 deep (``RecursionError``). :func:`read_text_file`
and :func:`parse_json` turn each into a :class:`FileProblem` whose message is a one-line reason.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any

MiB = 1 << 20
#: result.json, progress.json, error.json, config.json and the manifest: far above what aslhpc writes
JSON_CAP = 16 * MiB
#: epochs.jsonl: one short line per epoch
EPOCHS_CAP = 64 * MiB
#: the deepest nesting a file aslhpc writes needs is 5; anything past this is not ours
MAX_DEPTH = 64


class FileProblem(ValueError):
    """A file that is not what aslhpc writes; the message is the reason, without the file name."""


def open_regular(path: str | Path) -> tuple[int, os.stat_result]:
    """``path`` opened read-only with ``O_NOFOLLOW | O_NONBLOCK``, and its stat: a symlink, FIFO, device or
    directory is a FileProblem, refused without blocking or reading it. A missing file raises
    FileNotFoundError (each caller says what that means). The caller closes the descriptor."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FileProblem("is a symbolic link, not a file aslhpc wrote; remove it") from None
        if isinstance(exc, PermissionError):
            raise FileProblem("unreadable (permission denied); fix its permissions") from None
        raise FileProblem(f"unreadable ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        raise FileProblem(f"unreadable ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise FileProblem("is not a regular file (a FIFO, device or directory); remove it")
    return fd, st


def read_text_file(path: str | Path, cap: int = JSON_CAP) -> str | None:
    """The UTF-8 text of the regular file ``path`` (None when there is none), at most ``cap`` bytes;
    anything else is refused by :func:`open_regular`."""
    try:
        fd, st = open_regular(path)
    except FileNotFoundError:
        return None
    try:
        if st.st_size > cap:
            raise FileProblem(f"is {st.st_size} bytes, more than the {cap // MiB} MiB aslhpc ever writes")
        chunks, size = [], 0
        while size <= cap:
            chunk = os.read(fd, min(1 << 20, cap + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > cap:
            raise FileProblem(f"is more than the {cap // MiB} MiB aslhpc ever writes")
    except OSError as exc:
        raise FileProblem(f"unreadable ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileProblem(f"unreadable (UnicodeDecodeError: {exc})") from None


def depth(value: Any) -> int:
    """How deeply ``value`` nests lists and objects (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def parse_json(text: str, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` that refuses nesting deeper than ``max_depth`` with a FileProblem, never a
    RecursionError; an empty or garbled text is a FileProblem too."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise FileProblem(f"nested more than {max_depth} levels deep; not a file aslhpc wrote") from None
    except ValueError as exc:
        what = "empty" if not text.strip() else f"not valid JSON ({exc})"
        raise FileProblem(f"{what}; the write was cut short or the file was edited") from None
    if depth(data) > max_depth:
        raise FileProblem(f"nested more than {max_depth} levels deep; not a file aslhpc wrote")
    return data


def tail_text_file(path: str | Path, cap: int = 64 << 10) -> str:
    """The last ``cap`` bytes of the regular file ``path`` as text (a log: it may be huge, the start of its
    first line cut); a symlink, FIFO, device or directory is refused by :func:`open_regular`."""
    try:
        fd, st = open_regular(path)
    except FileNotFoundError as exc:
        raise FileProblem(f"unreadable ({exc.strerror or exc})") from None
    try:
        os.lseek(fd, max(0, st.st_size - cap), os.SEEK_SET)
        data = os.read(fd, cap)
    finally:
        os.close(fd)
    return data.decode("utf-8", errors="replace")
