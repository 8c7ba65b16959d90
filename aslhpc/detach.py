"""``submit --detach``: run submit itself in the background, so a local run survives the shell.

Local cells are child processes of the submit that started them: closing the terminal (SIGHUP)
or logging out would end them. A detached submit re-runs the same command line in a new session
(``setsid``: no controlling terminal, no SIGHUP) with its output in a log file, and returns once
the background run has either started its cells (it wrote ``local_runner.json``), finished (all
cells already done, or submitted to SLURM, which needs no waiting) or failed validation. So bad
input still gets its one-line error here, before anything runs, and nothing is left behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .atomic import read_json
from .manifest import MANIFEST as MANIFEST_FILE
from .slurm.local import RUNNER_FILE

LOG_FILE = "submit.log"


@dataclass(frozen=True)
class Detached:
    """How the background submit stands when this process hands back the terminal."""

    pid: int
    log: Path
    running: bool  # True: it runs cells here; False: it already ended, with ``returncode``
    returncode: int | None
    output: str  # its log so far when it ended (the error lines, or what it submitted)


def strip_detach(argv: Sequence[str]) -> list[str]:
    return [a for a in argv if a != "--detach"]


def start_detached(argv: Sequence[str], experiment_dir: Path, *, timeout_s: float = 600.0,
                   poll_s: float = 0.1) -> Detached:
    """Start ``python -m aslhpc.submit <argv>`` in a new session, logging to ``<experiment_dir>/submit.log``.

    Returns when it runs local cells, has ended, or ``timeout_s`` passed (then ``running`` is True:
    it is still validating or scanning data). If it ends with an error before any cell started,
    its log, and the experiment directory when this call created it, are removed."""
    created = _missing_dirs(experiment_dir)
    experiment_dir.mkdir(parents=True, exist_ok=True)
    log, runner = experiment_dir / LOG_FILE, experiment_dir / RUNNER_FILE
    manifest_before = _mtime(experiment_dir / MANIFEST_FILE)
    log_before = log.stat().st_size if log.exists() else None
    with open(log, "ab") as fh:
        fh.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} python -m aslhpc.submit {' '.join(argv)}\n".encode())
        fh.flush()
        start = fh.tell()
        proc = subprocess.Popen([sys.executable, "-m", "aslhpc.submit", *argv], stdin=subprocess.DEVNULL,
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, cwd=os.getcwd(),
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rc = proc.poll()
        if rc is not None:
            output = _read_from(log, start)
            if rc != 0 and _mtime(experiment_dir / MANIFEST_FILE) == manifest_before:
                # Refused before recording anything (bad input): leave no trace of the attempt.
                _roll_back(log, log_before, created)
            return Detached(proc.pid, log, False, rc, output)
        if _runner_pid(runner) == proc.pid:
            return Detached(proc.pid, log, True, None, "")
        time.sleep(poll_s)
    return Detached(proc.pid, log, True, None, "")


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def _runner_pid(path: Path) -> int | None:
    try:
        return int(read_json(path).get("pid", 0))
    except (OSError, ValueError, TypeError):
        return None


def _read_from(log: Path, offset: int) -> str:
    with open(log, "rb") as fh:
        fh.seek(offset)
        return fh.read().decode(errors="replace")


def _missing_dirs(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, deepest first (what mkdir(parents=True) creates)."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def _roll_back(log: Path, size: int | None, created: list[Path]) -> None:
    """The log back to what it held before (or gone), and the directories this call made removed."""
    if size is None:
        log.unlink(missing_ok=True)
    else:
        os.truncate(log, size)
    for d in created:
        try:
            d.rmdir()
        except OSError:
            return  # not empty: something else wrote there meanwhile
