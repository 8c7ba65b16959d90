"""load_matrix: one row per cell, holes with state and reason, split-hash refusal."""

from __future__ import annotations

import json
import math
import os
import time

import pytest
from experiment_builders import (
    paper_experiment,
    result_json,
    write_cell,
    write_json,
    write_manifest,
)

from aslhpc.analysis.matrix import holes
from aslhpc.errors import AslhpcError
from aslhpc.snapshot import find_experiments, load_matrix


def test_loads_every_cell_with_metrics_and_memory(tmp_path):
    exp = paper_experiment(tmp_path)
    m = load_matrix(exp)
    assert len(m) == 12
    assert (m["state"] == "COMPLETED").all()
    r = m[(m["batch_size"] == 256) & (m["gpus"] == 3)].iloc[0]
    assert r["exec_time_s"] == 2028.72
    assert (r["gpu0_gb"], r["gpu1_gb"], r["gpu2_gb"]) == (1.809, 1.739, 1.719)
    assert math.isnan(r["gpu3_gb"])  # the sampler saw GPU 3, but the cell did not use it
    assert r["split_hash"] and r["pipeline"] == "fast" and r["strategy"] == "dp"
    assert r["host"] == "d1001" and r["driver"] == "410.48" and r["slurm_job_id"] == "1000"
    assert r["batches_train"] == 300 and r["n_train"] == 76760
    assert list(m.columns[-8:-4]) == ["gpu0_gb", "gpu1_gb", "gpu2_gb", "gpu3_gb"]
    assert list(m.columns[-4:]) == ["gpu0_proc_gb", "gpu1_proc_gb", "gpu2_proc_gb", "gpu3_proc_gb"]


def test_no_nvml_gives_nan_memory(tmp_path):
    exp = tmp_path / "e"
    write_cell(exp, result_json("e", 2, 128, nvml=False))
    m = load_matrix(exp)
    assert m[["gpu0_gb", "gpu1_gb"]].isna().all().all()
    assert not m["nvml"].iloc[0]


def test_holes_have_state_and_reason_and_never_crash(tmp_path):
    exp = paper_experiment(tmp_path, skip=((128, 2), (128, 3), (256, 4), (512, 4), (512, 3)))
    cells = exp / "cells"
    # failed: error.json with a one-line error
    write_json(
        cells / "g2-b128-r0" / "error.json",
        {"error": "CUDA out of memory; lower --batch-size", "traceback": "...", "time": "t"},
    )
    # running: fresh progress.json
    write_json(
        cells / "g3-b128-r0" / "progress.json",
        {"epoch": 3, "epochs": 25, "batch": 10, "batches": 600, "phase": "train"},
    )
    # incomplete: epochs.jsonl last touched 3 hours ago
    ep = cells / "g4-b256-r0" / "epochs.jsonl"
    write_json(ep, {"epoch": 1})
    old = time.time() - 3 * 3600
    os.utime(ep, (old, old))
    # a result.json cut short
    (cells / "g4-b512-r0").mkdir(parents=True)
    (cells / "g4-b512-r0" / "result.json").write_text('{"schema": 1, "exec_ti', encoding="utf-8")
    # g3-b512-r0: nothing at all, but submitted -> pending
    m = load_matrix(exp)
    assert len(m) == 12
    st = dict(zip(m["cell_id"], zip(m["state"], m["reason"], strict=True), strict=True))
    assert st["g2-b128-r0"] == ("FAILED", "CUDA out of memory; lower --batch-size")
    assert st["g3-b128-r0"][0] == "RUNNING" and "epoch 3/25" in st["g3-b128-r0"][1]
    assert st["g4-b256-r0"][0] == "INCOMPLETE" and "3.0 h ago" in st["g4-b256-r0"][1]
    assert st["g4-b512-r0"][0] == "DAMAGED" and st["g4-b512-r0"][1].startswith("result.json: not valid JSON")
    assert st["g3-b512-r0"][0] == "PENDING" and "job 1010" in st["g3-b512-r0"][1]
    h = holes(m)
    assert set(h["cell_id"]) == {"g2-b128-r0", "g3-b128-r0", "g4-b256-r0", "g4-b512-r0", "g3-b512-r0"}
    # holes keep their identity so tables can place them
    assert m.loc[m["cell_id"] == "g4-b512-r0", ["gpus", "batch_size"]].values.tolist() == [[4, 512]]
    assert (m.loc[m["state"] != "COMPLETED", "pipeline"] == "fast").all()


