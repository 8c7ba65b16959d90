"""48 cells on the mini cluster go out as one job array per job shape (2 GPU counts: 2 arrays), complete,
and status lists every cell with its array task, from one sacct call."""

from __future__ import annotations

from pathlib import Path

import pytest

from aslhpc.orchestration.manifest import load_manifest

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("slurm_cluster")]


def test_48_cells_as_one_array_per_shape_complete(cli, tiny_data: Path, tmp_path: Path, wait_ended) -> None:
    from tests.e2e.test_crash_safety import job_file

    job, name = job_file(tmp_path, "arr48")
    results = tmp_path / "results"
    p = cli.submit(job, "--data", tiny_data, "--results", results, "--gpus", "1,2", "--batch-sizes",
                   "16,32,64", "--repeats", "8", "--epochs", 1, "--array-parallelism", "6")
    assert p.returncode == 0, p.stderr
    assert "48 job(s) submitted (as 2 job array(s)" in p.stdout, p.stdout
    manifest = results / name / "manifest.json"
    m = load_manifest(manifest)
    arrays = {g: {e.last.array_id for e in m.cells.values() if e.gpus == g} for g in (1, 2)}
    assert all(len(a) == 1 for a in arrays.values()) and arrays[1] != arrays[2]
    tasks = sorted(e.last.task_id for e in m.cells.values() if e.gpus == 1)
    assert tasks == list(range(24))
    report = wait_ended(manifest, timeout=900, poll=5.0)
    assert report.counts() == {"COMPLETED": 48}
    st = cli.status("--results", results, "--experiment", name)
    assert st.returncode == 0 and "48 COMPLETED" in st.stdout
    assert all(e.last.job_id in st.stdout for e in m.cells.values())
