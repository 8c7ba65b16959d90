"""Bad requests against the real cluster: one line each, nothing submitted (sacct/squeue job counts
unchanged), and the existing manifest byte-for-byte as it was. Site options reach the real sbatch."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("slurm_cluster")]


@pytest.fixture(scope="module")
def submitted(cli, tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An experiment with a manifest: one real 1-step cell of jobs/smoke.toml, kept off node n2."""
    results = tmp_path_factory.mktemp("validation") / "results"
    p = cli.submit("jobs/smoke.toml", "--data", tiny_data, "--results", results, "--gpus", "1",
                   "--batch-sizes", "32", "--epochs", "1", "--max-steps", "1", "--exclude", "n2")
    assert p.returncode == 0, p.stderr
    return results


CASES = {
    "bad reservation": (["--reservation", "NOPE"], "reservation 'NOPE' does not exist; use --reservation "
                                                   "with one of: CSYE7374_GPU"),
    "missing partition": (["--partition", "nopart"], "partition 'nopart' does not exist; use --partition "
                                                     "with one of: reservation"),
    "5 GPUs on a 4-GPU "
    "node": (["--gpus", "5"], "at most 4 gpu:v100-sxm2 each; use --gpus with counts from 1 to 4"),
    "3 nodes on a 2-node partition": (["--gpus", "3", "--strategy", "ddp", "--gpus-per-node", "1"],
                                      "cell g3-b32-ddp-r0: 3 GPUs at 1 per node need 3 nodes but partition "
                                      "'reservation' in reservation 'CSYE7374_GPU' has 2"),
    "missing dataset": (["--data", "/nonexistent/asl"], "dataset directory /nonexistent/asl does not exist"),
    "a newline in a site value": (["--constraint", "v100\n#SBATCH --partition=debug"],
                                  "cluster.constraint='v100\\n#SBATCH --partition=debug' is not a "
                                  "safe value"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_request_submits_nothing(case: str, cli, tiny_data: Path, submitted: Path, jobs_since) -> None:
    extra, message = CASES[case]
    manifest = submitted / "smoke" / "manifest.json"
    mark, since = jobs_since
    before, t0 = manifest.read_bytes(), mark()
    args = ["jobs/smoke.toml", "--data", tiny_data, "--results", submitted, "--gpus", "1", "--batch-sizes",
            "32", "--epochs", "1", "--max-steps", "1"]
    if extra[0] == "--data":
        args[args.index("--data") + 1] = extra[1]
        extra = []
    p = cli.submit(*args, *extra)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], p.stderr
    assert since(t0) == frozenset()  # no job submitted since, in sacct or squeue
    assert manifest.read_bytes() == before


def test_site_options_reach_the_real_sbatch(submitted: Path, wait_ended) -> None:
    """The cell was submitted with --exclude n2: SLURM accepted the script (no --wckey line, which some sites
    refuse) and ran the cell on n1."""
    manifest = submitted / "smoke" / "manifest.json"
    wait_ended(manifest, timeout=300)
    [script] = (submitted / "smoke" / "jobs").rglob("*_submission.sh")
    text = script.read_text()
    assert "#SBATCH --exclude=n2\n" in text and "--wckey" not in text
    job = json.loads(manifest.read_text())["cells"]["g1-b32-r0"]["attempts"][-1]["job_id"]
    nodes = subprocess.run(["sacct", "-j", job, "-X", "-n", "-P", "-o", "NodeList"], capture_output=True,
                           text=True, check=True, timeout=60).stdout.split()
    assert nodes == ["n1"]
