"""The environment a cell's SLURM task sets up for DDP: rank, world, MASTER_ADDR, GPUs left alone."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(("nodelist", "nodes", "procid", "localid", "gpus"), [
    ("n[1-2]", "2", "1", "0", "0"),  # 1 task on each of two nodes: rank 1 is local rank 0 on n2
    ("n1", "1", "1", "1", "0,1"),  # 2 tasks on one node
])
def test_each_rank_gets_its_place_and_keeps_the_nodes_gpus(monkeypatch: pytest.MonkeyPatch, nodelist: str,
                                                          nodes: str, procid: str, localid: str,
                                                          gpus: str) -> None:
    """What CellJob exports in a SLURM task: MASTER_ADDR = first node; CUDA_VISIBLE_DEVICES untouched, so
    the trainer's cuda:LOCAL_RANK exists on every rank."""
    import os

    from aslhpc.slurm.cell_job import _num_tasks, export_dist_env

    env = {"PATH": os.environ["PATH"], "SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "4242",
           "SLURM_NTASKS": "2", "SLURM_JOB_NUM_NODES": nodes, "SLURM_JOB_NODELIST": nodelist,
           "SLURM_NODEID": "0", "SLURM_PROCID": procid, "SLURM_LOCALID": localid,
           "CUDA_VISIBLE_DEVICES": gpus}
    monkeypatch.setattr(os, "environ", env)
    assert _num_tasks() == 2
    export_dist_env()
    ranks = (env["MASTER_ADDR"], env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"])
    assert ranks == ("n1", procid, "2", localid)
    assert env["LOCAL_WORLD_SIZE"] == str(2 // int(nodes)) and env["CUDA_VISIBLE_DEVICES"] == gpus
    assert 20000 <= int(env["MASTER_PORT"]) <= 60000


def test_a_preamble_that_already_set_master_addr_does_not_break_ddp(monkeypatch: pytest.MonkeyPatch) -> None:
    """Some site preambles export MASTER_ADDR/MASTER_PORT; export must not raise (submitit's default is a
    RuntimeError) and MASTER_ADDR must become the job's first node, where rank 0 listens."""
    import os

    from aslhpc.slurm.cell_job import export_dist_env

    env = {"PATH": os.environ["PATH"], "SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "4242",
           "SLURM_NTASKS": "2", "SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_NODELIST": "n[1-2]",
           "SLURM_NODEID": "1", "SLURM_PROCID": "1", "SLURM_LOCALID": "0", "CUDA_VISIBLE_DEVICES": "0",
           "MASTER_ADDR": "localhost", "MASTER_PORT": "29500"}
    monkeypatch.setattr(os, "environ", env)
    export_dist_env()
    assert (env["MASTER_ADDR"], env["RANK"], env["WORLD_SIZE"]) == ("n1", "1", "2")
    # submitit keeps a MASTER_PORT it finds (the site's choice, the same for every rank of the job)
    assert env["MASTER_PORT"] == "29500" and env["CUDA_VISIBLE_DEVICES"] == "0"
