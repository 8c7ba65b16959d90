"""A cell's safety nets, on CPU: checkpoints that cannot run code, one trainer per cell, per-rank errors,
the settings that reach the GPU paths (fused SGD, process-group backend, compile), threads and logs."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from aslhpc.errors import AslhpcError, ConfigError
from aslhpc.training.config import TrainConfig
from aslhpc.training.trainer import run_cell


def cfg(root: Path, out: Path, cache: Path, **kw) -> TrainConfig:
    base = dict(data=str(root), out=str(out), gpus=0, batch_size=32, epochs=1, lr=0.01, cache_dir=str(cache),
                log_every=0, workers=0, sample_interval_s=0.2, max_steps=2)
    base.update(kw)
    return TrainConfig(**base)


class Planted:
    """A pickle that runs code when loaded with a full unpickler."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("kind", ["planted", "corrupt", "foreign"])
def test_a_checkpoint_is_never_unpickled_and_a_bad_one_is_one_line_naming_the_fix(synth_root, tmp_path, kind):
    """Issue 16: weights_only=True; a corrupt checkpoint names the file and says to delete it."""
    out = tmp_path / "c"
    out.mkdir()
    ckpt = out / "checkpoint.pt"
    marker = tmp_path / "code-ran"
    if kind == "planted":
        with open(ckpt, "wb") as fh:
            torch.save({"identity": {}, "x": Planted(marker)}, fh)
    elif kind == "corrupt":
        ckpt.write_bytes(os.urandom(4096))
    else:
        torch.save({"weights": torch.zeros(2)}, ckpt)
    with pytest.raises(AslhpcError) as err:
        run_cell(cfg(synth_root, out, tmp_path / "cache"), log=lambda m: None)
    msg = str(err.value)
    assert "\n" not in msg and str(ckpt) in msg and "delete it to restart this cell" in msg
    assert not marker.exists()
    assert json.loads((out / "error.json").read_text())["error"].startswith("AslhpcError")


def test_a_second_trainer_of_the_same_cell_refuses_naming_the_holder(synth_root, tmp_path, monkeypatch):
    """Issue 16: a per-cell lock; the second one says which job/pid holds it."""
    from aslhpc.training.checkpoint import cell_lock

    out = tmp_path / "c"
    out.mkdir()
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    with cell_lock(out):
        with pytest.raises(AslhpcError) as err:
            run_cell(cfg(synth_root, out, tmp_path / "cache"), log=lambda m: None)
    msg = str(err.value)
    assert "\n" not in msg and f"SLURM job 4242 (pid {os.getpid()}" in msg and "cell.lock" in msg
    assert not (out / "result.json").exists() and not (out / "error.json").exists()  # the holder's files
    r = run_cell(cfg(synth_root, out, tmp_path / "cache"), log=lambda m: None)  # released: runs
    assert r["status"] == "completed"


def test_a_failing_ddp_rank_writes_its_own_error_file(synth_root, tmp_path, monkeypatch):
    """Issue 19.7: rank 0 may be stuck in a collective; rank r records why it failed in error.rank<r>.json."""
    for k, v in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(k, v)
    out = tmp_path / "c"
    with pytest.raises(AslhpcError, match="rank 1 needs GPU 1"):
        run_cell(cfg(synth_root, out, tmp_path / "cache", gpus=2, strategy="ddp"), log=lambda m: None)
    err = json.loads((out / "error.rank1.json").read_text())
    assert err["rank"] == 1 and "rank 1 needs GPU 1" in err["error"]
    assert not (out / "error.json").exists()


def test_fused_sgd_on_cuda_only():
    """Issue 19.9: with a GradScaler plain SGD syncs every step; the fused kernel does not."""
    from aslhpc.training.trainer import sgd_options

    assert sgd_options(torch.device("cuda", 0)) == {"fused": True}
    assert sgd_options(torch.device("cpu")) == {}


