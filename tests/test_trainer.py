"""One cell, end to end on CPU: learning, the result contract, resume equality, device requests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aslhpc.atomic import read_jsonl
from aslhpc.errors import AslhpcError
from aslhpc.training.config import TrainConfig
from aslhpc.training.trainer import run_cell

METRICS = ("train_acc", "val_acc", "test_acc", "train_loss", "val_loss", "test_loss", "best_epoch")


def cfg(root: Path, out: Path, cache: Path, **kw) -> TrainConfig:
    base = dict(data=str(root), out=str(out), gpus=0, batch_size=32, epochs=4, lr=0.01, momentum=0.9,
                cache_dir=str(cache), log_every=0, workers=0, sample_interval_s=0.2)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def trained(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainConfig, dict]:
    d = tmp_path_factory.mktemp("cell")
    c = cfg(synth_root, d / "cell", d / "cache")
    return c, run_cell(c, experiment="t", cell_id="g0-b32-r0", log=lambda m: None)


@pytest.fixture(scope="module")
def paper_trained(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    d = tmp_path_factory.mktemp("paper")
    return run_cell(cfg(synth_root, d / "cell", d / "cache", pipeline="paper"), log=lambda m: None)


def test_paper_and_fast_pipelines_reach_comparable_accuracy(trained, paper_trained):
    fast = trained[1]
    assert fast["pipeline"] == "fast" and paper_trained["pipeline"] == "paper"
    assert paper_trained["amp"] == "fp32" and paper_trained["channels_last"] is False
    # The 2020 pipeline keeps the default allocator; the fast one keeps freed memory (glibc hosts).
    assert paper_trained["host_memory"] == "off"
    assert fast["host_memory"].startswith("glibc mallopt") or fast["host_memory"].startswith("not available")
    assert fast["split"]["hash"] == paper_trained["split"]["hash"]  # same data, same split
    # Same model, optimiser and split; only the shuffling order and memory layout differ.
    assert paper_trained["val_acc"] > 80 and fast["val_acc"] > 80
    assert abs(paper_trained["val_acc"] - fast["val_acc"]) < 15


def test_short_cpu_training_learns_far_above_chance(trained):
    _, result = trained
    # 29 classes: chance is 3.4 %.
    assert result["val_acc"] > 80
    assert result["test_acc"] > 60  # 7 test images: coarse


def test_result_json_holds_the_fields_other_tools_read(trained):
    c, result = trained
    out = Path(c.out)
    on_disk = json.loads((out / "result.json").read_text())
    assert on_disk["test_acc"] == result["test_acc"]
    for key in ("train_acc", "val_acc", "test_acc", "exec_time_s", "data_prep_s", "images_per_s", "split",
                "versions", "telemetry", "provenance", "device_names", "gpus_used", "batches"):
        assert key in on_disk, key
    assert on_disk["split"]["train"] + on_disk["split"]["val"] + on_disk["split"]["test"] == 29 * 12
    assert len(on_disk["split"]["hash"]) == 64
    assert on_disk["exec_time_s"] > 0 and on_disk["images_per_s"] > 0
    assert [r["epoch"] for r in read_jsonl(out / "epochs.jsonl")] == [1, 2, 3, 4]
    assert (out / "best_model.pt").exists() and (out / "checkpoint.pt").exists()
    assert on_disk["extra_test"]["n"] == 28
    assert on_disk["gpus_used"] == 0 and on_disk["device"] == "cpu"


def test_rerunning_a_finished_cell_returns_it_without_training(trained):
    c, result = trained
    before = Path(c.out, "result.json").stat().st_mtime_ns
    again = run_cell(c, log=lambda m: None)
    assert again["finished_at"] == result["finished_at"]
    assert Path(c.out, "result.json").stat().st_mtime_ns == before


class Killed(Exception):
    pass


@pytest.mark.parametrize("pipeline", ["fast", "paper"])
def test_killed_after_an_epoch_and_resumed_ends_with_identical_metrics(synth_root, tmp_path, pipeline,
                                                                      trained,
                                                                      paper_trained):
    straight = trained[1] if pipeline == "fast" else paper_trained

    def die_in_epoch_2(msg: str) -> None:
        if msg.startswith("Epoch: 2/"):
            raise Killed

    c = cfg(synth_root, tmp_path / "resumed", tmp_path / "cache", pipeline=pipeline)
    with pytest.raises(Killed):
        run_cell(c, log=die_in_epoch_2)
    assert not (tmp_path / "resumed" / "result.json").exists()
    assert json.loads((tmp_path / "resumed" / "error.json").read_text())["error"].startswith("Killed")
    logs: list[str] = []
    resumed = run_cell(c, log=logs.append)
    assert any("resuming" in m and "after epoch 1/4" in m for m in logs)
    assert {k: resumed[k] for k in METRICS} == {k: straight[k] for k in METRICS}
    assert [r["epoch"] for r in read_jsonl(tmp_path / "resumed" / "epochs.jsonl")] == [1, 2, 3, 4]
    assert not (tmp_path / "resumed" / "error.json").exists()
    # telemetry describes the whole cell, both attempts (issue 16), not only the process that finished it
    tel = resumed["telemetry"]
    cpu_rows = [ln for ln in (tmp_path / "resumed" / "samples.csv").read_text().splitlines() if ",cpu," in ln]
    assert len(tel["attempts"]) == 2 and tel["n_samples"] == len(cpu_rows)
    assert tel["n_samples"] == sum(a["n_samples"] for a in tel["attempts"]) > tel["attempts"][-1]["n_samples"]


def test_more_gpus_than_visible_is_an_error_naming_the_fix(synth_root, tmp_path):
    with pytest.raises(AslhpcError, match="--allow-cpu"):
        run_cell(cfg(synth_root, tmp_path / "c", tmp_path / "cache", gpus=2, epochs=1), log=lambda m: None)


def test_allow_cpu_records_what_really_ran(synth_root, tmp_path):
    r = run_cell(cfg(synth_root, tmp_path / "c", tmp_path / "cache", gpus=2, epochs=1, allow_cpu=True,
                     max_steps=2),
                 log=lambda m: None)
    assert r["gpus_requested"] == 2 and r["gpus_used"] == 0
    assert r["data_parallel"] is False
    assert "CPU fallback" in r["fallback"]


def test_a_different_config_refuses_to_resume_someone_elses_checkpoint(synth_root, tmp_path):
    c = cfg(synth_root, tmp_path / "c", tmp_path / "cache", epochs=2)

    def die(msg: str) -> None:
        if msg.startswith("Epoch: 2/"):
            raise Killed

    with pytest.raises(Killed):
        run_cell(c, log=die)
    with pytest.raises(AslhpcError, match="different configuration"):
        run_cell(cfg(synth_root, tmp_path / "c", tmp_path / "cache", epochs=2, lr=0.02), log=lambda m: None)


def test_a_diverging_run_stops_with_a_one_line_error(synth_root, tmp_path):
    with pytest.raises(AslhpcError, match="diverged at epoch 1.*lower --lr"):
        run_cell(cfg(synth_root, tmp_path / "c", tmp_path / "cache", epochs=2, lr=1e12, max_steps=3),
                 log=lambda m: None)
    assert "diverged" in json.loads((tmp_path / "c" / "error.json").read_text())["error"]


def test_ddp_over_several_gpus_without_a_launcher_is_refused(synth_root, tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(AslhpcError, match="torchrun --nproc-per-node 2"):
        run_cell(cfg(synth_root, tmp_path / "c", tmp_path / "cache", gpus=2, strategy="ddp", allow_cpu=True),
                 log=lambda m: None)


@pytest.mark.parametrize("pipeline", ["fast", "paper"])
def test_a_dataset_with_no_readable_image_fails_instead_of_completing(synth_root, tmp_path, pipeline):
    import shutil

    from aslhpc.errors import DataError

    root = tmp_path / "junk"
    shutil.copytree(synth_root, root)
    for jpg in root.rglob("*.jpg"):
        jpg.write_bytes(b"not a jpeg")
    c = cfg(root, tmp_path / "c", tmp_path / "cache", epochs=1, pipeline=pipeline)
    with pytest.raises(DataError, match="no readable training images"):
        run_cell(c, log=lambda m: None)
    assert not (tmp_path / "c" / "result.json").exists()
    assert "no readable training images" in json.loads((tmp_path / "c" / "error.json").read_text())["error"]


def test_both_pipelines_name_the_same_unreadable_images(synth_root, tmp_path):
    import shutil

    root = tmp_path / "some-bad"
    shutil.copytree(synth_root, root)
    classes = root / "asl_alphabet_train" / "asl_alphabet_train"  # names are relative to the class folders
    bad = sorted(str(p.relative_to(classes)) for p in (classes / "A").glob("*.jpg"))[:4]
    for name in bad:
        (classes / name).write_bytes(b"truncated")
    named = {}
    for pipeline in ("fast", "paper"):
        r = run_cell(cfg(root, tmp_path / pipeline, tmp_path / "cache", epochs=1, pipeline=pipeline),
                     log=lambda m: None)
        assert r["skipped_count"] == 4
        named[pipeline] = sorted(r["skipped_images"])
    assert named["fast"] == named["paper"] == bad
