"""Crash-safe file writes: write a temp file in the same directory, fsync, then rename.

A reader (status, collect, a second job) therefore sees either the old file or the
complete new one, never half of one, and an interrupted write loses nothing.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically (same-directory temp file + rename).

    The file gets the usual ``0666 & ~umask`` mode (mkstemp's 0600 would hide results
    from colleagues sharing a project directory on the cluster).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """JSON with sorted keys and a trailing newline, so files diff cleanly."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def append_jsonl(path: str | os.PathLike, obj: Any) -> None:
    """Append one JSON line and flush it, so a live reader sees whole lines only."""
    line = json.dumps(obj, sort_keys=True, default=str) + "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path: str | os.PathLike) -> list[Any]:
    """Read a JSON-lines file, ignoring a torn last line left by a crash."""
    rows = []
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    break
    except FileNotFoundError:
        return []
    return rows


#: a temp file of :func:`atomic_write_bytes` older than this was orphaned by a killed writer
ORPHAN_AGE_S = 3600.0


def remove_orphaned_temps(folder: str | os.PathLike, older_than_s: float = ORPHAN_AGE_S) -> list[Path]:
    """Delete the ``.NAME.XXXX.tmp`` files a killed writer left in ``folder`` (not its subfolders).

    Only ones older than ``older_than_s``: a younger one may belong to a writer running right now, whose
    rename would then fail. Returns what was removed; a file that cannot be removed is left."""
    import time

    folder = Path(folder)
    if not folder.is_dir():
        return []
    cutoff = time.time() - older_than_s
    removed = []
    for tmp in folder.glob(".*.tmp"):
        try:
            if tmp.is_file() and not tmp.is_symlink() and tmp.stat().st_mtime < cutoff:
                tmp.unlink()
                removed.append(tmp)
        except OSError:
            continue
    return removed


def ensure_writable_dir(path: str | os.PathLike, what: str) -> Path:
    """Check, before any work, that ``path`` is (or can become) a folder this process can write.

    Tries for real (a temp file in ``path``, or in its nearest existing parent, removed at once), so a
    read-only mount, a full quota, missing permission or a file standing where a folder should be is
    found as root too (``os.access`` says yes to root on a read-only mount). Creates nothing. Raises
    :class:`~aslhpc.errors.ConfigError` (one line naming ``what`` and the folder)."""
    from aslhpc.errors import ConfigError

    path = Path(path).expanduser()
    probe = path
    while not probe.exists() and probe != probe.parent:
        if probe.is_symlink():  # a dangling link: mkdir would fail on it
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(f"{what} {path} cannot be created: {probe} is a file, not a folder; choose "
                          "another folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".aslhpc-write-check.", suffix=".tmp", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"{what} {path} cannot be written ({reason} in {probe}); choose a writable "
                          "folder") from None
    return path
