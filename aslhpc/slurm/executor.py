"""One submitit executor per cell, and the exact sbatch script it would submit (for --dry-run).

Why a fresh executor per cell: ``update_parameters(x=None)`` does not unset ``x`` and typed
``gres`` must never meet ``gpus_per_node``, so reusing one executor across GPU counts leaks
the previous cell's request (docs/slurm-on-one-machine.md, pitfall 8).

The SLURM path uses :class:`submitit.SlurmExecutor` with its native parameter names, so the
dry-run renders the script through the very same executor object and method
(``_make_submission_file_text`` -> ``_make_sbatch_string``) that a real submission uses; only
the command line differs (see :func:`render_sbatch`).
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit

from aslhpc.errors import ConfigError
from aslhpc.orchestration.experiment import Cell, ExperimentSpec, parse_mem_mb, parse_time_min, sbatch_mem

TEMPLATES = Path(__file__).resolve().parent.parent.parent / "sbatch_templates"
SIGNAL_DELAY_S = 90  # USR2 this long before the time limit: enough to requeue; the trainer saved at the last epoch


@dataclass(frozen=True)
class JobRequest:
    """Everything one cell's job asks for (the sbatch header, in submitit's terms)."""

    name: str
    partition: str
    reservation: str
    gres: str  # gpu:<type>:<N> per node
    gpus: int  # the cell's total, over all nodes
    nodes: int  # > 1 only for ddp cells wider than cluster.gpus_per_node
    tasks_per_node: int  # 1 for dp, one per GPU on the node for ddp
    cpus_per_task: int
    mem: str  # sbatch --mem value, per node
    time_min: int
    setup: tuple[str, ...]
    max_requeues: int
    account: str = ""
    qos: str = ""

    @property
    def mem_mb(self) -> int:
        return parse_mem_mb(self.mem)


def job_name(experiment: str, cell_id: str) -> str:
    return f"aslhpc-{experiment}-{cell_id}"


def read_preamble(name: str, templates: Path = TEMPLATES) -> tuple[str, ...]:
    """The setup lines of ``sbatch_templates/<name>.sh``: comments and blank lines dropped."""
    if not name:
        return ()
    path = templates / f"{name}.sh"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in templates.glob("*.sh"))) or "(none)"
        raise ConfigError(f"sbatch preamble {name!r} not found in {templates}; use --preamble with one of: {known}")
    lines = path.read_text(encoding="utf-8").splitlines()
    return tuple(ln.rstrip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#"))


def job_request(spec: ExperimentSpec, cell: Cell, templates: Path = TEMPLATES) -> JobRequest:
    """The cell's sbatch request; nodes, tasks and gres per node follow :meth:`ExperimentSpec.layout`."""
    c = spec.cluster
    ddp = cell.strategy == "ddp"
    layout = spec.layout(cell)
    return JobRequest(
        name=job_name(spec.name, cell.cell_id),
        partition=c.partition,
        reservation=c.reservation,
        gres=f"gpu:{c.gpu_type}:{layout.gpus_per_node}",
        gpus=cell.gpus,
        nodes=layout.nodes,
        tasks_per_node=layout.tasks_per_node,
        cpus_per_task=c.cpus_per_gpu if ddp else c.cpus_per_gpu * cell.gpus,
        mem=sbatch_mem(c.mem),
        time_min=parse_time_min(c.time),
        setup=read_preamble(c.preamble, templates) + tuple(c.setup),
        max_requeues=c.max_requeues,
        account=c.account,
        qos=c.qos,
    )


