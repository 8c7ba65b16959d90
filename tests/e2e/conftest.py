"""End-to-end tests against the real mini SLURM cluster (``bash scripts/minislurm.sh up 2``).

Without a reachable cluster these tests skip locally and FAIL in CI (``CI=true``), so a broken
cluster can never pass as a green run. Everything goes through the real CLIs in subprocesses,
the way a user runs them; assertions read the manifest, the cell files, sacct and squeue.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: written by ``scripts/minislurm.sh up`` (the ClusterName of the cluster it brought up)
CLUSTER_MARKER = Path("/run/minislurm/cluster")
CLUSTER_ENV = "ASLHPC_E2E_CLUSTER"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _config_cluster_name() -> str:
    """The ClusterName the SLURM that answers here reports ('' when scontrol does not answer)."""
    try:
        proc = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    for line in proc.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "ClusterName":
            return value.strip()
    return ""


def project_cluster() -> tuple[bool, str]:
    """Is the SLURM that answers the one this project's script brought up (or the one ASLHPC_E2E_CLUSTER
    names)? End-to-end tests submit real jobs: never to some other cluster that happens to answer."""
    wanted = os.environ.get(CLUSTER_ENV, "").strip()
    if not wanted:
        try:
            wanted = CLUSTER_MARKER.read_text(encoding="utf-8").strip()
        except OSError:
            return False, (f"no {CLUSTER_MARKER} (written by scripts/minislurm.sh up) and {CLUSTER_ENV} "
                           "unset: not this project's cluster")
    actual = _config_cluster_name()
    if actual != wanted:
        return False, f"the SLURM answering here is cluster {actual or '(none)'!r}, not {wanted!r}"
    return True, ""


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """The mini cluster must be up with accounting (sacct) and the study's partition and reservation."""
    from aslhpc.slurm.cluster import query_cluster, slurm_reachable

    ok, why = project_cluster()
    if ok:
        ok, why = slurm_reachable()
    if ok:
        acct = subprocess.run(["sacct", "-n", "-X", "-o", "JobID", "-S", "now"], capture_output=True,
                              text=True, timeout=60)
        info = query_cluster()
        if acct.returncode != 0:
            ok, why = False, f"sacct does not work ({acct.stderr.strip()})"
        elif "reservation" not in info.partitions or "CSYE7374_GPU" not in info.reservations:
            ok, why = False, "partition 'reservation' or reservation CSYE7374_GPU missing"
    if not ok:
        msg = f"mini SLURM cluster not usable: {why}; start it with: sudo bash scripts/minislurm.sh up 2"
        if _in_ci():
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """29 classes x 6 generated images: a cell trains one epoch in seconds on one CPU."""
    from aslhpc.data.synth import write_dataset

    root = tmp_path_factory.mktemp("tiny") / "asl"
    write_dataset(root, per_class=6, seed=0)
    return root


@dataclass
class Cli:
    """Runs aslhpc's CLIs as a user would (fresh processes, repo as working directory)."""

    env: dict[str, str]

    def run(self, module: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO, env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def submit(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return self.run("aslhpc.submit", *args, timeout=timeout)

    def status(self, *args: str) -> subprocess.CompletedProcess:
        return self.run("aslhpc.status", *args)

    def popen(self, module: str, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", module, *map(str, args)], cwd=REPO, env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="session")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    env = dict(os.environ)
    env["ASLHPC_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    env["COLUMNS"] = "250"
    return Cli(env)


def wait_until_ended(manifest: Path, timeout: float, poll: float = 1.0):  # noqa: ANN201 - StatusReport
    """Poll status (the library) until every cell has ended; fail with the table and squeue on timeout."""
    from rich.console import Console

    from aslhpc.orchestration.cellstate import experiment_status
    from aslhpc.status import render_table

    deadline = time.monotonic() + timeout
    while True:
        report = experiment_status(manifest)
        if report.all_ended:
            return report
        if time.monotonic() > deadline:
            console = Console(record=True, width=250)
            console.print(render_table(report))
            queue = subprocess.run(["squeue"], capture_output=True, text=True, timeout=60).stdout
            pytest.fail(f"cells did not end within {timeout:.0f}s:\n{console.export_text()}\n{queue}")
        time.sleep(poll)


def slurm_mark() -> str:
    """A submit-time stamp later than every job submitted so far (waits for the next whole second).

    A set of job ids taken "before" is not enough: slurmdbd records a finished job asynchronously, so
    a job submitted earlier can turn up in sacct only after the "before" read and look new.
    """
    time.sleep(1.01 - time.time() % 1)
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def slurm_jobs_since(mark: str) -> frozenset[str]:
    """Ids of the jobs sacct or squeue says were submitted at or after ``mark`` (from slurm_mark)."""
    acct = subprocess.run(["sacct", "-a", "-n", "-X", "-P", "-o", "JobIDRaw,Submit", "-S", mark],
                          capture_output=True, text=True, check=True, timeout=60).stdout
    queue = subprocess.run(["squeue", "-h", "-o", "%i|%V"], capture_output=True, text=True, check=True,
                           timeout=60).stdout
    rows = [ln.split("|") for ln in (acct + queue).splitlines() if "|" in ln]
    return frozenset(job for job, submit in rows if submit >= mark)


@pytest.fixture(scope="session")
def wait_ended():  # noqa: ANN201
    return wait_until_ended


@pytest.fixture(scope="session")
def jobs_since():  # noqa: ANN201
    """(mark, since): take a mark before an action, then since(mark) is the set of jobs it submitted."""
    return slurm_mark, slurm_jobs_since
