"""The one reader of the ``SLURM_*`` variables slurmd sets in a job's environment.

Every module that wants a fact about the allocation (the job id, the node, the granted GPUs, node-local
scratch) asks here, with the environment passed in so tests and the doctor can hand it another one.
The distributed layout (ranks, master address) is the exception: submitit's ``JobEnvironment`` reads it
inside the job (``slurm/cell_job.py``), as the launcher that set it up.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator, Mapping
from typing import Any

#: provenance["slurm"] key -> environment variable (all set by slurmd in the job's environment)
SLURM_ENV = {
    "job_id": "SLURM_JOB_ID",
    "array_job_id": "SLURM_ARRAY_JOB_ID",
    "array_task": "SLURM_ARRAY_TASK_ID",
    "partition": "SLURM_JOB_PARTITION",
    "reservation": "SLURM_JOB_RESERVATION",
    "nodelist": "SLURM_JOB_NODELIST",
    "nodename": "SLURMD_NODENAME",
    "restarts": "SLURM_RESTART_COUNT",
    "job_gpus": "SLURM_JOB_GPUS",
    "step_gpus": "SLURM_STEP_GPUS",
    "gpus_on_node": "SLURM_GPUS_ON_NODE",
    "cpus_on_node": "SLURM_CPUS_ON_NODE",
    "cpus_per_task": "SLURM_CPUS_PER_TASK",
    "mem_per_node_mb": "SLURM_MEM_PER_NODE",
    "cluster": "SLURM_CLUSTER_NAME",
    "ntasks": "SLURM_NTASKS",
}

#: node-local scratch, in the order a cache looks for it (SLURM's per-job folder first)
SCRATCH_VARS = ("SLURM_TMPDIR", "TMPDIR")


def slurm_info(env: Mapping[str, str]) -> dict[str, Any] | None:
    """The SLURM allocation from the job environment; None outside a SLURM job."""
    if not env.get("SLURM_JOB_ID"):
        return None
    info: dict[str, Any] = {key: env.get(var) or None for key, var in SLURM_ENV.items()}
    restarts = info["restarts"]
    info["restarts"] = int(restarts) if restarts and restarts.isdigit() else 0
    info["gres"] = f"gpu:{info['gpus_on_node']}" if info["gpus_on_node"] else None
    return info


def node_scratch(env: Mapping[str, str]) -> tuple[str, str] | None:
    """(folder, the variable that named it) for node-local scratch, or None where none is set."""
    for var in SCRATCH_VARS:
        if env.get(var):
            return env[var], var
    return None


def granted_gpus(env: Mapping[str, str]) -> str:
    """The GPUs SLURM or the user made visible ("" when none were set)."""
    return env.get("CUDA_VISIBLE_DEVICES", "") or env.get("SLURM_JOB_GPUS", "")


def node_name(env: Mapping[str, str] | None = None) -> str:
    """The node's name as SLURM knows it (what sinfo and squeue print), else the host name."""
    return (os.environ if env is None else env).get("SLURMD_NODENAME") or socket.gethostname()


#: what a job inherits from the job that submitted it and srun/sbatch would read as their own input
INHERITED_PREFIXES = ("SLURM_", "SBATCH_", "SRUN_", "SALLOC_")


@contextlib.contextmanager
def outside_this_job() -> Iterator[None]:
    """Submit from inside a job as from a login shell: the job's own ``SLURM_*`` (and ``SBATCH_*``/``SRUN_*``)
    variables are removed for the duration, so a job it submits does not inherit this job's allocation
    (``--export=ALL`` copies them; srun in the new job would read e.g. this job's SLURM_MEM_PER_CPU)."""
    saved = {k: v for k, v in os.environ.items() if k.startswith(INHERITED_PREFIXES)}
    for k in saved:
        del os.environ[k]
    try:
        yield
    finally:
        os.environ.update(saved)