def test_the_process_group_is_joined_with_the_planned_devices_backend(monkeypatch):
    """Issue 19.8: chosen after device planning (a CPU fallback joins with gloo)."""
    from aslhpc.training import distributed
    from aslhpc.training.devices import DevicePlan

    joined: list[str] = []
    monkeypatch.setattr(distributed.torch_dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.torch_dist, "init_process_group",
                        lambda backend, timeout: joined.append(backend))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cpu_plan = DevicePlan(torch.device("cpu"), (), 2, "CPU fallback: ...")
    gpu_plan = DevicePlan(torch.device("cuda", 1), (1,), 2)
    d = distributed.Dist(1, 2, 1)
    assert [distributed.join_process_group(d, p) for p in (cpu_plan, gpu_plan)] == ["gloo", "nccl"]
    assert joined == ["gloo", "nccl"] and distributed.join_process_group(distributed.Dist(), cpu_plan) is None


def test_compile_with_data_parallel_over_gpus_is_refused_up_front():
    """Issue 19 (low): it used to be ignored silently while result.json said compile: true."""
    from dataclasses import replace

    from aslhpc.orchestration.experiment import REPO_JOBS, load_spec, validate_spec

    with pytest.raises(ConfigError, match="compile=true cannot apply to a 2-GPU DataParallel cell.*ddp"):
        TrainConfig(data="d", out="o", gpus=2, strategy="dp", compile=True)
    assert TrainConfig(data="d", out="o", gpus=2, strategy="ddp", compile=True).compile
    assert TrainConfig(data="d", out="o", gpus=1, compile=True).compile
    spec = load_spec(REPO_JOBS / "lad2020.toml")
    problems = validate_spec(replace(spec, train=replace(spec.train, compile=True)))
    assert any(p.startswith("train.compile=true cannot apply") for p in problems), problems


def test_threads_follow_the_cells_allocation_and_are_recorded(monkeypatch):
    """Issue 16: the same cell on 1 and 2 threads differs; threads are set by one rule and recorded."""
    from aslhpc.training.trainer import set_threads

    before = torch.get_num_threads()
    try:
        got = set_threads(TrainConfig(data="d", out="o", cpu_threads=1), {"OMP_NUM_THREADS": "2"})
        assert (got["intra_op"], got["chosen_by"]) == (1, "cpu_threads") and torch.get_num_threads() == 1
        got = set_threads(TrainConfig(data="d", out="o"), {"OMP_NUM_THREADS": "2"})
        assert (got["intra_op"], got["chosen_by"]) == (2, "OMP_NUM_THREADS")
        got = set_threads(TrainConfig(data="d", out="o"), {})
        assert got["intra_op"] == got["cpus_allowed"] == len(os.sched_getaffinity(0))
        assert got["inter_op"] >= 1
    finally:
        torch.set_num_threads(before)


def test_the_paper_pipeline_logs_each_unreadable_image_by_name(synth_root, tmp_path):
    import shutil

    root = tmp_path / "some-bad"
    shutil.copytree(synth_root, root)
    classes = root / "asl_alphabet_train" / "asl_alphabet_train"
    bad = sorted(str(p.relative_to(classes)) for p in (classes / "B").glob("*.jpg"))[:3]
    for name in bad:
        (classes / name).write_bytes(b"truncated")
    logs: list[str] = []
    run_cell(cfg(root, tmp_path / "c", tmp_path / "cache", pipeline="paper", max_steps=0), log=logs.append)
    for name in bad:
        assert sum(1 for m in logs if m.startswith(f"skipped unreadable image {name} ")) == 1, name


