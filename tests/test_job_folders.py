"""Issue 27 item 9 and 3, issue 26 item 6: a job's folder (and so its log paths) exists, private, before its
sbatch, so a job that starts at once can open its log; a dry run creates no ``jobs/<cell>/`` folder."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from slurm_fakes import install_fake_slurm, make_dataset, run_submit, scripts, smoke_args


def test_each_jobs_log_folder_exists_and_is_private_when_sbatch_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    b = install_fake_slurm(tmp_path, monkeypatch)
    old = os.umask(0o002)  # a group-writable umask, common on shared sites
    try:
        rc, _out, err = run_submit(capsys, *smoke_args(make_dataset(tmp_path), tmp_path / "r"))
    finally:
        os.umask(old)
    assert rc == 0, err
    assert len(scripts(b)) == 4
    assert not list(b.glob("log_folder_missing_*"))  # the fake sbatch checked each script's --output folder
    jobs = tmp_path / "r" / "smoke" / "jobs"
    for folder in [jobs, *jobs.iterdir(), *jobs.glob("*/*")]:
        if folder.is_dir():
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_a_dry_run_leaves_no_job_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture) -> None:
    install_fake_slurm(tmp_path, monkeypatch)
    rc, _out, err = run_submit(capsys, *smoke_args(make_dataset(tmp_path), tmp_path / "r", "--dry-run"))
    assert rc == 0, err
    assert (tmp_path / "r" / "smoke" / "dry-run").is_dir()
    assert not (tmp_path / "r" / "smoke" / "jobs").exists()
