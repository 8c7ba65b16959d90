"""``submit --until-conclusive`` on the mini cluster: the submitting process exits at once, and the round
chain walks on by itself (the dependent job of each round decides and submits the next) until it stops, each
round recorded in the manifest and verdicts.json, no cell run twice."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
from pathlib import Path

import pytest

from aslhpc.orchestration.manifest import load_manifest

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("slurm_cluster")]


def _cell_jobs(experiment: str) -> list[str]:
    """Every cell job (array tasks as ``<array>_<task>``) sacct has for the experiment, repeats included."""
    since = (dt.datetime.now() - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    acct = subprocess.run(["sacct", "-n", "-X", "-P", "--duplicates", "-o", "JobID,JobName", "-S", since],
                          capture_output=True, text=True, check=True, timeout=60).stdout
    rows = [ln.split("|") for ln in acct.splitlines() if "|" in ln]
    return [job for job, jname in rows if jname.startswith(f"aslhpc-{experiment}-")
            and not jname.endswith("-collect")]


def test_a_round_chain_runs_to_its_end_with_the_users_shell_closed(cli, tiny_data: Path,
                                                                   tmp_path: Path) -> None:
    from tests.e2e.test_crash_safety import job_file

    job, name = job_file(tmp_path, "rounds")
    results = tmp_path / "results"
    # Batch sizes 16 and 17 cost the same, so two runs each leave H4's time intervals overlapping (the
    # Student-t factor at two runs is 12.7): round 2 must repeat one of them. One task at a time keeps the
    # cells from sharing a node's cores (that would make H4 not fixable by repeats).
    p = cli.submit(job, "--data", tiny_data, "--results", results, "--gpus", "1", "--batch-sizes", "16,17",
                   "--repeats", "2", "--epochs", "1", "--array-parallelism", "1", "--until-conclusive",
                   "--max-rounds", "2")
    assert p.returncode == 0, p.stderr
    assert "runs the next round's decision after" in " ".join(p.stdout.split())
    manifest = results / name / "manifest.json"

    deadline = time.monotonic() + 900
    while True:  # the submit has exited: from here on only the cluster's jobs act
        rounds = load_manifest(manifest).rounds.rounds
        if rounds[-1].decided:
            break
        assert time.monotonic() < deadline, f"the round chain did not end within 900 s: {rounds}"
        time.sleep(3)
    assert [r.round for r in rounds] == [1, 2]
    first, second = rounds
    assert first.decided and "H4" in first.open and first.gpu_hours > 0
    assert len(second.cells) == 1 and second.cells[0].endswith("-r2")  # one more run of one configuration
    assert second.outcome  # why it stopped: conclusive, or --max-rounds 2 spent
    assert second.outcome.startswith(("--max-rounds 2 spent", "conclusive", "every verdict"))

    m = load_manifest(manifest)
    assert set(m.cells) == set(first.cells) | set(second.cells)
    assert all(len(e.attempts) == 1 for e in m.cells.values())  # each cell submitted once ...
    ran = _cell_jobs(name)
    assert sorted(ran) == sorted(e.last.job_id for e in m.cells.values())  # ... and SLURM ran each once
    deadline = time.monotonic() + 120
    verdicts = results / name / "verdicts.json"
    while not (verdicts.is_file() and len(json.loads(verdicts.read_text()).get("rounds", [])) == 2
               and json.loads(verdicts.read_text())["rounds"][-1]["decided"]):
        assert time.monotonic() < deadline, "the last round's report was not written within 120 s"
        time.sleep(2)
    assert "## Rounds (--until-conclusive)" in (results / name / "report.md").read_text()
