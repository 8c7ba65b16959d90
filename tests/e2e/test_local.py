"""No SLURM: ``--cluster local`` runs the cells here through submitit's LocalExecutor, with the same
manifest and files, and status works from another process while they run. Needs no cluster."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from aslhpc.orchestration.manifest import load_manifest

pytestmark = pytest.mark.e2e


def test_local_mode_runs_cells_and_status_follows(cli, tiny_data: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    proc = cli.popen("aslhpc.submit", "jobs/smoke.toml", "--cluster", "local", "--data", tiny_data,
                     "--results", results, "--gpus", "1", "--epochs", "1", "--max-steps", "1", "--max-parallel", "2")
    manifest = results / "smoke" / "manifest.json"
    seen = set()
    deadline = time.monotonic() + 180
    while proc.poll() is None:
        assert time.monotonic() < deadline, "local run did not finish"
        if manifest.exists():
            st = cli.status("--results", results, "--experiment", "smoke")
            seen |= {s for s in ("RUNNING", "PENDING", "COMPLETED") if s in st.stdout}
        time.sleep(0.5)
    out, err = proc.communicate()
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
