"""Issue 26.1: every 'run this next' in a message is spelled as this shell can run it, venv active or not."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from aslhpc.invocation import aslhpc_command, python_command


def test_the_printed_command_runs_as_printed_without_an_active_venv(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV",)}
    env["PATH"] = "/usr/bin:/bin"  # no venv on PATH: a bare `aslhpc` or `python` would not be found
    proc = subprocess.run([sys.executable, "-m", "aslhpc", "status", "--results", str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode != 0
    [line] = proc.stderr.strip().splitlines()
    command = line.split("run ", 1)[1].split(" submit first")[0]
    assert command == f"{shlex.quote(sys.executable)} -m aslhpc"  # this interpreter, spelled whole
    again = subprocess.run([*shlex.split(command), "submit", "--help"], capture_output=True, text=True,
                           env=env, cwd=tmp_path, timeout=120)
    assert again.returncode == 0 and again.stdout.startswith("usage: aslhpc submit")


def test_the_venvs_own_command_is_used_when_it_is_on_path(monkeypatch) -> None:  # noqa: ANN001
    mine = Path(sys.executable).with_name("aslhpc")
    if not mine.exists():  # an install without console scripts: the interpreter form is the answer
        assert python_command().endswith("-m aslhpc")
        return
    monkeypatch.setenv("PATH", f"{mine.parent}{os.pathsep}/usr/bin:/bin")
    assert python_command() == "aslhpc" and aslhpc_command("collect") == "aslhpc collect"
