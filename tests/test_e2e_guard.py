"""Issue 26.2: the end-to-end tests submit real jobs only to the cluster this project's script brought up;
another SLURM that happens to answer on the machine is refused (skipped here, failed in CI)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _guard():  # noqa: ANN202 - the e2e conftest as a module
    spec = importlib.util.spec_from_file_location("e2e_conftest", HERE / "e2e" / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _fake_scontrol(bin_dir: Path, cluster: str) -> None:
    bin_dir.mkdir()
    tool = bin_dir / "scontrol"
    tool.write_text(f"#!/bin/sh\necho 'ClusterName             = {cluster}'\n")
    tool.chmod(0o755)


@pytest.mark.parametrize(("marker", "answers", "ok"), [
    ("lab", "lab", True),              # the project's cluster, up
    ("lab", "hpc-prod", False),        # another cluster answers: never submit to it
    (None, "lab", False),              # no marker: minislurm.sh did not bring it up
])
def test_only_the_projects_own_cluster_is_used(tmp_path, monkeypatch, marker, answers, ok) -> None:  # noqa: ANN001
    guard = _guard()
    _fake_scontrol(tmp_path / "bin", answers)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    monkeypatch.delenv(guard.CLUSTER_ENV, raising=False)
    marker_file = tmp_path / "cluster"
    if marker is not None:
        marker_file.write_text(marker + "\n")
    monkeypatch.setattr(guard, "CLUSTER_MARKER", marker_file)
    found, why = guard.project_cluster()
    assert found is ok, why
    if not ok:
        assert why  # the skip/fail message says which cluster answered or that no marker exists
