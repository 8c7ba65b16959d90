"""DDP cells on the real mini cluster: one task per GPU, gloo on the CPU, 2 tasks on one node and
1 task on each of two nodes; every rank ends with the same weights and the cell learns."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aslhpc.orchestration.manifest import CellEntry, load_manifest
from aslhpc.slurm.cluster import expand_hostlist

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("slurm_cluster")]

CELL = "g2-b32-ddp-r0"
CHANCE = 100 / 29  # percent, 29 classes
#: how long a cell may take to end: generous, for a loaded machine (a cell takes ~10 s on an idle one)
WAIT_S = 300
# smoke.toml's cluster, with a learning rate that learns the tiny generated set in 4 short epochs
# (about 20 steps of 32 images), so "it learned" is a real check and a cell still ends in ~10 s.
DDP_TOML = """
[experiment]
name = "ddp"
[matrix]
gpus = [2]
batch_sizes = [32]
strategy = "ddp"
[train]
epochs = 4
lr = 0.05
momentum = 0.9
pipeline = "fast"
allow_cpu = true
workers = 0
log_every = 0
[cluster]
partition = "reservation"
reservation = "CSYE7374_GPU"
gpu_type = "v100-sxm2"
cpus_per_gpu = 1
mem = "1G"
time = "15"
preamble = "minislurm"
"""


@dataclass
class DdpRun:
    manifest: Path
    stdout: str
    entry: CellEntry
    result: dict[str, Any]
    script: str
    epochs: list[dict[str, Any]]


def finished_run(results: Path, stdout: str = "") -> DdpRun:
    entry = load_manifest(results / "ddp" / "manifest.json").cells[CELL]
    cell_dir = results / "ddp" / entry.out_dir
    result = json.loads((cell_dir / "result.json").read_text())
    script = (results / "ddp" / entry.last.folder / f"{entry.last.job_id}_submission.sh").read_text()
    epochs = [json.loads(line) for line in (cell_dir / "epochs.jsonl").read_text().splitlines()]
    return DdpRun(results / "ddp" / "manifest.json", stdout, entry, result, script, epochs)


@pytest.fixture(scope="module")
def job_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("jobs") / "ddp.toml"
    path.write_text(DDP_TOML)
    return path


@pytest.fixture(scope="module")
def one_node(cli, tiny_data: Path, job_file: Path, tmp_path_factory: pytest.TempPathFactory) -> DdpRun:
    """2 tasks on one node, followed with ``submit --wait``; the reference for the two-node run."""
    results = tmp_path_factory.mktemp("one-node") / "results"
    p = cli.submit(job_file, "--data", tiny_data, "--results", results, "--wait", "--interval", "1",
                   timeout=WAIT_S + 60)
    assert p.returncode == 0, p.stdout + p.stderr
    return finished_run(results, p.stdout)


def assert_ranks_agree_and_learned(run: DdpRun) -> None:
    r = run.result
    assert r["strategy"] == "ddp" and r["world_size"] == 2 and r["data_parallel"]
    assert len(r["ranks"]["weight_digests"]) == 2 and r["ranks"]["in_sync"] is True, r["ranks"]
    # learned: the last epoch's training accuracy is far above chance and the loss fell
    assert [e["epoch"] for e in run.epochs] == [1, 2, 3, 4]  # only rank 0 writes the cell's files
    assert run.epochs[-1]["train_acc"] > 10 * CHANCE, run.epochs
    assert run.epochs[-1]["train_loss"] < 0.7 * run.epochs[0]["train_loss"], run.epochs
    # the reported figures are the best-validation epoch's (17 validation images: which epoch wins is noisy)
    best = min(run.epochs, key=lambda e: e["val_loss"])
    assert r["best_epoch"] == best["epoch"] and r["train_acc"] == best["train_acc"]


def test_ddp_cell_runs_one_task_per_gpu(one_node: DdpRun, wait_ended) -> None:
    assert "1 COMPLETED" in one_node.stdout  # --wait stayed until the cell ended, showing the status table
    assert wait_ended(one_node.manifest, timeout=5).counts() == {"COMPLETED": 1}
    r = one_node.result
    assert str(r["slurm"]["ntasks"]) == "2" and int(r["slurm"]["gpus_granted"]) == 2
    assert expand_hostlist(r["slurm"]["nodelist"]) == [r["slurm"]["node"]]
    for line in ("--nodes=1", "--ntasks-per-node=2", "--gres=gpu:v100-sxm2:2"):
        assert f"#SBATCH {line}\n" in one_node.script, line
    assert_ranks_agree_and_learned(one_node)


def test_ddp_cell_spans_two_nodes_with_one_task_each(cli, tiny_data: Path, job_file: Path, tmp_path: Path,
                                                     wait_ended, one_node: DdpRun) -> None:
    results = tmp_path / "results"
    p = cli.submit(job_file, "--data", tiny_data, "--results", results, "--gpus", "2", "--strategy", "ddp",
                   "--gpus-per-node", "1")
    assert p.returncode == 0, p.stdout + p.stderr
    report = wait_ended(results / "ddp" / "manifest.json", timeout=WAIT_S)
    assert report.counts() == {"COMPLETED": 1}, report.rows
    run = finished_run(results)
    for line in ("--nodes=2", "--ntasks-per-node=1", "--gres=gpu:v100-sxm2:1"):
        assert f"#SBATCH {line}\n" in run.script, line
    slurm = run.result["slurm"]
    assert expand_hostlist(slurm["nodelist"]) == ["n1", "n2"] and str(slurm["ntasks"]) == "2"
    # rank 1 ran on the second node (submitit logs each task's place in the job)
    log1 = (results / "ddp" / run.entry.last.folder / f"{run.entry.last.job_id}_1_log.out").read_text()
    assert "global_rank=1(2)" in log1 and "node=1(2)" in log1 and "local_rank=0(1)" in log1
    assert_ranks_agree_and_learned(run)
    # same ranks, same shards, same seeds: where the ranks run does not change the result (gloo on CPU)
    assert run.result["ranks"]["weight_digests"] == one_node.result["ranks"]["weight_digests"]
    metrics = ("train_loss", "train_acc", "val_loss", "val_acc")
    assert [[e[k] for k in metrics] for e in run.epochs] == [[e[k] for k in metrics] for e in one_node.epochs]
