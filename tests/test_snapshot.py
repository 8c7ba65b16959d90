"""aslhpc.snapshot: an experiment read once — the matrix, the results, the predictions, one sacct call."""

from __future__ import annotations

import subprocess
from pathlib import Path

from test_analysis_helpers import paper_experiment

from aslhpc.orchestration.manifest import load_manifest
from aslhpc.snapshot import load_snapshot


def _slurm_manifest(exp: Path) -> None:
    """A spec the job requests can be rebuilt from (the matrix's axes), every cell's last attempt a SLURM
    job 100, 101, ..."""
    import json

    data = json.loads((exp / "manifest.json").read_text())
    data["spec"].update(gpus=[1, 2, 3, 4], batch_sizes=[128, 256, 512])
    for i, entry in enumerate(data["cells"].values()):
        for att in entry.get("attempts") or []:
            att["cluster"], att["job_id"] = "slurm", f"{100 + i}"
    (exp / "manifest.json").write_text(json.dumps(data))


def test_one_read_gives_matrix_results_and_one_sacct_call(tmp_path: Path) -> None:
    exp = paper_experiment(tmp_path, "paper", skip=((512, 4),))
    _slurm_manifest(exp)
    manifest = load_manifest(exp / "manifest.json")
    assert manifest is not None and all(e.last and e.last.cluster == "slurm" for e in manifest.cells.values())
    calls: list[list[str]] = []

    def sacct(cmd: list[str]) -> subprocess.CompletedProcess:
        calls.append(cmd)
        out = "".join(f"{100 + i}|00:10:00|00:20:00\n{100 + i}.batch|00:10:00|00:20:00\n" for i in range(12))
        return subprocess.CompletedProcess(cmd, 0, out, "")

    snap = load_snapshot(exp, run=sacct)
    assert len(calls) == 1 and calls[0][0] == "sacct"  # one query for the whole matrix
    assert len(snap.cells) == 12 and (snap.cells["state"] == "COMPLETED").sum() == 11
    assert set(snap.results) == set(snap.cells.loc[snap.cells["state"] == "COMPLETED", "cell_id"])
    assert len(snap.usage) == 11 and (snap.usage["cpu_from"] == "sacct").all()
    assert "gpu_util_pct" in snap.cells  # the extras come from the same read
    none = load_snapshot(exp, accounting=False, run=sacct)
    assert len(calls) == 1 and (none.usage["cpu_from"] != "sacct").all()


def test_a_damaged_result_is_one_damaged_row_not_a_result(tmp_path: Path) -> None:
    exp = paper_experiment(tmp_path, "paper")
    (exp / "cells" / "g2-b256-r0" / "result.json").write_text("{not json")
    snap = load_snapshot(exp, accounting=False)
    row = snap.cells.set_index("cell_id").loc["g2-b256-r0"]
    assert row["state"] == "DAMAGED" and "result.json" in row["reason"]
    assert "g2-b256-r0" not in snap.results and len(snap.results) == 11
