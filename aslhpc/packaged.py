"""The files aslhpc ships (experiments, sbatch preambles, the 2020 reference table) and the user's own.

They are package data (``aslhpc/jobs/``, ``aslhpc/sbatch_templates/``, ``aslhpc/reference/``), read
through :mod:`importlib.resources`, so a non-editable install finds them from any folder. In a
clone the top-level ``jobs/``, ``sbatch_templates/`` and ``results/reference`` are symlinks to
those folders, so the paths the README names keep working there.

A user's own file wins: ``./jobs/NAME.toml`` or ``./sbatch_templates/NAME.sh`` in the working
directory is looked up before the shipped one, so a site keeps its files next to its results.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path

# kind -> (folder in the package and in the working directory, file suffix)
KINDS = {"experiment": ("jobs", ".toml"), "preamble": ("sbatch_templates", ".sh")}


@dataclass(frozen=True)
class Found:
    """One file of a kind: its name, where it is, and whether the user's folder or aslhpc supplied it."""

    name: str
    path: Path
    origin: str  # "yours" (./jobs, ./sbatch_templates) or "shipped" (inside the installed package)


def shipped_dir(folder: str) -> Path:
    """The package's own ``aslhpc/<folder>`` (a real directory: aslhpc is never installed zipped)."""
    return Path(str(importlib.resources.files("aslhpc") / folder))


def reference_table() -> Path:
    """The published 2020 figures shipped with aslhpc (``aslhpc/reference/lad2020.csv``)."""
    return shipped_dir("reference") / "lad2020.csv"


def search_dirs(kind: str, cwd: Path | None = None) -> list[tuple[Path, str]]:
    """Where ``kind`` files are looked up, first match wins: the working directory's folder, then aslhpc's."""
    folder, _ = KINDS[kind]
    local = (cwd or Path.cwd()) / folder
    shipped = shipped_dir(folder)
    if local.is_dir() and local.resolve() == shipped.resolve():  # a clone: ./jobs is the package's folder
        return [(shipped, "shipped")]
    return [(local, "yours"), (shipped, "shipped")]


def find(kind: str, name: str, cwd: Path | None = None) -> Path | None:
    """The first ``<folder>/<name><suffix>`` of :func:`search_dirs`, or None."""
    _, suffix = KINDS[kind]
    for d, _origin in search_dirs(kind, cwd):
        path = d / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


def available(kind: str, cwd: Path | None = None) -> list[Found]:
    """Every ``kind`` file by name; a user's file hides the shipped one of the same name."""
    _, suffix = KINDS[kind]
    seen: dict[str, Found] = {}
    for d, origin in search_dirs(kind, cwd):
        if d.is_dir():
            for path in sorted(d.glob(f"*{suffix}")):
                seen.setdefault(path.stem, Found(path.stem, path, origin))
    return sorted(seen.values(), key=lambda f: f.name)


def names(kind: str, cwd: Path | None = None) -> str:
    """``a, b, c`` (or ``(none)``) for error messages."""
    return ", ".join(f.name for f in available(kind, cwd)) or "(none)"
