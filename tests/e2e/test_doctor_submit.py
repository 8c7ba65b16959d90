"""``doctor --submit`` on the mini cluster: one job per job shape with the experiment's own request,
each node's report printed; a request SLURM refuses is one error line and submits nothing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("slurm_cluster")]


def test_submit_runs_the_checks_on_each_job_shape(cli, tiny_data: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    p = cli.run("aslhpc.doctor", "--submit", "jobs/smoke.toml", "--data", tiny_data, "--results", results,
                "--quick", timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    jobs = dict(line.split()[-1:] + line.split()[3:4] for line in p.stdout.splitlines()
                if line.startswith("submitted doctor job"))
    assert set(jobs) == {"g1-dp", "g2-dp"}  # smoke.toml: 1- and 2-GPU dp cells
    for label, job_id in jobs.items():
        assert f"job {job_id}, shape {label}" in p.stdout
        fields = "JobName,Partition,Reservation,State"
        acct = subprocess.run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", fields], capture_output=True,
                              text=True, check=True, timeout=60).stdout.split()[0].split("|")
        assert acct == [f"doctor-smoke-{label}", "reservation", "CSYE7374_GPU", "COMPLETED"]
    [stamp] = (results / "smoke" / "doctor").iterdir()
    report = json.loads((stamp / "g2-dp.json").read_text())
    rows = {c["name"]: c for c in report["checks"]}
    assert rows["CUDA devices"]["status"] == "skip" and "dummy" in rows["CUDA devices"]["found"]
    assert rows["data layout"]["status"] == "pass" and rows["data layout"]["figures"]["images"] == 29 * 6
    assert report["ok"] is True


def test_refused_request_is_one_line_and_submits_nothing(cli, tiny_data: Path, tmp_path: Path) -> None:
    job = tmp_path / "bad.toml"
    name = f"badresv{os.getpid()}"  # unique: other sessions' jobs run on the same cluster meanwhile
    text = (Path(__file__).resolve().parents[2] / "jobs" / "smoke.toml").read_text()
    job.write_text(text.replace('reservation = "CSYE7374_GPU"', 'reservation = "NOPE"')
                   .replace('name = "smoke"', f'name = "{name}"'))
    p = cli.run("aslhpc.doctor", "--submit", job, "--data", tiny_data, "--results", tmp_path / "r")
    assert p.returncode == 2
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: reservation 'NOPE' does not exist")
    assert "no doctor job submitted" in err[0]
    for label in ("g1-dp", "g2-dp"):
        cmd = ["sacct", "-a", "-n", "-X", "-S", "2000-01-01", "--name", f"doctor-{name}-{label}"]
        acct = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60)
        assert acct.stdout.strip() == ""
