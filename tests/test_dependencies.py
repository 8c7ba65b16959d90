"""NVML comes from nvidia-ml-py; the deprecated PyPI package named ``pynvml`` must not be used."""

from __future__ import annotations

import importlib.metadata as md
import re
import tomllib
from pathlib import Path

import pytest

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _name(requirement: str) -> str:
    """PEP 503-normalised project name of one requirement line."""
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert m, requirement
    return re.sub(r"[-_.]+", "-", m.group(1)).lower()


def install_requires() -> list[str]:
    meta = tomllib.loads(PYPROJECT.read_text())["project"]
    lines = meta["dependencies"] + [r for extra in meta["optional-dependencies"].values() for r in extra]
    return [_name(line) for line in lines]


def test_the_project_requires_nvidia_ml_py_not_pynvml() -> None:
    names = install_requires()
    assert "nvidia-ml-py" in names
    assert "pynvml" not in names


def test_the_deprecated_pynvml_distribution_is_not_installed() -> None:
    with pytest.raises(md.PackageNotFoundError):
        md.distribution("pynvml")


def test_the_pynvml_module_is_provided_by_nvidia_ml_py() -> None:
    assert md.packages_distributions().get("pynvml") == ["nvidia-ml-py"]
