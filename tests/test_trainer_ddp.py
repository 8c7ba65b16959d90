"""DDP on CPU (gloo): two real processes, as SLURM would start them, end with identical weights."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_ranks(args: list[str], timeout_s: float = 240.0) -> tuple[list[subprocess.Popen], list[str]]:
    """Both ranks of one cell, as SLURM starts them; when one fails the other is stopped (it would wait for
    its peer until gloo's 30-minute timeout), and a rank still running at ``timeout_s`` fails the test with
    both logs."""
    port = str(free_port())
    procs = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=port, OMP_NUM_THREADS="1")
        procs.append(subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    deadline = time.monotonic() + timeout_s
    while any(p.poll() is None for p in procs):
        failed = any(p.returncode not in (None, 0) for p in procs)
        if failed or time.monotonic() > deadline:
            for p in procs:
                if p.poll() is None:
                    p.kill()
            logs = [p.communicate()[0] for p in procs]
            assert failed, f"the two ranks did not end within {timeout_s:.0f} s: {logs}"
            return procs, logs
        time.sleep(0.2)
    return procs, [p.communicate()[0] for p in procs]


def test_two_ranks_train_in_lockstep_and_rank0_writes_the_result(synth_root: Path, tmp_path: Path):
    out = tmp_path / "g2-b32-ddp-r0"
    args = [sys.executable, "-m", "aslhpc.train", "--data", str(synth_root), "--out", str(out), "--gpus", "2",
            "--allow-cpu", "--strategy", "ddp", "--batch-size", "32", "--epochs", "3", "--lr", "0.05",
            "--momentum", "0.9", "--log-every", "0", "--cache-dir", str(tmp_path / "cache")]
    for _ in range(3):  # a new port when another process took the free one before rank 0 bound it
        procs, logs = _two_ranks(args)
        if not any("address already in use" in log.lower() for log in logs):
            break
    assert [p.returncode for p in procs] == [0, 0], logs
    result = json.loads((out / "result.json").read_text())
    assert result["world_size"] == 2 and result["strategy"] == "ddp" and result["data_parallel"] is True
    assert len(result["ranks"]["weight_digests"]) == 2
    assert result["ranks"]["in_sync"] is True
    # Same global batches as one process: it learns like a single-process run (chance is 3.4 %;
    # validation has only 34 images here, so the bar leaves room for BatchNorm's per-rank statistics).
    assert result["train_acc"] > 60 and result["val_acc"] > 40
    assert result["batches"]["train"] == -(-result["split"]["train"] // 32)
    # Only rank 0 writes the cell's files: one line per epoch, no duplicates.
    lines = (out / "epochs.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    # Every rank sampled its own device: rank 1 into its own file, both summaries in the result.
    assert (out / "samples.csv").is_file() and (out / "samples.rank1.csv").is_file()
    assert [r["rank"] for r in result["telemetry"]["ranks"]] == [0, 1]
    assert all(r["cpu"]["rss_peak_gb"] > 0 for r in result["telemetry"]["ranks"])
