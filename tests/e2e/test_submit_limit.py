"""A site's MaxSubmitJobs on the mini cluster: submit chunks its arrays under the limit, waits when sbatch is
refused (AssocMaxSubmitJobLimit) and finishes the submission instead of failing. The limit lives on an
account of its own (``scripts/minislurm.sh limit N``), so other jobs on the cluster are not limited; it is
removed again in a finally."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from aslhpc.orchestration.manifest import load_manifest

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("slurm_cluster")]
REPO = Path(__file__).resolve().parents[2]
ACCOUNT = "aslhpc-limited"


def minislurm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "scripts" / "minislurm.sh"), *args], capture_output=True,
                          text=True, timeout=60)


def limit_not_enforced() -> str:
    """'' when sbatch refuses a held 4-task array on the limited account (limit 3); else why not."""
    probe = subprocess.run(["sbatch", "--account", ACCOUNT, "--hold", "-p", "reservation", "--reservation",
                            "CSYE7374_GPU", "--mem", "100M", "-a", "0-3", "-o", "/dev/null", "--wrap",
                            "true"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        return ""
    subprocess.run(["scancel", probe.stdout.split()[-1]], check=False, timeout=60)
    return "sbatch accepted 4 jobs over MaxSubmitJobs=3: slurmctld was started without limit enforcement"


def test_submit_waits_out_max_submit_jobs_and_finishes(cli, tiny_data: Path, tmp_path: Path,
                                                      wait_ended) -> None:
    from tests.e2e.conftest import _in_ci
    from tests.e2e.test_crash_safety import job_file

    p = minislurm("limit", "3", ACCOUNT)
    why = p.stderr.strip() if p.returncode != 0 else limit_not_enforced()
    if why:
        minislurm("limit", "0", ACCOUNT)
        msg = (f"the mini cluster does not enforce a submit limit ({why}); start it with "
               "MINISLURM_ENFORCE_LIMITS=1 scripts/minislurm.sh up 2")
        if _in_ci():
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    try:
        job, name = job_file(tmp_path, "maxsubmit")
        results = tmp_path / "results"
        p = cli.submit(job, "--data", tiny_data, "--results", results, "--gpus", "1", "--batch-sizes",
                       "16,32,64", "--repeats", "2", "--epochs", 1, "--account", ACCOUNT,
                       "--submit-timeout", "400", timeout=600)
        assert p.returncode == 0, (p.stdout, p.stderr)
        assert "waiting: sbatch refused for AssocMaxSubmitJobLimit" in p.stdout, p.stdout
        assert "6 job(s) submitted (as 2 job array(s)" in p.stdout  # chunked at the limit: 3 + 3
        report = wait_ended(results / name / "manifest.json", timeout=300)
        assert report.counts() == {"COMPLETED": 6}
        m = load_manifest(results / name / "manifest.json")
        assert all(len(e.attempts) == 1 for e in m.cells.values()) and m.pending() == {}
    finally:
        minislurm("limit", "0", ACCOUNT)
