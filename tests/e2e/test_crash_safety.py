"""Crash-safe submit on the real mini cluster: submit killed right after an sbatch, and a disk that fills
up during submit. Re-running submit must adopt the job the first run left (found in squeue by the token
in its --comment) and complete every cell with exactly one job and one line per epoch.

The kill uses the ASLHPC_TEST_CRASH_AT hook (submission._crash_point: os._exit at that step, as a
SIGKILL would); the full disk is a real tmpfs that an sbatch wrapper fills right after the 2nd sbatch.
Each test uses an experiment name of its own, so jobs of other tests on the cluster never count."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from aslhpc.atomic import read_jsonl
from aslhpc.orchestration.experiment import REPO_JOBS
from aslhpc.orchestration.manifest import load_manifest
from aslhpc.slurm.accounting import parse_comment, queued_jobs_named

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("slurm_cluster")]
EPOCHS = 2


def job_file(tmp_path: Path, prefix: str) -> tuple[Path, str]:
    """smoke.toml under a name no other test uses."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    text = re.sub(r'^name = "smoke"$', f'name = "{name}"', (REPO_JOBS / "smoke.toml").read_text(), flags=re.M)
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path, name


def sacct_jobs(experiment: str) -> dict[str, list[str]]:
    """cell id -> every job id SLURM ever had for it (sacct allocations by our job name, plus squeue)."""
    since = (dt.datetime.now() - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    acct = subprocess.run(["sacct", "-n", "-X", "-P", "--duplicates", "-o", "JobIDRaw,JobName", "-S", since],
                          capture_output=True, text=True, check=True, timeout=60).stdout
    queue = subprocess.run(["squeue", "--me", "-h", "-t", "all", "-o", "%i|%j"], capture_output=True,
                           text=True, check=True, timeout=60).stdout
    found: dict[str, set[str]] = {}
    prefix = f"aslhpc-{experiment}-"
    for line in (acct + queue).splitlines():
        job, _, name = line.partition("|")
        if name.startswith(prefix):
            found.setdefault(name[len(prefix):], set()).add(job)
    return {cell: sorted(ids) for cell, ids in found.items()}


def assert_each_cell_ran_once(results: Path, experiment: str) -> None:
    exp = results / experiment
    m = load_manifest(exp / "manifest.json")
    assert m.pending() == {}
    # slurmdbd records a finished job asynchronously and squeue forgets it after MinJobAge: on a loaded
    # machine a job can be in neither for a while, so wait (bounded) until each cell's job shows up
    deadline = time.monotonic() + 120
    while not set(jobs := sacct_jobs(experiment)) >= set(m.cells) and time.monotonic() < deadline:
        time.sleep(2)
    for cid, entry in m.cells.items():
        assert [a.job_id for a in entry.attempts] == jobs[cid], (cid, jobs)  # one job, the recorded one
        # one attempt folder holds job files, the recorded attempt's, and only of its job
        folders = [d for d in (exp / "jobs" / cid).iterdir() if d.is_dir() and any(d.iterdir())]
        assert [d.relative_to(exp).as_posix() for d in folders] == [entry.last.folder], (cid, folders)
        ids = {f.name.partition("_")[0] for f in folders[0].iterdir() if f.name[:1].isdigit()}
        assert ids == {entry.last.job_id}, (cid, ids)
        epochs = [e["epoch"] for e in read_jsonl(exp / entry.out_dir / "epochs.jsonl")]
        assert epochs == list(range(1, EPOCHS + 1)), (cid, epochs)  # no duplicate epoch line
    assert set(jobs) == set(m.cells)


def test_killed_right_after_sbatch_then_resubmitted(cli, tiny_data: Path, tmp_path: Path, wait_ended) -> None:
    job, name = job_file(tmp_path, "crashsb")
    results = tmp_path / "results"
    args = [job, "--data", tiny_data, "--results", results, "--gpus", "1", "--batch-sizes", "16,32",
            "--epochs", EPOCHS, "--no-array"]  # one job per cell; arrays: the test below
    crashing = replace(cli, env={**cli.env, "ASLHPC_TEST_CRASH_AT": "after-sbatch:1"})
    p = crashing.submit(*args)
    assert p.returncode == 99, (p.stdout, p.stderr)
    manifest = results / name / "manifest.json"
    entry = load_manifest(manifest).cells["g1-b16-r0"]
    assert entry.attempts == [] and entry.intent is not None  # the manifest does not know the job ...
    queue = subprocess.run(["squeue", "--me", "-h", "-o", "%i|%j|%k"], capture_output=True, text=True,
                           timeout=60).stdout
    tagged = [ln.split("|") for ln in queue.splitlines() if ln.split("|")[1] == f"aslhpc-{name}-g1-b16-r0"]
    # ... SLURM does, by the tag
    assert len(tagged) == 1 and parse_comment(tagged[0][2]) == (name, "g1-b16-r0", entry.intent.token)
    # what reconcile reads: the tag's token, and the batch script in this experiment's job folder
    [found] = queued_jobs_named([f"aslhpc-{name}-g1-b16-r0"])
    assert found.token == entry.intent.token and found.state in ("PENDING", "RUNNING", "CONFIGURING")
    assert Path(found.script).parent == (results / name / "jobs" / "g1-b16-r0" / entry.intent.token).resolve()

    p = cli.submit(*args)
    assert p.returncode == 0, p.stderr
    assert f"g1-b16-r0        adopted     job {tagged[0][0]}" in p.stdout
    assert "g1-b32-r0        submitted" in p.stdout and "1 job(s) submitted" in p.stdout
    report = wait_ended(manifest, timeout=240)
    assert {r.state for r in report.rows} == {"COMPLETED"}, report.rows
    assert_each_cell_ran_once(results, name)


@pytest.fixture
def small_disk(tmp_path: Path):  # noqa: ANN201 - Path
    """A 64 MB tmpfs (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)], capture_output=True,
                       text=True, timeout=60)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {p.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False, timeout=60)


def test_disk_full_during_submit_then_resubmitted(cli, tiny_data: Path, tmp_path: Path, small_disk: Path,
                                                  wait_ended) -> None:
    job, name = job_file(tmp_path, "diskfull")
    results = small_disk / "results"
    filler = small_disk / "filler"
    # sbatch as usual (jobs held 20 s, so none writes on the full disk), then fill the disk after the 2nd one
    wrap = tmp_path / "bin"
    wrap.mkdir()
    (wrap / "sbatch").write_text(
        f"#!/bin/bash\nout=$({shutil.which('sbatch')} --begin=now+20 \"$@\"); rc=$?; echo \"$out\"\n"
        f"n=$(( $(cat {wrap}/count 2>/dev/null || echo 0) + 1 )); echo $n > {wrap}/count\n"
        f"[ $n = 2 ] && cat /dev/zero > {filler} 2>/dev/null\nexit $rc\n")
    (wrap / "sbatch").chmod(0o755)
    args = [job, "--data", tiny_data, "--results", results, "--gpus", "1", "--batch-sizes", "16,32,64",
            "--epochs", EPOCHS, "--no-array"]
    filling = replace(cli, env={**cli.env, "PATH": f"{wrap}:{cli.env['PATH']}"})
    p = filling.submit(*args)
    assert p.returncode == 2, (p.stdout, p.stderr)
    err = p.stderr.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    m = load_manifest(results / name / "manifest.json")
    first = m.cells["g1-b16-r0"].last.job_id
    # the write that fails: our manifest, or submitit's files around its sbatch (either way the job is named)
    assert re.search(r"^error: cannot write \S+ \(No space left on device\): "
                     rf"submitted and recorded: g1-b16-r0 \(job {first}\); "
                     r"submitted but not recorded: g1-b32-r0 \(job (\d+);.*; "
                     r"not submitted: g1-b64-r0; free space and run submit again$", err), err
    lost = re.search(r"g1-b32-r0 \(job (\d+);", err).group(1)
    assert m.cells["g1-b32-r0"].attempts == [] and m.cells["g1-b32-r0"].intent is not None
    assert not [p for p in (results / name).iterdir() if p.name.endswith(".tmp")]  # no temp file left

    filler.unlink()  # space freed
    p = cli.submit(*args)
    assert p.returncode == 0, p.stderr
    assert f"g1-b32-r0        adopted     job {lost}" in p.stdout and "g1-b64-r0        submitted" in p.stdout
    report = wait_ended(results / name / "manifest.json", timeout=300)
    assert {r.state for r in report.rows} == {"COMPLETED"}, report.rows
    assert_each_cell_ran_once(results, name)


def test_killed_right_after_an_arrays_sbatch_then_resubmitted(cli, tiny_data: Path, tmp_path: Path,
                                                              wait_ended) -> None:
    """Both cells of one job array are in flight when submit dies: the next submit finds the array's tasks
    by the array's tag and adopts each as its cell's job (task i = the intent's task i)."""
    job, name = job_file(tmp_path, "crasharr")
    results = tmp_path / "results"
    args = [job, "--data", tiny_data, "--results", results, "--gpus", "1,2", "--batch-sizes", "16,32",
            "--epochs", EPOCHS]
    crashing = replace(cli, env={**cli.env, "ASLHPC_TEST_CRASH_AT": "after-sbatch:1"})
    p = crashing.submit(*args)
    assert p.returncode == 99, (p.stdout, p.stderr)
    manifest = results / name / "manifest.json"
    m = load_manifest(manifest)
    intents = {cid: e.intent for cid, e in m.cells.items() if e.intent is not None}
    assert {cid: i.task for cid, i in intents.items()} == {"g1-b16-r0": 0, "g1-b32-r0": 1}
    [token] = {i.token for i in intents.values()}
    tasks = queued_jobs_named([f"aslhpc-{name}-array"])
    assert sorted(t.job_id.split("_")[1] for t in tasks) == ["0", "1"] and {t.token for t in tasks} == {token}

    p = cli.submit(*args)
    assert p.returncode == 0, p.stderr
    for t in tasks:
        cell = "g1-b16-r0" if t.job_id.endswith("_0") else "g1-b32-r0"
        assert f"{cell:<16} adopted     job {t.job_id}" in p.stdout
    assert "2 job(s) submitted (as 1 job array(s)" in p.stdout  # the g2 cells, their own array
    report = wait_ended(manifest, timeout=300)
    assert {r.state for r in report.rows} == {"COMPLETED"}, report.rows
    m = load_manifest(manifest)
    assert m.pending() == {} and all(len(e.attempts) == 1 for e in m.cells.values())
    assert {m.cells[c].last.job_id for c in ("g1-b16-r0", "g1-b32-r0")} == {t.job_id for t in tasks}
    for cid, entry in m.cells.items():  # each ran once: one line per epoch
        epochs = [e["epoch"] for e in read_jsonl(results / name / entry.out_dir / "epochs.jsonl")]
        assert epochs == list(range(1, EPOCHS + 1)), (cid, epochs)


def test_a_cell_killed_before_its_first_checkpoint_reruns_without_counting_an_epoch_twice(
        cli, tiny_data: Path, tmp_path: Path, wait_ended) -> None:
    """Issue 27.1 on the cluster: the job's trainer dies (SIGKILL) between its first epoch line and its first
    checkpoint; --retry-failed runs the cell again and its epochs are [1, 2], not [1, 1, 2]."""
    from aslhpc.errors import CRASH_ENV

    job, name = job_file(tmp_path, "crashck")
    results = tmp_path / "results"
    args = [job, "--data", tiny_data, "--results", results, "--gpus", "1", "--batch-sizes", "16",
            "--epochs", EPOCHS]
    dying = replace(cli, env={**cli.env, CRASH_ENV: "cell-before-first-checkpoint"})  # the job inherits it
    p = dying.submit(*args)
    assert p.returncode == 0, p.stderr
    manifest = results / name / "manifest.json"
    report = wait_ended(manifest, timeout=240)
    assert [r.state for r in report.rows] != ["COMPLETED"], report.rows
    cell = results / name / load_manifest(manifest).cells["g1-b16-r0"].out_dir
    assert [e["epoch"] for e in read_jsonl(cell / "epochs.jsonl")] == [1]
    assert not (cell / "checkpoint.pt").exists()

    p = cli.submit(*args, "--retry-failed")
    assert p.returncode == 0, p.stderr
    report = wait_ended(manifest, timeout=240)
    assert [r.state for r in report.rows] == ["COMPLETED"], report.rows
    assert [e["epoch"] for e in read_jsonl(cell / "epochs.jsonl")] == list(range(1, EPOCHS + 1))
