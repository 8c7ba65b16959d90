"""How a command of this install is spelled for the user to copy: messages that tell you what to run next
print it the way this shell can run it (no bare ``python``, which Debian lacks, and no venv assumed active).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path


def python_command() -> str:
    """How to run aslhpc from any shell: ``aslhpc`` if it is this environment's command on PATH, else this
    interpreter's path (``.venv/bin/python -m aslhpc``: works without activating the venv)."""
    found = shutil.which("aslhpc")
    mine = Path(sys.executable).with_name("aslhpc")
    if found and mine.exists() and os.path.samefile(found, mine):
        return "aslhpc"
    exe = Path(sys.executable)
    try:
        shown = str(exe.relative_to(Path.cwd())) if exe.is_relative_to(Path.cwd()) else str(exe)
    except (OSError, ValueError):
        shown = str(exe)
    return f"{shlex.quote(shown)} -m aslhpc"


def aslhpc_command(args: str) -> str:
    """``aslhpc ARGS`` as this shell can run it."""
    return f"{python_command()} {args}"
