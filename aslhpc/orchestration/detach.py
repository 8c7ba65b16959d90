"""``submit --detach``: run submit itself in the background, so a local run survives the shell.

Local cells are child processes of the submit that started them: closing the terminal (SIGHUP)
or logging out would end them. A detached submit re-runs the same command line in a new session
(``setsid``: no controlling terminal, no SIGHUP) with its output in a log file of its own
(``results/<exp>/submit-<time>-<pid>.log``), and returns once the background run has either
started its cells (it wrote ``local_runner.json``), finished (all cells already done, or
submitted to SLURM, which needs no waiting) or failed validation. So bad
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

from aslhpc.atomic import read_json
from aslhpc.errors import AslhpcError
from aslhpc.orchestration.manifest import MANIFEST as MANIFEST_FILE
from aslhpc.slurm.local import RUNNER_FILE

LOG_PREFIX = "submit-"  # one log per detached run: submit-<YYYYmmdd-HHMMSS>-<pid>.log
CHILD_ENV = "ASLHPC_DETACHED"  # set in the background submit: it runs in place, never detaches again


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


def is_detached_child(environ: dict[str, str] | None = None) -> bool:
    return (os.environ if environ is None else environ).get(CHILD_ENV) == "1"


def start_detached(argv: Sequence[str], experiment_dir: Path, *, timeout_s: float = 600.0,
                   poll_s: float = 0.1) -> Detached:
    """Start ``python -m aslhpc.submit <argv>`` in a new session, logging to its own file in
    ``experiment_dir``.

    Returns when it runs local cells, has ended, or ``timeout_s`` passed (then ``running`` is True:
    it is still validating or scanning data). If it ends with an error before recording anything,
    its log, and the directories this call created, are removed. Ctrl-C here stops it (its running
    cells are cancelled) and re-raises."""
    created = _missing_dirs(experiment_dir)
    try:
        experiment_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AslhpcError(f"cannot create {experiment_dir} ({exc.strerror}); pass --results DIR with a "
                          "writable directory") from exc
    log = experiment_dir / f"{LOG_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    runner, manifest = experiment_dir / RUNNER_FILE, experiment_dir / MANIFEST_FILE
    manifest_before = _mtime(manifest)
    with open(log, "wb") as fh:
        started = time.strftime("%Y-%m-%dT%H:%M:%S")
        fh.write(f"python -m aslhpc.submit {' '.join(argv)}  (started {started})\n".encode())
        fh.flush()
        start = fh.tell()
        proc = subprocess.Popen([sys.executable, "-m", "aslhpc.submit", *argv], stdin=subprocess.DEVNULL,
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, cwd=os.getcwd(),
                                env={**os.environ, "PYTHONUNBUFFERED": "1", CHILD_ENV: "1"})
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            rc = proc.poll()
            if rc is not None:
                output = log.read_bytes()[start:].decode(errors="replace")
                if rc != 0 and _mtime(manifest) == manifest_before:
                    _roll_back(log, created)  # refused before recording anything (bad input): no trace
                return Detached(proc.pid, log, False, rc, output)
            if _runner_pid(runner) == proc.pid:
                return Detached(proc.pid, log, True, None, "")
            time.sleep(poll_s)
        return Detached(proc.pid, log, True, None, "")
    except KeyboardInterrupt:
        proc.terminate()  # SIGTERM: a running local submit cancels its cells, as on Ctrl-C
        proc.wait()
        if _mtime(manifest) == manifest_before:
            _roll_back(log, created)
        raise


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


def _missing_dirs(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, deepest first (what mkdir(parents=True) creates)."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def _roll_back(log: Path, created: list[Path]) -> None:
    """This run's log, and the directories this call made, removed."""
    log.unlink(missing_ok=True)
    for d in created:
        try:
            d.rmdir()
        except OSError:
            return  # not empty: something else wrote there meanwhile