def test_result_records_cache_threads_precision_and_what_was_applied(synth_root, tmp_path, monkeypatch):
    monkeypatch.setenv("ASLHPC_CACHE_DIR", str(tmp_path / "node-cache"))
    r = run_cell(cfg(synth_root, tmp_path / "c", "", epochs=1), log=lambda m: None)
    assert r["cache"] == {"dir": str(tmp_path / "node-cache"), "chosen_by": "ASLHPC_CACHE_DIR"}
    assert r["config"]["cache_dir"] == ""  # decided on the node, recorded beside the config
    assert r["threads"]["intra_op"] == torch.get_num_threads() and r["threads"]["inter_op"] >= 1
    assert r["amp"] == "fp32" and r["amp_observed"] == ["float32"]
    assert r["compile"] is False and r["backend"] is None
    assert r["optimizer"] == {"name": "sgd", "fused": False}
    assert r["versions"]["torch"] == torch.__version__ and r["slurm"] is None
    assert not math.isnan(r["telemetry"]["n_samples"])


def test_time_breakdown_per_epoch_and_for_the_cell(synth_root, tmp_path):
    """Issue 14 (stretch): epochs.jsonl and result.json say where the time went; the parts add up on a CPU."""
    from aslhpc.atomic import read_jsonl

    r = run_cell(cfg(synth_root, tmp_path / "c", tmp_path / "cache", epochs=2, max_steps=3),
                 log=lambda m: None)
    lines = read_jsonl(tmp_path / "c" / "epochs.jsonl")
    for e in lines:
        assert e["data_wait_s"] > 0 and e["compute_s"] > 0 and e["eval_s"] > 0
        assert e["data_wait_s"] + e["compute_s"] <= e["train_s"] + 1e-6
    tb = r["time_breakdown"]
    assert set(tb) == {"data_wait_s", "compute_s", "eval_s", "other_s", "data_wait_share", "clock"}
    assert tb["other_s"] >= 0 and "perf_counter" in tb["clock"]
    assert tb["compute_s"] == pytest.approx(sum(e["compute_s"] for e in lines), abs=1e-3)
    parts = tb["data_wait_s"] + tb["compute_s"] + tb["eval_s"] + tb["other_s"]
    assert parts == pytest.approx(r["exec_time_s"], abs=1e-9)  # issue 25.1: the parts add up, one clock
    assert tb["data_wait_share"] == pytest.approx(tb["data_wait_s"] / r["exec_time_s"])


class FakeClock:
    """A clock that moves only when the fake data source or the fake model says so."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class DelayedBatches:
    """A batch source whose every batch takes ``delay`` seconds on ``clock`` to arrive (decode, copy)."""

    def __init__(self, clock: FakeClock, delay: float, n: int = 4, batch: int = 8) -> None:
        self.clock, self.delay, self.n, self.batch = clock, delay, n, batch
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, batch, 3, 32, 32, generator=g)
        self.y = torch.randint(0, 29, (n, batch), generator=g)

    def __len__(self) -> int:
        return self.n

    def epoch(self, epoch: int):
        for i in range(self.n):
            self.clock.t += self.delay
            yield self.x[i], self.y[i], self.batch


class TimedModel(torch.nn.Module):
    """A small model whose forward + backward + step take ``step_s`` on ``clock``."""

    def __init__(self, clock: FakeClock, step_s: float) -> None:
        super().__init__()
        self.clock, self.step_s = clock, step_s
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 29))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.clock.t += self.step_s
        return self.net(x)


def test_the_paper_pipeline_spends_a_larger_share_of_each_step_waiting_for_data():
    """Issues 14, 26.3, 25.1: the breakdown explains scaling, deterministically. The paper pipeline's batches
    take longer to arrive (every JPEG decoded and resized every epoch) than the fast one's (decoded pixels
    indexed in memory); on one clock the wait is attributed to data_wait_s, the step to compute_s, and the
    parts add up to the wall time. The clock is a fake one: no timing on a loaded machine can flip it."""
    from aslhpc.training.distributed import Dist
    from aslhpc.training.loop import train_one_epoch
    from aslhpc.training.trainer import time_breakdown

    share = {}
    for pipeline, delay in (("paper", 0.030), ("fast", 0.001)):
        clock = FakeClock()
        model = TimedModel(clock, step_s=0.010)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        tr = train_one_epoch(model, DelayedBatches(clock, delay), opt, None, torch.device("cpu"), 1, Dist(),
                             0, lambda m: None, clock=clock)
        assert tr.data_wait_s == pytest.approx(4 * delay) and tr.compute_s == pytest.approx(4 * 0.010)
        assert tr.seconds == pytest.approx(4 * (delay + 0.010))
        eval_s = 0.005
        line = {"data_wait_s": tr.data_wait_s, "compute_s": tr.compute_s, "eval_s": eval_s}
        tb = time_breakdown([line, line], 2 * (tr.seconds + eval_s))
        parts = tb["data_wait_s"] + tb["compute_s"] + tb["eval_s"] + tb["other_s"]
        assert parts == pytest.approx(2 * (tr.seconds + eval_s), abs=1e-12) and tb["other_s"] >= 0
        assert tb["data_wait_share"] == pytest.approx(tb["data_wait_s"] / (2 * (tr.seconds + eval_s)))
        share[pipeline] = tb["data_wait_s"] / (tb["data_wait_s"] + tb["compute_s"])
    assert share["paper"] > share["fast"], share
    assert share["paper"] == pytest.approx(0.75) and share["fast"] == pytest.approx(1 / 11)

KILL_AT_FIRST_CHECKPOINT = """
import os, signal, sys
import aslhpc.training.trainer as trainer

