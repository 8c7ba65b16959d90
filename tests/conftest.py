"""Shared fixtures: a small generated dataset in the real Kaggle layout, built once per session; the fake
SLURM commands and the empty-image dataset the submit tests use."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import experiment_builders
import pytest
import torch
from slurm_fakes import install_fake_slurm, make_dataset

# The experiment builders were once tests/test_analysis_helpers.py; keep that import name working.
sys.modules.setdefault("test_analysis_helpers", experiment_builders)

# Two cores in CI: keep torch from oversubscribing them when several processes run.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """29 classes x 12 images (+ the 28-file flat test folder), Kaggle layout, 200x200 JPEG."""
    from aslhpc.data.synth import write_dataset

    root = tmp_path_factory.mktemp("asl") / "asl"
    write_dataset(root, per_class=12, seed=0)
    return root


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private decoded-image cache so tests never touch ~/.cache."""
    d = tmp_path / "cache"
    monkeypatch.setenv("ASLHPC_CACHE_DIR", str(d))
    return d


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """sbatch/sacct/squeue/scontrol/sinfo fakes first on PATH (tests/slurm_fakes.py); their folder."""
    return install_fake_slurm(tmp_path, monkeypatch)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """The Kaggle layout with empty image files: enough for submit's checks, nothing is trained."""
    return make_dataset(tmp_path)