def test_missing_cell_never_submitted(tmp_path):
    exp = tmp_path / "e"
    write_manifest(exp, "e", [(1, 128, 0, "dp"), (2, 128, 0, "dp")])
    write_cell(exp, result_json("e", 1, 128))
    data = json.loads((exp / "manifest.json").read_text())
    data["cells"]["g2-b128-r0"]["attempts"] = []
    write_json(exp / "manifest.json", data)
    m = load_matrix(exp)
    assert m.set_index("cell_id").loc["g2-b128-r0", "state"] == "NOT_SUBMITTED"


def test_states_from_status_are_taken_as_given_but_result_json_wins(tmp_path):
    exp = paper_experiment(tmp_path, skip=((128, 2), (128, 3), (128, 4)))
    write_json(exp / "cells" / "g2-b128-r0" / "error.json", {"error": "boom", "traceback": "", "time": ""})
    states = {
        # status already weighed the files: its TIMEOUT means this error.json is not the live attempt's
        "g2-b128-r0": ("TIMEOUT", "slurm says timeout"),
        "g3-b128-r0": ("TIMEOUT", "job 1002 hit its time limit"),
        "g4-b128-r0": ("NOT_SUBMITTED", ""),
        "g1-b128-r0": ("RUNNING", "ignored: result.json exists"),
        "g1-b256-r0": ("COMPLETED", "sacct"),  # has result.json anyway
    }
    m = load_matrix(exp, states).set_index("cell_id")
    assert tuple(m.loc["g2-b128-r0", ["state", "reason"]]) == ("TIMEOUT", "slurm says timeout")
    assert tuple(m.loc["g3-b128-r0", ["state", "reason"]]) == ("TIMEOUT", "job 1002 hit its time limit")
    assert m.loc["g4-b128-r0", "state"] == "NOT_SUBMITTED"
    assert m.loc["g1-b128-r0", "state"] == "COMPLETED"
    # a cell status could not tell about (UNKNOWN: left out of states) is judged by its files
    m = load_matrix(exp, {"g3-b128-r0": ("RUNNING", "")}).set_index("cell_id")
    assert tuple(m.loc["g2-b128-r0", ["state", "reason"]]) == ("FAILED", "boom")
    # SLURM's COMPLETED without a result.json is not a completed cell
    exp2 = paper_experiment(tmp_path / "two", skip=((128, 1),))
    m2 = load_matrix(exp2, {"g1-b128-r0": ("COMPLETED", "sacct")}).set_index("cell_id")
    assert (
        m2.loc["g1-b128-r0", "state"] == "INCOMPLETE"
        and "no usable result.json" in m2.loc["g1-b128-r0", "reason"]
    )


def _retry(exp, cid: str, job_id: str, submitted_at: str) -> None:
    """Record a second attempt of ``cid`` in the manifest, as ``submit --retry-failed`` does."""
    data = json.loads((exp / "manifest.json").read_text())
    data["cells"][cid]["attempts"].append(
        {"job_id": job_id, "cluster": "slurm", "submitted_at": submitted_at, "folder": f"jobs/{cid}/{job_id}"}
    )
    write_json(exp / "manifest.json", data)


def test_a_retried_cell_is_not_failed_by_the_previous_attempts_error(tmp_path):
    exp = paper_experiment(tmp_path, skip=((128, 2), (128, 3)))
    err = {"error": "CUDA out of memory", "traceback": "", "time": "2026-04-11T19:30:00+00:00"}
    for cid in ("g2-b128-r0", "g3-b128-r0"):
        write_json(exp / "cells" / cid / "error.json", err)
    _retry(exp, "g2-b128-r0", "2000", "2026-04-11T20:00:00+00:00")  # resubmitted after the error
    # no SLURM answer (states None): the files alone decide, and the old error is not the new job's
    m = load_matrix(exp).set_index("cell_id")
    assert tuple(m.loc["g2-b128-r0", ["state", "reason"]]) == (
        "PENDING",
        "submitted as job 2000, no output yet",
    )
    assert tuple(m.loc["g3-b128-r0", ["state", "reason"]]) == ("FAILED", "CUDA out of memory")  # not retried
    # an error.json written by the new attempt (a few seconds of clock skew allowed) counts again
    write_json(exp / "cells" / "g2-b128-r0" / "error.json", {**err, "time": "2026-04-11T19:59:57+00:00"})
    assert load_matrix(exp).set_index("cell_id").loc["g2-b128-r0", "state"] == "FAILED"
    # with states from status, the live job's state is shown, not the stale file's
    write_json(exp / "cells" / "g2-b128-r0" / "error.json", err)
    m = load_matrix(exp, {"g2-b128-r0": ("PENDING", "slurm job 2000")}).set_index("cell_id")
    assert tuple(m.loc["g2-b128-r0", ["state", "reason"]]) == ("PENDING", "slurm job 2000")


