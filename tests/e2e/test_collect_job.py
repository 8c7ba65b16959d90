"""``submit --collect`` on the mini cluster: a dependent job runs collect when the last cell ends, so
report.md appears without a human; submitting again replaces a waiting collect job instead of adding one."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from aslhpc.orchestration.manifest import load_manifest

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("slurm_cluster")]


def test_collect_job_writes_the_report_after_the_cells_and_is_replaced_not_stacked(
        cli, tiny_data: Path, tmp_path: Path, wait_ended) -> None:
    from tests.e2e.test_crash_safety import job_file

    job, name = job_file(tmp_path, "collectjob")
    results = tmp_path / "results"
    args = [job, "--data", tiny_data, "--results", results, "--gpus", "1", "--batch-sizes", "16,32",
            "--epochs", 1, "--collect"]
    p = cli.submit(*args)
    assert p.returncode == 0, p.stderr
    manifest = results / name / "manifest.json"
    m = load_manifest(manifest)
    first = m.collect.job_id
    [array] = {e.last.array_id for e in m.cells.values()}
    assert f"collect          submitted   job {first} (runs collect after {array})" in p.stdout
    dep = subprocess.run(["squeue", "-h", "-j", first, "-o", "%E"], capture_output=True, text=True,
                         timeout=60).stdout
    assert f"afterany:{array}" in dep

    # it surely still waits at the next submit
    subprocess.run(["scontrol", "hold", first], check=True, timeout=60)
    p = cli.submit(*args)  # again, while the collect job waits: it is replaced
    assert p.returncode == 0, p.stderr
    second = load_manifest(manifest).collect.job_id
    assert second != first and f"collect          replaced    job {first}" in p.stdout
    state = subprocess.run(["sacct", "-X", "-n", "-P", "-j", first, "-o", "State"], capture_output=True,
                           text=True, timeout=60).stdout
    assert "CANCELLED" in state

    wait_ended(manifest, timeout=300)
    report = results / name / "report.md"
    deadline = time.monotonic() + 180
    while not report.is_file():
        assert time.monotonic() < deadline, "the collect job wrote no report.md within 180 s of the cells"
        time.sleep(2)
    assert "collectjob" in report.read_text() or name in report.read_text()
    st = cli.status("--results", results, "--experiment", name)
    # the collect row itself: "collect  <job>  <state> ..." (the header names the experiment, whose random
    # suffix can contain the job id, so match by column, not by substring)
    [row] = [ln.split() for ln in st.stdout.splitlines() if ln.split()[:2] == ["collect", second]]
    assert row[2] in ("COMPLETED", "RUNNING", "COMPLETING"), st.stdout
    queued = subprocess.run(["squeue", "--me", "-h", "--name", f"aslhpc-{name}-collect", "-o", "%i"],
                            capture_output=True, text=True, timeout=60).stdout.split()
    assert first not in queued  # never two collect jobs