def die(path, state):  # epochs.jsonl holds epoch 1 by now; the checkpoint is never written
    assert (path.parent / "epochs.jsonl").stat().st_size > 0
    os.kill(os.getpid(), signal.SIGKILL)

trainer.save_checkpoint = die
from aslhpc.train import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_death_before_the_first_checkpoint_does_not_record_an_epoch_twice(synth_root, tmp_path):
    """Issue 27.1: killed between the first epoch line and the first checkpoint, the same command again
    records epochs [1, 2], not [1, 1, 2] (restore keeps only the epochs a checkpoint covers: none)."""
    import subprocess
    import sys

    from aslhpc.atomic import read_jsonl

    out = tmp_path / "cell"
    argv = ["--data", str(synth_root), "--out", str(out), "--gpus", "0", "--batch-size", "32",
            "--epochs", "2",
            "--lr", "0.01", "--cache-dir", str(tmp_path / "cache"), "--log-every", "0", "--workers", "0",
            "--max-steps", "2", "--sample-interval", "0.2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = subprocess.run([sys.executable, "-c", KILL_AT_FIRST_CHECKPOINT, *argv], env=env,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert [e["epoch"] for e in read_jsonl(out / "epochs.jsonl")] == [1]
    assert not (out / "checkpoint.pt").exists()
    again = subprocess.run([sys.executable, "-m", "aslhpc.train", *argv], env=env, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert [e["epoch"] for e in read_jsonl(out / "epochs.jsonl")] == [1, 2]
    result = json.loads((out / "result.json").read_text())
    tb = result["time_breakdown"]
    assert tb["compute_s"] <= result["exec_time_s"]


def test_fp32_turns_tf32_off_and_every_result_records_tf32(synth_root, tmp_path):
    """Issue 25.2: an fp32 run is fp32 on Ampere/Hopper (torch allows TF32 in cuDNN by default); result.json
    says whether TF32 was in force."""
    from aslhpc.training.trainer import set_tf32

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
        assert set_tf32("bf16", is_cuda=True) is True  # autocast runs: as torch has it, recorded
        assert set_tf32("fp32", is_cuda=True) is False
        assert torch.backends.cudnn.allow_tf32 is False and torch.backends.cuda.matmul.allow_tf32 is False
        torch.backends.cudnn.allow_tf32 = True
        assert set_tf32("fp16", is_cuda=False) is False  # no TF32 on a CPU
        for pipeline in ("paper", "fast"):
            torch.backends.cudnn.allow_tf32 = True
            r = run_cell(cfg(synth_root, tmp_path / pipeline, tmp_path / "cache", pipeline=pipeline),
                         log=lambda m: None)
            assert r["tf32"] is False and r["amp"] == "fp32" and torch.backends.cudnn.allow_tf32 is False
            assert json.loads((tmp_path / pipeline / "result.json").read_text())["tf32"] is False
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_data_memory_is_in_the_unit_of_every_other_memory_figure_and_per_rank(monkeypatch):
    """Issue 25.3: data_device_gb is MiB/1000 like NVML's and torch's figures (not bytes/1e9), per rank."""
    from aslhpc.training import distributed
    from aslhpc.training.distributed import Dist, merge_rank_telemetry
    from aslhpc.training.trainer import data_device_gb

    assert data_device_gb(5_600 * 2**20) == 5.6  # 5,600 MiB, as NVML would count it
    assert data_device_gb(0) == 0.0

    def gather(out, obj):  # two ranks on two nodes, each with its own copy of the data
        for r in range(len(out)):
            out[r] = {**obj, "rank": r, "node": f"n{r}", "data_device_gb": 5.6}

    monkeypatch.setattr(distributed.torch_dist, "all_gather_object", gather)
    merged = merge_rank_telemetry({"data_device_gb": 5.6, "gpus": [], "torch": []}, Dist(rank=0, world=2))
    assert [r["data_device_gb"] for r in merged["ranks"]] == [5.6, 5.6]
    assert merged["data_device_gb"] == 5.6 and merged["data_device_gb_total"] == 11.2


@pytest.mark.parametrize("pipeline", ["paper", "fast"])
def test_each_cell_writes_its_per_image_test_predictions(synth_root, tmp_path, pipeline):
    """Issue 25.5: test_predictions.csv (image,label,predicted,correct), one row per test image, agreeing
    with test_acc: paired comparisons (McNemar) read it."""
    import csv

    from aslhpc.data import scan_dataset
    from aslhpc.data.split import make_split

    out = tmp_path / "c"
    r = run_cell(cfg(synth_root, out, tmp_path / "cache", pipeline=pipeline), log=lambda m: None)
    with open(out / "test_predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    index = scan_dataset(str(synth_root))
    split = make_split(index, "random", r["config"]["split_seed"])
    assert sorted(row["image"] for row in rows) == sorted(index.files[i] for i in split.test)
    assert list(rows[0]) == ["image", "label", "predicted", "correct"]
    for row in rows:
        assert int(row["label"]) == index.labels[index.files.index(row["image"])]
        assert row["correct"] == str(int(row["label"] == row["predicted"]))
    acc = 100.0 * sum(int(row["correct"]) for row in rows) / len(rows)
    assert acc == pytest.approx(r["test_acc"]) and r["test_predictions"]["file"] == "test_predictions.csv"
    assert not list(out.glob("*.tmp"))


def test_progress_is_written_off_the_training_thread_and_is_current_at_each_epochs_end(synth_root, tmp_path):
    """Issue 25.4: the loop hands progress to a writer thread (no fsync on the training thread); the file
    still holds the latest step when an epoch ends, and the last update is never lost on close."""
    from aslhpc.training.trainer import ProgressWriter

    path = tmp_path / "p" / "progress.json"
    path.parent.mkdir()
    writer = ProgressWriter(path, interval_s=3600)  # the thread would not write for an hour
    for step in range(100):
        writer.update({"batch": step})
    assert not path.exists()  # nothing written on the caller's thread by update()
    writer.close()
    assert json.loads(path.read_text()) == {"batch": 99}

    seen = []
    out = tmp_path / "c"

    def log(msg: str) -> None:
        if msg.startswith("Epoch: 001, Train Loss"):  # logged after the epoch's training pass
            seen.append(json.loads((out / "progress.json").read_text()))

    run_cell(cfg(synth_root, out, tmp_path / "cache", log_every=1, max_steps=3), log=log)
    assert seen and seen[0]["batch"] == 2 and seen[0]["batches"] == 3 and seen[0]["epoch"] == 1
    assert not (out / "progress.json").exists()  # a finished cell has result.json instead
