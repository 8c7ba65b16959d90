"""Issue 27 items 2-3: nothing planted in a results directory is unpickled, neither by ``submit --cluster
local`` reading how a cell ended, nor by a job loading its submitted call from a folder others can write."""

from __future__ import annotations

import os
import pickle
import stat
import subprocess
import sys
from pathlib import Path

from aslhpc.slurm import local
from aslhpc.slurm.executor import private_dir
from aslhpc.slurm.safe_submit import check_pickle


class Planted:
    """A payload: unpickling it creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.mkdir, (str(self.marker),))


class _Job:
    """What ``_outcome`` may touch of submitit's LocalJob; ``results()`` unpickles as submitit's does."""

    def __init__(self, folder: Path) -> None:
        self.job_id = 4242
        self.state = "FINISHED"
        self.result_pickle = folder / "4242_0_result.pkl"

    def results(self) -> list:
        with self.result_pickle.open("rb") as fh:
            return [pickle.load(fh)]


def test_the_local_outcome_never_unpickles_the_result_pickle(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    folder = tmp_path / "jobs" / "g1-b32-r0" / "4242"
    folder.mkdir(parents=True)
    job = _Job(folder)
    job.result_pickle.write_bytes(pickle.dumps(Planted(marker)))
    task = local.LocalTask("g1-b32-r0", lambda: None, None, folder, lambda: (False, "error: planted"))  # type: ignore[arg-type]
    outcome = local._outcome(task, job)  # type: ignore[arg-type]
    assert not marker.exists()
    assert not outcome.ok and outcome.error == "error: planted"  # the cell's own files decide, not the pickle


def test_job_folders_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o002)  # a common group-writable umask on shared sites
    try:
        folder = private_dir(tmp_path / "exp" / "jobs" / "g1-b32-r0" / "tok", tmp_path / "exp" / "jobs")
    finally:
        os.umask(old)
    for p in (folder, folder.parent, tmp_path / "exp" / "jobs"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o700


def _plant(tmp_path: Path) -> tuple[Path, Path, Path]:
    marker = tmp_path / "code-ran"
    folder = private_dir(tmp_path / "exp" / "jobs" / "g1-b32-r0" / "tok", tmp_path / "exp" / "jobs")
    pkl = folder / "4242_submitted.pkl"
    pkl.write_bytes(pickle.dumps(Planted(marker)))
    pkl.chmod(0o600)
    return marker, folder, pkl


def _run_guard(folder: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SUBMITIT_EXECUTOR": "local", "SUBMITIT_LOCAL_JOB_ID": "4242",
           "SUBMITIT_LOCAL_NTASKS": "1", "SUBMITIT_LOCAL_NODEID": "0", "SUBMITIT_LOCAL_JOB_NUM_NODES": "1",
           "SUBMITIT_LOCAL_GLOBALID": "0", "SUBMITIT_LOCAL_LOCALID": "0"}
    cmd = [sys.executable, "-m", "aslhpc.slurm.safe_submit", "-u", "-m", "submitit.core._submit", str(folder)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_a_job_refuses_a_pickle_in_a_group_writable_folder_with_one_line(tmp_path: Path) -> None:
    marker, folder, pkl = _plant(tmp_path)
    folder.chmod(0o770)  # someone made the job folder group-writable: a group member could replace the call
    assert "writable by group" in check_pickle(pkl)
    proc = _run_guard(folder)
    assert proc.returncode == 2 and not marker.exists()
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: refusing to load ")


def test_a_job_refuses_a_group_writable_pickle(tmp_path: Path) -> None:
    marker, _folder, pkl = _plant(tmp_path)
    pkl.chmod(0o660)
    assert "writable by group" in check_pickle(pkl)
    assert check_pickle(pkl, uid=os.getuid() + 1).startswith(f"{pkl} belongs to uid")  # another user's file
    proc = _run_guard(pkl.parent)
    assert proc.returncode == 2 and not marker.exists()


def test_a_private_pickle_passes_the_check(tmp_path: Path) -> None:
    _marker, _folder, pkl = _plant(tmp_path)
    assert check_pickle(pkl) == ""  # the guard lets the owner's own job run
