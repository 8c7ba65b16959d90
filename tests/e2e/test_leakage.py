"""jobs/lad2020-leakage.toml on the mini cluster: the matrix over both splits submits one job per
(split, GPUs, batch size), the blocked cells carry the split in their id, and collect's report shows the
per-split tables and H1, and the gap table and plot, the blocked split labelled leakage-free."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aslhpc.orchestration.manifest import load_manifest

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("slurm_cluster")]


@pytest.fixture(scope="module")
def frames_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 frames per class: the blocked split's smallest size with a test frame in every class."""
    from aslhpc.data.synth import write_dataset

    root = tmp_path_factory.mktemp("frames") / "asl"
    write_dataset(root, per_class=30, seed=0, image_size=64)
    return root


def test_leakage_experiment_on_the_cluster(cli, frames_data: Path, tmp_path: Path, wait_ended) -> None:
    results = tmp_path / "results"
    p = cli.submit("lad2020-leakage", "--data", frames_data, "--results", results, "--gpus", "1,2",
                   "--batch-sizes", "128", "--epochs", "1", "--pipeline", "fast", "--allow-cpu",
                   "--mem", "1G", "--cpus-per-gpu", "1", "--preamble", "minislurm")
    assert p.returncode == 0, p.stderr
    assert "4 job(s) submitted" in p.stdout
    manifest = results / "lad2020-leakage" / "manifest.json"
    m = load_manifest(manifest)
    assert m is not None and sorted(m.cells) == ["g1-b128-blocked-r0", "g1-b128-r0", "g2-b128-blocked-r0",
                                                 "g2-b128-r0"]
    assert m.spec["splits"] == ["random", "blocked"]
    report = wait_ended(manifest, timeout=300)
    assert report.counts() == {"COMPLETED": 4}

    splits = {}
    for cid in m.cells:
        result = json.loads((results / "lad2020-leakage" / "cells" / cid / "result.json").read_text())
        splits[cid] = result["split"]
        slurm = result["slurm"]  # an array task records its array's id and its task index
        ran_as = f"{slurm['job_id']}_{slurm['array_task']}" if slurm.get("array_task") else slurm["job_id"]
        assert ran_as == m.cells[cid].last.job_id
    assert {s["kind"] for c, s in splits.items() if "blocked" in c} == {"blocked"}
    assert {s["kind"] for c, s in splits.items() if "blocked" not in c} == {"random"}
    assert len({s["hash"] for s in splits.values()}) == 2 and {s["seed"] for s in splits.values()} == {0}

    c = cli.run("aslhpc.collect", "--results", results, "--experiment", "lad2020-leakage")
    assert c.returncode == 0, c.stderr
    assert any(ln.startswith("Leakage: random − blocked test accuracy") and "H1: random" in ln
               and "blocked (leakage-free)" in ln for ln in c.stdout.splitlines()), c.stdout
    exp = results / "lad2020-leakage"
    md = (exp / "report.md").read_text()
    assert "## Leakage: random vs blocked split" in md
    assert "### Split: random" in md and "### Split: blocked (leakage-free reading)" in md
    assert "#### Batch size 128 (random split)" in md and "#### Batch size 128 (blocked split)" in md
    assert md.count("Hypotheses judged on the") == 2 and "![leakage_gap](plots/leakage_gap.png)" in md
    assert (exp / "plots" / "leakage_gap.png").is_file()
    gap = (exp / "leakage_gap.csv").read_text().splitlines()
    assert len(gap) == 3 and gap[0].startswith("batch_size,gpus,strategy,pipeline,random_test_acc")
    verdicts = json.loads((exp / "verdicts.json").read_text())
    assert set(verdicts["by_split"]) == {"random", "blocked"}
    assert all(v["verdicts"][0]["hypothesis"] == "H1" for v in verdicts["by_split"].values())
