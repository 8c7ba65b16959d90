"""The 2020 study's 12-cell matrix on the mini cluster: submitted as 4 job arrays (one per GPU count),
status from a fresh process, one array task cancelled with scancel, and ``--retry-failed`` bringing back
that cell alone (as a plain job: a group of one)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from aslhpc.orchestration.manifest import load_manifest

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("slurm_cluster")]


def test_lad2020_matrix_cancel_retry_complete(cli, tiny_data: Path, tmp_path: Path, wait_ended,
                                              jobs_since) -> None:
    results = tmp_path / "results"
    args = ["--reservation", "CSYE7374_GPU", "--data", tiny_data, "--results", results, "--epochs", "1",
            "--pipeline", "fast", "--allow-cpu", "--mem", "1G", "--cpus-per-gpu", "1",
            "--preamble", "minislurm"]  # jobs/lad2020.toml, with this cluster's preamble (it has no modules)
    p = cli.submit(*args)
    assert p.returncode == 0, p.stderr
    assert "12 job(s) submitted" in p.stdout and "aslhpc status --experiment lad2020" in p.stdout
    manifest_path = results / "lad2020" / "manifest.json"
    m = load_manifest(manifest_path)
    assert m is not None and len(m.cells) == 12 and all(len(e.attempts) == 1 for e in m.cells.values())
    arrays = {e.last.array_id for e in m.cells.values()}
    assert len(arrays) == 4 and "(as 4 job array(s)" in p.stdout  # one array per GPU count
    for e in m.cells.values():
        assert e.last.job_id == f"{e.last.array_id}_{e.last.task_id}"
        assert {x.last.array_id for x in m.cells.values() if x.gpus == e.gpus} == {e.last.array_id}

    # scancel one array task (the last submitted: it waits for GPUs, or has just started)
    victim = "g4-b512-r0"
    victim_job = m.cells[victim].last.job_id
    assert "_" in victim_job
    subprocess.run(["scancel", victim_job], check=True, timeout=60)

    report = wait_ended(manifest_path, timeout=300)
    states = {r.cell_id: r.state for r in report.rows}
    assert states.pop(victim) == "CANCELLED"
    assert set(states.values()) == {"COMPLETED"}

    st = cli.status("--results", results, "--experiment", "lad2020")
    assert st.returncode == 1  # a failed (cancelled) cell
    assert "11 COMPLETED" in st.stdout and "1 CANCELLED" in st.stdout
    assert any(victim in ln and "CANCELLED" in ln and victim_job in ln for ln in st.stdout.splitlines())
    assert all(e.last.job_id in st.stdout for e in m.cells.values())  # every cell with its array task

    # a plain re-run submits nothing: completed cells are skipped, the cancelled one needs --retry-failed
    mark, since = jobs_since
    t0 = mark()
    mtimes = {cid: (results / "lad2020" / "cells" / cid / "result.json").stat().st_mtime_ns for cid in states}
    p = cli.submit(*args)
    assert p.returncode == 0, p.stderr
    assert "0 job(s) submitted" in p.stdout and "resubmit with --retry-failed" in p.stdout
    assert since(t0) == frozenset()  # no job submitted

    p = cli.submit(*args, "--retry-failed")
    assert p.returncode == 0, p.stderr
    assert "1 job(s) submitted" in p.stdout
    assert any(ln.startswith(victim) and "resubmitted" in ln for ln in p.stdout.splitlines())
    m = load_manifest(manifest_path)
    assert len(m.cells[victim].attempts) == 2 and m.cells[victim].attempts[0].job_id == victim_job
    assert m.cells[victim].last.array_id == "" and "_" not in m.cells[victim].last.job_id  # a job of its own
    assert all(len(e.attempts) == 1 for cid, e in m.cells.items() if cid != victim)

    report = wait_ended(manifest_path, timeout=180)
    assert report.counts() == {"COMPLETED": 12}
    st = cli.status("--results", results)
    assert st.returncode == 0 and "12 COMPLETED" in st.stdout
    # what each cell used, measured here (CPU cells: GPU figures empty, with the reason)
    used = st.stdout[st.stdout.index("used (finished cells"):]
    assert all(f"  {cid}" in used for cid in m.cells) and "RSS " in used and "GPU -" in used
    assert "no GPU figures: no GPU sampled: CPU fallback" in used
    for cid, ns in mtimes.items():  # the other cells were not touched
        assert (results / "lad2020" / "cells" / cid / "result.json").stat().st_mtime_ns == ns

    for cid, entry in m.cells.items():
        result = json.loads((results / "lad2020" / "cells" / cid / "result.json").read_text())
        slurm = result["slurm"]
        assert result["gpus_requested"] == entry.gpus and result["epochs"] == 1
        if entry.last.array_id:  # an array task: SLURM_ARRAY_TASK_ID is its task
            assert slurm["array_task"] == str(entry.last.task_id)
        else:
            assert slurm["job_id"] == entry.last.job_id
        assert slurm["reservation"] == "CSYE7374_GPU"
        assert int(slurm["gpus_granted"]) == entry.gpus  # SLURM_GPUS_ON_NODE: what SLURM granted
        assert len(slurm["job_gpus"].split(",")) == entry.gpus  # SLURM_JOB_GPUS

        # Telemetry on a CPU cell (issue 4): a samples file, and a summary that says why there is no NVML.
        cell = results / "lad2020" / "cells" / cid
        tel = result["telemetry"]
        assert tel["nvml"] is False and "no GPU sampled" in tel["reason"] and "CPU fallback" in tel["reason"]
        assert tel["cpu"]["rss_peak_gb"] > 0
        header, *rows = (cell / "samples.csv").read_text().splitlines()
        assert header.startswith("time,elapsed_s,kind") and any(",cpu," in r for r in rows)

    # collect on what the real cluster produced (issue 5): the report, tables and plots.
    c = cli.run("aslhpc.collect", "--results", results, "--experiment", "lad2020", "--reference")
    assert c.returncode == 0, c.stdout + c.stderr
    exp = results / "lad2020"
    report = (exp / "report.md").read_text()
    assert "Using 4GPU" in report and "H2" in report and "published 2020 reference" in c.stdout
    usage = report[report.index("## What each cell used"):]
    assert "% (sacct) |" in usage and "| g4-b512-r0 | 4 |" in usage  # CPU time from accounting, 4 cores
    assert all((exp / "plots" / f).stat().st_size > 0 for f in ("time_vs_gpus.png", "accuracy_vs_batch.png"))
    assert (exp / "table_b512.csv").is_file()
