"""``submit --detach``: a local run that returns the shell at once, survives it, and finishes its cells."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aslhpc.slurm.local import runner_alive

REPO = Path(__file__).resolve().parents[1]
SMOKE = str(REPO / "jobs" / "smoke.toml")


def submit(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aslhpc.submit", SMOKE, "--cluster", "local", *args],
                          capture_output=True, text=True, cwd=cwd, env=dict(os.environ), timeout=180)


def test_detached_run_returns_at_once_and_finishes_its_cells_in_its_own_session(synth_root, tmp_path,
                                                                               cache_dir):
    proc = submit("--data", str(synth_root), "--results", "res", "--gpus", "1", "--batch-sizes", "16",
                  "--epochs", "1", "--max-steps", "2", "--detach", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    exp = tmp_path / "res" / "smoke"
    pid = int(proc.stdout.split("running in the background as pid ")[1].split(",")[0])
    logs = list(exp.glob("submit-*.log"))
    assert len(logs) == 1 and str(logs[0].relative_to(tmp_path)) in proc.stdout
    assert f"kill {pid}" in proc.stdout
    # the shell came back before the cell ended
    assert not (exp / "cells" / "g1-b16-r0" / "result.json").exists()
    try:
        assert os.getsid(pid) != os.getsid(0)  # no SIGHUP when this terminal closes
    except ProcessLookupError:
        pytest.fail("the background run ended before its cell could have")
    deadline = time.monotonic() + 150
    while runner_alive(exp) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not runner_alive(exp), "the detached run did not finish"
    result = json.loads((exp / "cells" / "g1-b16-r0" / "result.json").read_text())
    assert result["status"] == "completed"
    job_folders = [p.name for p in (exp / "jobs" / "g1-b16-r0").iterdir()]
    assert len(job_folders) == 1 and job_folders[0].isdigit()  # its job's folder, no literal "%j" beside it
    log = logs[0].read_text()
    assert "1 job(s) run locally" in log and "COMPLETED" in log


def test_bad_input_is_refused_in_the_foreground_leaving_nothing_behind(tmp_path):
    proc = submit("--data", str(tmp_path / "missing"), "--results", "res/deep", "--detach", cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: dataset directory") and "--data" in lines[0]
    assert not (tmp_path / "res").exists()


def test_a_refused_rerun_leaves_the_earlier_logs_alone(tmp_path):
    exp = tmp_path / "res" / "smoke"
    exp.mkdir(parents=True)
    (exp / "submit-20261125-120000-1.log").write_text("an earlier run's log\n")
    proc = submit("--data", str(tmp_path / "missing"), "--results", "res", "--detach", cwd=tmp_path)
    assert proc.returncode == 2
    assert [p.name for p in exp.iterdir()] == ["submit-20261125-120000-1.log"]
    assert (exp / "submit-20261125-120000-1.log").read_text() == "an earlier run's log\n"


def test_results_that_is_a_file_is_a_one_line_error(synth_root, tmp_path):
    (tmp_path / "res").write_text("not a folder")
    proc = submit("--data", str(synth_root), "--results", "res", "--detach", cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot create") and "--results" in lines[0]


def test_abbreviated_flags_are_refused_and_the_background_copy_never_detaches_again(synth_root, tmp_path):
    proc = submit("--data", str(synth_root), "--results", "res", "--deta", cwd=tmp_path)
    assert proc.returncode == 2 and "unrecognized arguments: --deta" in proc.stderr
    # In the background copy (ASLHPC_DETACHED=1) --detach runs in place: here, a dry run that ends at once.
    env = dict(os.environ, ASLHPC_DETACHED="1")
    proc = subprocess.run([sys.executable, "-m", "aslhpc.submit", SMOKE, "--cluster", "local", "--data",
                           str(synth_root), "--results", "res", "--dry-run", "--detach"], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 0 and "dry run: 4 sbatch script(s)" in proc.stdout


def test_detach_with_wait_is_a_one_line_error(synth_root, tmp_path):
    proc = submit("--data", str(synth_root), "--results", "res", "--detach", "--wait", cwd=tmp_path)
    assert proc.returncode == 2
    said = "error: --detach cannot be combined with --wait or --dry-run; drop one of them"
    assert proc.stderr.strip() == said
    assert not (tmp_path / "res").exists()
