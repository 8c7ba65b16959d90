"""No SLURM: ``--cluster local`` runs the cells here through submitit's LocalExecutor, with the same
manifest and files, and status works from another process while they run. Needs no cluster."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from aslhpc.orchestration.manifest import load_manifest

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def test_local_mode_runs_cells_and_status_follows(cli, tiny_data: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    proc = cli.popen("aslhpc.submit", "jobs/smoke.toml", "--cluster", "local", "--data", tiny_data,
                     "--results", results, "--gpus", "1", "--epochs", "1", "--max-steps", "1",
                     "--max-parallel", "2")
    manifest = results / "smoke" / "manifest.json"
    seen = set()
    deadline = time.monotonic() + 180
    while proc.poll() is None:
        assert time.monotonic() < deadline, "local run did not finish"
        if manifest.exists():
            st = cli.status("--results", results, "--experiment", "smoke")
            seen |= {s for s in ("RUNNING", "PENDING", "COMPLETED") if s in st.stdout}
        time.sleep(0.5)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "running 2 cell(s) on this machine, 2 at a time" in out
    assert "RUNNING" in seen  # another process saw the live local job
    m = load_manifest(manifest)
    assert {e.last.cluster for e in m.cells.values()} == {"local"}
    st = cli.status("--results", results)
    assert st.returncode == 0 and "2 COMPLETED" in st.stdout and "states from local" in st.stdout
    for e in m.cells.values():
        assert (results / "smoke" / e.out_dir / "result.json").exists()
        assert (results / "smoke" / e.last.folder / f"{e.last.job_id}_0_log.out").exists()


def test_local_submit_killed_after_a_cell_started_adopts_it_on_rerun(cli, tiny_data: Path,
                                                                     tmp_path: Path) -> None:
    """The local runner's version of the crash: its job outlives the killed submit (parent pid 1); the next
    submit finds it by its controller process, waits for it and starts only the other cell."""
    from aslhpc.atomic import read_jsonl

    results = tmp_path / "results"
    args = ["jobs/smoke.toml", "--cluster", "local", "--data", tiny_data, "--results", results, "--gpus", "1",
            "--epochs", "6", "--max-parallel", "1"]  # a cell long enough to outlive the next submit's startup
    # the orphan inherits submit's stdout: a pipe would keep the caller waiting for it, a file does not
    with open(tmp_path / "crashed.log", "w") as log:
        crashed = subprocess.Popen([sys.executable, "-m", "aslhpc.submit", *map(str, args)], cwd=REPO,
                                   env={**cli.env, "ASLHPC_TEST_CRASH_AT": "after-sbatch:1"}, stdout=log,
                                   stderr=subprocess.STDOUT)
        assert crashed.wait(timeout=120) == 99, (tmp_path / "crashed.log").read_text()
    manifest = results / "smoke" / "manifest.json"
    m = load_manifest(manifest)
    assert all(e.attempts == [] and e.intent is not None for e in m.cells.values())
    from aslhpc.orchestration.reconcile import find_local_controllers, local_folder

    orphan = find_local_controllers(local_folder(results / "smoke", "g1-b32-r0"))
    assert len(orphan) == 1 and int(Path(f"/proc/{orphan[0]}/stat").read_text().split(")")[1].split()[1]) != 0

    p = cli.submit(*args, timeout=300)
    assert p.returncode == 0, p.stderr
    assert f"g1-b32-r0        adopted     job {orphan[0]} (RUNNING)" in p.stdout
    assert "g1-b64-r0        ran" in p.stdout
    assert "1 job(s) run locally" in p.stdout
    m = load_manifest(manifest)
    assert m.pending() == {}
    for cid, e in m.cells.items():
        assert len(e.attempts) == 1, cid
        assert (results / "smoke" / e.out_dir / "result.json").exists(), cid
        folders = [d.name for d in (results / "smoke" / "jobs" / cid).iterdir() if d.name.isdigit()]
        assert folders == [e.last.job_id], (cid, folders)  # one local job per cell, ever
        epochs = [x["epoch"] for x in read_jsonl(results / "smoke" / e.out_dir / "epochs.jsonl")]
        assert epochs == list(range(1, 7)), (cid, epochs)
    st = cli.status("--results", results)
    assert "2 COMPLETED" in st.stdout, st.stdout
