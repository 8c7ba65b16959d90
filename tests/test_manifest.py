"""The manifest: every cell and every job submitted for it, written atomically."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from aslhpc.errors import ConfigError
from aslhpc.orchestration.experiment import REPO_JOBS, load_spec
from aslhpc.orchestration.manifest import Attempt, Manifest, find_manifests, load_manifest, manifest_path


def test_round_trip_and_schema(tmp_path: Path) -> None:
    spec = load_spec(REPO_JOBS / "lad2020.toml")
    m = Manifest.new(spec)
    m.ensure_cells(spec.cells())
    m.record("g2-b256-r0", Attempt("41", "slurm", "2026-01-01T00:00:00+00:00", "jobs/g2-b256-r0/41"))
    path = manifest_path(tmp_path, spec.name)
    m.save(path)
    data = json.loads(path.read_text())
    assert data["schema"] == 1 and data["experiment"] == "lad2020" and data["spec"]["gpus"] == [1, 2, 3, 4]
    cell = data["cells"]["g2-b256-r0"]
    assert {k: cell[k] for k in ("cell_id", "gpus", "batch_size", "repeat", "seed", "strategy", "out_dir")} == {
        "cell_id": "g2-b256-r0", "gpus": 2, "batch_size": 256, "repeat": 0, "seed": 0, "strategy": "dp",
        "out_dir": "cells/g2-b256-r0"}
    assert cell["attempts"] == [{"job_id": "41", "cluster": "slurm", "submitted_at": "2026-01-01T00:00:00+00:00",
                                 "folder": "jobs/g2-b256-r0/41"}]
    back = load_manifest(path)
    assert back is not None and back.to_dict() == json.loads(json.dumps(m.to_dict()))
    assert back.cells["g2-b256-r0"].last.job_id == "41" and back.cells["g1-b128-r0"].last is None
    assert [p.name for p in path.parent.iterdir()] == ["manifest.json"]  # no temp files left behind


def test_ensure_cells_keeps_history_and_adds_new_cells(tmp_path: Path) -> None:
    spec = load_spec(REPO_JOBS / "smoke.toml")
    m = Manifest.new(spec)
    m.ensure_cells(spec.cells())
    m.record("g1-b32-r0", Attempt("1", "slurm", "t", "jobs/g1-b32-r0/1"))
    from dataclasses import replace

    bigger = replace(spec, repeats=2)
    m.ensure_cells(bigger.cells())
    assert len(m.cells) == 8 and m.cells["g1-b32-r0"].attempts[0].job_id == "1"
    assert m.cells["g1-b32-r1"].seed == spec.train.seed + 1


def test_missing_broken_and_foreign_manifests(tmp_path: Path) -> None:
    assert load_manifest(tmp_path / "none.json") is None
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not a valid aslhpc manifest"):
        load_manifest(bad)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"schema": 99}))
    with pytest.raises(ConfigError, match="schema 99"):
        load_manifest(other)


def test_find_manifests_newest_first(tmp_path: Path) -> None:
    for i, name in enumerate(["a", "b"]):
        p = manifest_path(tmp_path, name)
        p.parent.mkdir(parents=True)
        p.write_text("{}")
        os.utime(p, (time.time() + i, time.time() + i))
    assert [p.parent.name for p in find_manifests(tmp_path)] == ["b", "a"]
    assert find_manifests(tmp_path / "none") == []