def test_without_manifest_cells_are_scanned(tmp_path):
    """Cells trained outside submit are placed by their result.json; a directory nothing describes
    (no manifest entry, no readable result or config) cannot be placed and is listed as ignored."""
    exp = tmp_path / "e"
    write_cell(exp, result_json("e", 1, 128))
    write_cell(exp, result_json("e", 2, 128))
    (exp / "cells" / "g4-b128-r0").mkdir()
    m = load_matrix(exp)
    assert sorted(m["cell_id"]) == ["g1-b128-r0", "g2-b128-r0"]
    assert m.attrs["ignored"] == [
        "g4-b128-r0 (PENDING: cell directory exists but holds no result, error or progress)"
    ]
    assert not m["in_manifest"].any()


def test_mixed_split_hashes_are_refused_with_the_fix(tmp_path):
    exp = tmp_path / "e"
    write_cell(exp, result_json("e", 1, 128))
    write_cell(exp, result_json("e", 2, 128, split_hash="deadbeef0000"))
    with pytest.raises(AslhpcError) as info:
        load_matrix(exp)
    msg = str(info.value)
    assert "\n" not in msg
    assert "g1-b128-r0" in msg and "g2-b128-r0" in msg and "deadbeef0000" in msg
    assert "--split/--seed" in msg and "--allow-mixed-splits" in msg
    assert len(load_matrix(exp, allow_mixed_splits=True)) == 2


def test_blocked_and_random_splits_are_not_mixed_splits(tmp_path):
    exp = tmp_path / "e"
    write_cell(exp, result_json("e", 1, 128))
    blocked = result_json("e", 1, 128, repeat=1, split_kind="blocked")
    write_cell(exp, blocked)
    m = load_matrix(exp)
    assert sorted(m["split_kind"]) == ["blocked", "random"]


def test_user_errors_are_one_line(tmp_path):
    with pytest.raises(AslhpcError, match="does not exist"):
        load_matrix(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AslhpcError, match="no cells"):
        load_matrix(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(AslhpcError, match="manifest.json is not a valid aslhpc manifest"):
        load_matrix(bad)


def test_find_experiments_lists_dirs_with_manifest(tmp_path):
    paper_experiment(tmp_path, "a")
    paper_experiment(tmp_path, "b")
    (tmp_path / "reference").mkdir()
    assert find_experiments(tmp_path) == ["a", "b"]


def test_ddp_cell_whose_ranks_diverged_is_a_failed_hole(tmp_path):
    exp = tmp_path / "e"
    write_manifest(exp, "e", [(2, 128, 0, "ddp"), (4, 128, 0, "ddp"), (1, 128, 0, "dp")])
    write_cell(exp, result_json("e", 2, 128, strategy="ddp", ranks_in_sync=False))
    write_cell(exp, result_json("e", 4, 128, strategy="ddp", ranks_in_sync=True))
    write_cell(exp, result_json("e", 1, 128))  # no "ranks" key (older results, dp): fine
    m = load_matrix(exp).set_index("cell_id")
    assert tuple(m.loc["g2-b128-ddp-r0", ["state", "reason"]]) == (
        "FAILED",
        "DDP ranks ended with different weights (ranks.in_sync false)",
    )
    assert m.loc["g2-b128-ddp-r0", "exec_time_s"] == 2306.56  # what it measured stays in cells.csv
    assert m.loc["g4-b128-ddp-r0", "state"] == "COMPLETED" and m.loc["g1-b128-r0", "state"] == "COMPLETED"
    assert list(holes(m.reset_index())["cell_id"]) == ["g2-b128-ddp-r0"]


def test_process_memory_and_data_on_gpu_columns(tmp_path):
    exp = tmp_path / "e"
    write_cell(exp, result_json("e", 2, 128, data_device_gb=0.262))
    write_cell(exp, result_json("e", 1, 128))  # an older result without data_device_gb
    m = load_matrix(exp).set_index("cell_id")
    two = m.loc["g2-b128-r0"]
    # device-wide NVML peak per GPU, and beside it the process's own (what nvidia-smi's process list shows)
    assert (two["gpu0_gb"], two["gpu1_gb"]) == (1.569, 1.531)
    assert (round(two["gpu0_proc_gb"], 3), round(two["gpu1_proc_gb"], 3)) == (1.558, 1.52)
    assert two["data_device_gb"] == 0.262
    assert math.isnan(m.loc["g1-b128-r0", "data_device_gb"]) and math.isnan(
        m.loc["g1-b128-r0", "gpu1_proc_gb"]
    )
    assert list(m.columns[-4:]) == ["gpu0_gb", "gpu1_gb", "gpu0_proc_gb", "gpu1_proc_gb"]
