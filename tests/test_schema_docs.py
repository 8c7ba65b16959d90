"""docs/experiment-file.md and docs/result-files.md are generated from the schemas and kept in step."""

from __future__ import annotations

from dataclasses import fields

from aslhpc.orchestration.experiment import TOP_KEYS, ClusterRequest, TrainSettings
from aslhpc.orchestration.manifest import Attempt
from aslhpc.schema.docs import main, pages
from aslhpc.schema.results import ResultFile


def test_the_committed_pages_are_what_the_schemas_generate() -> None:
    for path, text in pages().items():
        assert path.is_file(), f"{path} is missing; run python -m aslhpc.schema.docs"
        assert path.read_text(encoding="utf-8") == text, (
            f"{path.name} is out of step with the schemas; run python -m aslhpc.schema.docs and commit it")
    assert main(["--check"]) == 0


def test_every_key_and_field_has_its_row() -> None:
    experiment, results = (text for _, text in sorted(pages().items()))
    keys = [k[0] for rows in TOP_KEYS.values() for k in rows]
    keys += [f.name for f in fields(TrainSettings)] + [f.name for f in fields(ClusterRequest)]
    for key in keys:
        assert f"\n| {key} |" in experiment, key
    assert "| seed | int | 0 | 0 .. 4294967295 |" in experiment  # type, default and bounds from the field
    for name, info in ResultFile.model_fields.items():
        assert f"\n| {info.alias or name} |" in results, name
    assert "| test_acc | number | >= 0, <= 100, finite |" in results
    for f in fields(Attempt):
        assert f"\n| {f.name} |" in results, f.name
