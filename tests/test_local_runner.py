"""Cells on this machine (no SLURM): which GPUs each cell gets, and that concurrent cells never share one."""

from __future__ import annotations

from pathlib import Path

import pytest

from aslhpc.orchestration.experiment import REPO_JOBS, load_spec
from aslhpc.slurm.request import JobRequest


def test_visible_gpus_follow_the_users_cuda_visible_devices() -> None:
    from aslhpc.slurm.local import visible_gpus

    assert visible_gpus({}, lambda: 4) == ["0", "1", "2", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}, lambda: 2) == ["2", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "GPU-aa, GPU-bb"}, lambda: 2) == ["GPU-aa", "GPU-bb"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "1,7"}, lambda: 1) == ["1"]  # CUDA stops at the bad index 7
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "0,1"}, lambda: 0) == []  # no driver / no GPU: CPU cells
    assert visible_gpus({}, lambda: 0) == []


def test_next_start_gives_each_cell_its_own_gpus() -> None:
    from aslhpc.slurm.local import next_start

    four = ["0", "1", "2", "3"]
    assert next_start([1, 1, 1], four, four, 0, 2) == (0, ("0",))
    assert next_start([1, 1], ["1", "2", "3"], four, 1, 2) == (0, ("1",))
    assert next_start([1], ["2", "3"], four, 2, 2) is None  # --max-parallel still bounds
    assert next_start([3, 1], ["2", "3"], four, 1, 4) == (1, ("2",))  # the 3-GPU cell waits, a 1-GPU one fits
    assert next_start([3], ["2", "3"], four, 1, 4) is None
    # more GPUs than exist: alone, with all of them (the trainer errors or falls back per allow_cpu)
    assert next_start([8, 1], four, four, 0, 2) == (0, tuple(four))
    assert next_start([8], ["1", "2", "3"], four, 1, 2) is None
    # no GPU here: CPU cells, max_parallel at a time, devices left alone
    assert next_start([1, 4], [], [], 1, 2) == (0, None)
    assert next_start([1], [], [], 2, 2) is None
    assert next_start([], four, four, 0, 2) is None


def test_lad2020_on_a_four_gpu_workstation_never_shares_a_gpu() -> None:
    """Replay the scheduler over the 12 cells (1-4 GPUs x 3 batch sizes), --max-parallel 2, cells ending
    oldest first: no two concurrent cells hold the same GPU and every cell gets what it asked for."""
    from aslhpc.slurm.local import next_start

    spec = load_spec(REPO_JOBS / "lad2020.toml")
    gpus = ["0", "1", "2", "3"]
    queue = [c.gpus for c in spec.cells()]
    running: list[tuple[int, tuple[str, ...]]] = []
    started = []
    while queue or running:
        while (pick := next_start(queue, [g for g in gpus if all(g not in s for _, s in running)], gpus,
                                  len(running), 2)) is not None:
            i, share = pick
            need = queue.pop(i)
            assert share is not None and len(share) == need
            held = [g for _, s in running for g in s]
            assert not set(share) & set(held), (share, held)
            running.append((need, share))
            started.append(need)
        running.pop(0)
    assert sorted(started) == sorted(c.gpus for c in spec.cells())


def test_local_cells_run_on_disjoint_gpus_from_the_users_set(tmp_path: Path) -> None:
    """Two 1-GPU cells at once get GPU 2 and GPU 3 of CUDA_VISIBLE_DEVICES=2,3 (not both GPU 0, which
    submitit's LocalExecutor would give them); the 2-GPU cell waits until both are free."""
    from aslhpc.slurm.local import LocalTask, run_local

    def task(cid: str, gpus: int) -> LocalTask:
        def fn() -> tuple[str, float, float]:
            import os
            import time

            t0 = time.time()
            time.sleep(1.0)
            return os.environ.get("CUDA_VISIBLE_DEVICES", ""), t0, time.time()

        req = JobRequest(cid, "p", "", f"gpu:x:{gpus}", gpus, 1, 1, 1, "1G", 5, (), 0)
        return LocalTask(cid, fn, req, tmp_path / cid / "%j")

    tasks = [task("a", 1), task("b", 1), task("c", 2)]
    jobs = {}
    run_local(tasks, 2, lambda t, job_id, folder: jobs.setdefault(t.cell_id, (job_id, folder)), poll_s=0.1,
              gpus=["2", "3"])
    import cloudpickle

    out = {}
    for cid, (job_id, folder) in jobs.items():
        status, value = cloudpickle.loads((Path(folder) / f"{job_id}_0_result.pkl").read_bytes())
        assert status == "success", value
        out[cid] = value
    assert {out["a"][0], out["b"][0]} == {"2", "3"} and out["c"][0] == "2,3"
    assert out["a"][1] < out["b"][2] and out["b"][1] < out["a"][2]  # a and b ran at the same time
    assert out["c"][1] >= max(out["a"][2], out["b"][2]) - 0.2  # c waited for both GPUs


def test_a_gpu_count_beyond_any_machine_is_one_line_before_anything_runs(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``--gpus 100000 --cluster local`` died with E2BIG building CUDA_VISIBLE_DEVICES (issue 16)."""
    from aslhpc import submit

    rc = submit.main([str(REPO_JOBS / "smoke.toml"), "--data", str(tmp_path / "none"), "--results",
                      str(tmp_path / "r"), "--cluster", "local", "--gpus", "100000", "--allow-cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "error: matrix.gpus has [100000]; at most 1024 GPUs per cell" in err
    assert not (tmp_path / "r").exists()


def test_a_local_cell_never_exports_more_gpus_than_the_machine_has(tmp_path: Path) -> None:
    from aslhpc.slurm.executor import local_executor

    req = JobRequest("big", "p", "", "gpu:x:1000", 1000, 1, 1, 1, "1G", 5, (), 0)
    assert local_executor(tmp_path / "%j", req).parameters["gpus_per_node"] == 0  # no GPU here: ""


def test_local_problems_refuses_more_processes_than_the_machine_can_start(tmp_path: Path) -> None:
    from aslhpc.errors import ConfigError
    from aslhpc.slurm.local import LocalTask, local_problems, run_local

    ddp = JobRequest("wide", "p", "", "gpu:x:1000", 1000, 1, 1000, 1, "1G", 5, (), 0)  # one task per GPU
    ok = JobRequest("ok", "p", "", "gpu:x:2", 2, 1, 2, 1, "1G", 5, (), 0)
    assert local_problems([("g2", ok)], [], cpus=2) == []
    [p] = local_problems([("g2", ok), ("g1000-ddp", ddp)], [], cpus=2)
    assert p.startswith("cell g1000-ddp: a local run starts one process per GPU of a ddp cell (1000)")
    assert "2 CPU cores and 0 GPUs" in p and "--cluster slurm" in p
    started = []
    with pytest.raises(ConfigError, match="g1000-ddp"):
        run_local([LocalTask("g1000-ddp", lambda: None, ddp, tmp_path / "%j")], 1,
                  lambda *a: started.append(a), gpus=[])
    assert started == [] and not any(tmp_path.iterdir())
