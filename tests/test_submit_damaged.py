"""Issue 27.5: ``submit --retry-failed`` re-runs a DAMAGED cell after moving its damaged files aside into
``cells/<cell>/damaged-<UTC stamp>/`` (nothing deleted), one line saying so; without the flag the cell is
skipped and the line names the flag. Against the fake SLURM of tests/slurm_fakes.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from slurm_fakes import run_submit, scripts, smoke_args

from aslhpc.orchestration.cellstate import damaged_file
from aslhpc.orchestration.manifest import load_manifest


def test_retry_failed_sets_damaged_files_aside_and_reruns_the_cell(fake_slurm: Path, dataset: Path,
                                                                    tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    results = tmp_path / "results"
    assert run_submit(capsys, *smoke_args(dataset, results))[0] == 0  # jobs 101..104
    (fake_slurm / "sacct.txt").write_text("".join(
        f"{j}|{j}|FAILED|n1|00:00:09|1:0|t|t|2026-01-01T00:00:00|None\n" for j in (101, 102, 103, 104)))
    cells = results / "smoke" / "cells"
    garbled = cells / "g1-b32-r0"
    garbled.mkdir(parents=True)
    (garbled / "progress.json").write_text("{not json")

    rc, out, _ = run_submit(capsys, *smoke_args(dataset, results))
    line = " ".join(next(ln for ln in out.splitlines() if ln.startswith("g1-b32-r0")).split())
    assert "skipped DAMAGED (job 101): progress.json:" in line and "--retry-failed to move it aside" in line
    assert len(scripts(fake_slurm)) == 4 and (garbled / "progress.json").exists()

    rc, out, err = run_submit(capsys, *smoke_args(dataset, results, "--retry-failed"))
    assert rc == 0, err
    flat = " ".join(out.split())
    aside = [p for p in garbled.iterdir() if p.name.startswith("damaged-")]
    assert len(aside) == 1 and aside[0].name.endswith("Z")
    assert (aside[0] / "progress.json").read_text() == "{not json"  # moved, not deleted
    assert not (garbled / "progress.json").exists()
    assert (f"g1-b32-r0: moved its damaged progress.json aside into cells/g1-b32-r0/{aside[0].name}/ "
            "(nothing deleted); re-running the cell") in flat
    assert "g1-b32-r0 resubmitted job 105 (was DAMAGED (job 101): progress.json:" in flat
    m = load_manifest(results / "smoke" / "manifest.json")
    assert [a.job_id for a in m.cells["g1-b32-r0"].attempts] == ["101", "105"]
    assert m.cells["g1-b32-r0"].attempts[1].request["retry_of"] == "DAMAGED"


def test_only_a_cells_own_files_are_set_aside() -> None:
    assert damaged_file("progress.json: not JSON (line 1)") == "progress.json"
    assert damaged_file("error.rank3.json: missing 'error'") == "error.rank3.json"
    assert damaged_file("out_dir: ../../etc leaves the experiment directory") == ""
    assert damaged_file("g1-b32-r0/: unreadable (Permission denied); fix its permissions") == ""
