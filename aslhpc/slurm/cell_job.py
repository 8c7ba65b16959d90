"""The function a cell's job runs: a submitit Checkpointable around :func:`aslhpc.training.trainer.run_cell`.

Preemption / time limit: SLURM sends USR2 (``--signal=USR2@90``), submitit calls
:meth:`CellJob.checkpoint` and requeues the job. The trainer has already written a checkpoint
at the last epoch boundary, so ``checkpoint`` saves nothing (work inside a signal handler is
unsafe); it only hands back the same call, and the requeued job resumes from that epoch.

``python -m aslhpc.slurm.cell_job --experiment E --cell-id C --config JSON`` runs the same
code without submitit's pickle; the scripts written by ``submit --dry-run`` use it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import submitit

from aslhpc.training.config import TrainConfig


class CellJob(submitit.helpers.Checkpointable):
    """One cell. Holds only plain data (the TrainConfig as a dict), so its pickle stays small and stable."""

    def __init__(self, config: dict[str, Any], experiment: str, cell_id: str) -> None:
        self.config = dict(config)
        self.experiment = experiment
        self.cell_id = cell_id

    def __call__(self) -> dict[str, Any]:
        cfg = TrainConfig.from_dict(self.config)
        if _num_tasks() > 1:
            export_dist_env()
        from aslhpc.training.trainer import run_cell  # heavy import, inside the job only

        return run_cell(cfg, experiment=self.experiment, cell_id=self.cell_id)

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Requeue the same call; the trainer resumes from ``checkpoint.pt`` (written at every epoch end)."""
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def export_dist_env() -> submitit.helpers.TorchDistributedEnvironment:
    """RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR (the job's first node) / MASTER_PORT for the trainer.

    CUDA_VISIBLE_DEVICES is left as SLURM set it (this node's GPUs of the job): the trainer
    picks ``cuda:LOCAL_RANK`` among them, which submitit's default of narrowing it to
    ``str(local_rank)`` would break for every rank but local rank 0. Variables already in the
    environment (a site preamble exporting MASTER_ADDR/MASTER_PORT, a job started from another
    job) are overwritten with this job's layout, where submitit would raise RuntimeError; a
    MASTER_PORT found there is kept (submitit reads it), the same for every rank.
    """
    env = submitit.helpers.TorchDistributedEnvironment()
    return env.export(set_cuda_visible_devices=False, overwrite=True)


def _num_tasks() -> int:
    """Tasks in this job (SLURM or submitit-local); 1 outside any job."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return 1
    try:
        return submitit.JobEnvironment().num_tasks
    except (KeyError, RuntimeError, ValueError):
        return 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m aslhpc.slurm.cell_job",
                                description="Run one experiment cell (what submit's jobs run).")
    p.add_argument("--experiment", required=True)
    p.add_argument("--cell-id", required=True)
    p.add_argument("--config", required=True, help="the cell's TrainConfig as JSON")
    args = p.parse_args(argv)
    from aslhpc.cli import run_cli

    return run_cli(CellJob(json.loads(args.config), args.experiment, args.cell_id))


if __name__ == "__main__":
    sys.exit(main())
