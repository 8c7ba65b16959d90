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
    keys = ("cell_id", "gpus", "batch_size", "repeat", "seed", "strategy", "out_dir")
    assert {k: cell[k] for k in keys} == {
        "cell_id": "g2-b256-r0", "gpus": 2, "batch_size": 256, "repeat": 0, "seed": 0, "strategy": "dp",
        "out_dir": "cells/g2-b256-r0"}
    assert cell["attempts"] == [{"job_id": "41", "cluster": "slurm",
                                 "submitted_at": "2026-01-01T00:00:00+00:00", "folder": "jobs/g2-b256-r0/41"}]
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


def _valid(tmp_path: Path) -> dict:
    spec = load_spec(REPO_JOBS / "smoke.toml")
    m = Manifest.new(spec)
    m.ensure_cells(spec.cells())
    m.record("g1-b32-r0", Attempt("41", "slurm", "2026-01-01T00:00:00+00:00", "jobs/g1-b32-r0/41"))
    return json.loads(json.dumps(m.to_dict()))


@pytest.mark.parametrize("damage, says", [
    (lambda d: [d], "holds a JSON list, not an object"),
    (lambda d: d["cells"]["g1-b32-r0"]["attempts"][0].update(job_id=41) or d,
     "cells.g1-b32-r0.attempts[0].job_id is int 41, expected str"),
    (lambda d: d["cells"]["g1-b32-r0"].pop("out_dir") and d, "cells.g1-b32-r0.out_dir is missing"),
    (lambda d: d.pop("experiment") and d, "experiment is missing"),
    (lambda d: d.update(cells=[]) or d, "cells is list [], expected dict"),
    (lambda d: d["cells"]["g1-b32-r0"].update(attempts="41") or d, "attempts is str '41', expected list"),
    (lambda d: d["cells"]["g1-b32-r0"]["attempts"][0].update(cluster="cloud") or d, "cluster is 'cloud'"),
    # a path leaving the experiment damages that cell only (tests/test_damaged_cells.py), not the file
    (lambda d: d["cells"]["g1-b32-r0"].update(gpus=True) or d, "gpus is bool True, expected int"),
    (lambda d: d["cells"]["g1-b32-r0"].update(cell_id="other") or d, "not its key 'g1-b32-r0'"),
])
def test_a_damaged_manifest_is_one_error_naming_file_and_field(tmp_path: Path, damage, says: str) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(damage(_valid(tmp_path))))
    with pytest.raises(ConfigError) as info:
        load_manifest(path)
    msg = str(info.value)
    assert str(path) in msg and says in msg and "\n" not in msg, msg


def test_todays_schema_1_files_load_and_are_written_back_unchanged(tmp_path: Path) -> None:
    data = _valid(tmp_path)
    cell = data["cells"]["g1-b32-r0"]
    assert "intent" not in cell and "token" not in cell["attempts"][0]
    data["cells"]["g1-b32-r0"]["future_field"] = 1  # unknown keys of a newer writer are ignored
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(data))
    m = load_manifest(path)
    assert m.cells["g1-b32-r0"].last.token == "" and m.cells["g1-b32-r0"].intent is None
    del data["cells"]["g1-b32-r0"]["future_field"]
    assert m.to_dict() == data


def test_intent_is_saved_until_the_attempt_settles_it(tmp_path: Path) -> None:
    from aslhpc.orchestration.manifest import Intent

    spec = load_spec(REPO_JOBS / "smoke.toml")
    m = Manifest.new(spec)
    m.ensure_cells(spec.cells())
    m.cells["g1-b64-r0"].intent = Intent("tok1", "slurm", "2026-01-01T00:00:00+00:00")
    path = manifest_path(tmp_path, spec.name)
    m.save(path)
    back = load_manifest(path)
    assert back.pending() == {"g1-b64-r0": Intent("tok1", "slurm", "2026-01-01T00:00:00+00:00", "submitting")}
    back.record("g1-b64-r0", Attempt("7", "slurm", "t", "jobs/g1-b64-r0/7", token="tok1"))
    back.save(path)
    again = load_manifest(path)
    assert again.pending() == {} and again.cells["g1-b64-r0"].last.token == "tok1"
