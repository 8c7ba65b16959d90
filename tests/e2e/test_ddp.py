"""A DDP cell: one task per GPU (ntasks-per-node=N, gres per node N), gloo on the CPU; submit --wait."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aslhpc.manifest import load_manifest

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("slurm_cluster")]


def test_ddp_cell_runs_one_task_per_gpu(cli, tiny_data: Path, tmp_path: Path, wait_ended) -> None:
    results = tmp_path / "results"
    p = cli.submit("jobs/smoke.toml", "--data", tiny_data, "--results", results, "--gpus", "2",
                   "--batch-sizes", "32", "--strategy", "ddp", "--epochs", "1", "--max-steps", "2",
                   "--wait", "--interval", "1", timeout=150)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "1 COMPLETED" in p.stdout  # --wait stayed until the cell ended, showing the status table
    manifest = results / "smoke" / "manifest.json"
    report = wait_ended(manifest, timeout=5)
    assert report.counts() == {"COMPLETED": 1}, report.rows
    entry = load_manifest(manifest).cells["g2-b32-ddp-r0"]
    result = json.loads((results / "smoke" / entry.out_dir / "result.json").read_text())
    assert result["strategy"] == "ddp" and result["world_size"] == 2 and result["data_parallel"]
    assert str(result["slurm"]["ntasks"]) == "2" and int(result["slurm"]["gpus_granted"]) == 2
    script = (results / "smoke" / entry.last.folder / f"{entry.last.job_id}_submission.sh").read_text()
    assert "#SBATCH --ntasks-per-node=2" in script and "#SBATCH --gres=gpu:v100-sxm2:2" in script