def slurm_parameters(req: JobRequest) -> dict[str, Any]:
    """SlurmExecutor parameters: typed ``gres`` only (never ``gpus_per_node``), reservation via
    ``additional_parameters`` (submitit has no reservation parameter)."""
    params: dict[str, Any] = {
        "job_name": req.name,
        "partition": req.partition,
        "time": req.time_min,
        "nodes": req.nodes,
        "ntasks_per_node": req.tasks_per_node,
        "cpus_per_task": req.cpus_per_task,
        "mem": req.mem,
        "gres": req.gres,
        "signal_delay_s": SIGNAL_DELAY_S,
    }
    extra = {k: v for k, v in (("reservation", req.reservation), ("account", req.account), ("qos", req.qos)) if v}
    if extra:
        params["additional_parameters"] = extra
    if req.setup:
        params["setup"] = list(req.setup)
    return params


class _RenderOnlySlurmExecutor(submitit.SlurmExecutor):
    """A SlurmExecutor that can be built where ``srun`` is absent (dry runs on a laptop); it never submits."""

    @classmethod
    def affinity(cls) -> int:
        return 1

    def _submit_command(self, command: str) -> submitit.core.core.Job:  # pragma: no cover - guard
        raise RuntimeError("render-only executor: use submitit.SlurmExecutor to submit")


def slurm_executor(folder: str | Path, req: JobRequest, *, python: str | None = None,
                   render_only: bool = False) -> submitit.SlurmExecutor:
    """A fresh executor for one cell; ``max_num_timeout`` = requeues after a timeout (preemptions are free)."""
    cls = _RenderOnlySlurmExecutor if render_only else submitit.SlurmExecutor
    ex = cls(folder=folder, max_num_timeout=req.max_requeues, python=python)
    ex.update_parameters(**slurm_parameters(req))
    return ex


def local_executor(folder: str | Path, req: JobRequest, gpus: Sequence[str] | None = None) -> submitit.LocalExecutor:
    """The same cell on this machine: same time limit (so requeue-on-timeout works), same tasks and GPUs.

    A multi-node request runs all its tasks here (one machine is one node). The preamble is
    not run: its module/venv lines are for the cluster's nodes. ``gpus`` are the
    CUDA_VISIBLE_DEVICES entries the job gets (its share of this machine's, see
    :func:`aslhpc.slurm.local.next_start`); None leaves submitit's default (``0..N-1``: no GPU here).
    Indices go through submitit's ``visible_gpus``; UUID / MIG entries, which it cannot take, are
    exported by a setup line instead.
    """
    ex = submitit.LocalExecutor(folder=folder, max_num_timeout=req.max_requeues)
    params: dict[str, Any] = {"timeout_min": req.time_min, "tasks_per_node": req.nodes * req.tasks_per_node,
                              "gpus_per_node": req.gpus, "signal_delay_s": SIGNAL_DELAY_S}
    if gpus is not None:
        if all(g.isdigit() for g in gpus):
            params.update(gpus_per_node=len(gpus), visible_gpus=tuple(int(g) for g in gpus))
        else:
            params.update(gpus_per_node=0, setup=[f"export CUDA_VISIBLE_DEVICES={shlex.quote(','.join(gpus))}"])
    ex.update_parameters(**params)
    return ex


def cell_command(python: str, experiment: str, cell_id: str, config: dict[str, Any]) -> str:
    """The by-hand command for a cell: ``python -m aslhpc.slurm.cell_job`` with its full TrainConfig."""
    import json

    return " ".join([python, "-u -m aslhpc.slurm.cell_job", "--experiment", shlex.quote(experiment),
                     "--cell-id", shlex.quote(cell_id), "--config",
                     shlex.quote(json.dumps(config, sort_keys=True, separators=(",", ":")))])


def render_sbatch(folder: str | Path, req: JobRequest, command: str, *, python: str | None = None) -> str:
    """The sbatch script a real submission of ``req`` would write, with ``command`` instead of
    submitit's ``python -m submitit.core._submit <folder>`` (which needs a pickle that only a
    real submission creates)."""
    ex = slurm_executor(folder, req, python=python, render_only=True)
    return ex._make_submission_file_text(command, uid="dry-run")


def default_python() -> str:
    return shlex.quote(sys.executable)
