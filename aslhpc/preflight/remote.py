"""``doctor --submit``: the same checks as one short SLURM job per distinct job shape of an experiment.

Each job asks for what the experiment's cells ask for (partition, reservation, gres, CPUs,
memory, preamble and setup lines), so it lands where the cells would and meets the same
environment; it runs ``aslhpc.doctor`` there and writes the report as JSON into
``<results>/<experiment>/doctor/<stamp>/``, which this side reads back and prints (nothing is
unpickled). Multi-node ddp shapes are checked on one of their nodes. Jobs are named
``doctor-<experiment>-<shape>``, never ``aslhpc-<experiment>-<cell>``, so nothing takes them for cells.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from aslhpc.errors import AslhpcError
from aslhpc.invocation import aslhpc_command
from aslhpc.preflight.runner import Report, render
from aslhpc.states import DONE, FAILED, CellState

DOCTOR_TIME_MIN = 15  # a doctor job's limit: the checks take a minute or two
_DONE = DONE | FAILED  # the job has ended, with or without success


def node_job(options: dict, json_path: str) -> int:
    """What a doctor job runs on the node: the checks with ``options`` (context_for's arguments), the
    report printed to the job's log and written as JSON for the submitting side; the exit code."""
    from aslhpc.preflight.context import context_for
    from aslhpc.preflight.runner import run_checks, write_json

    report = run_checks(context_for(**options))
    print(render(report), end="", flush=True)
    write_json(report, json_path)
    return report.exit_code


def submit_job(folder: Path, spec, cell, name: str, options: dict, json_path: Path):  # noqa: ANN001, ANN201
    """The one place that uses the experiment's request and the executor factory (kept small on purpose).

    Returns the submitit job; the request is the cell's, on one node with one task.
    """
    from aslhpc.orchestration.experiment import job_request
    from aslhpc.slurm.executor import slurm_executor

    req = job_request(spec, cell)
    req = replace(req, name=name, nodes=1, tasks_per_node=1,
                  cpus_per_task=req.cpus_per_task * req.tasks_per_node,
                  time_min=min(req.time_min, DOCTOR_TIME_MIN), max_requeues=0)
    return slurm_executor(folder, req).submit(node_job, options, str(json_path))


def shapes(spec) -> dict[str, object]:  # noqa: ANN001 - ExperimentSpec -> {label: first cell of that shape}
    """One representative cell per distinct per-node request (GPUs, strategy, nodes)."""
    out: dict[str, object] = {}
    for cell in spec.cells():
        layout = spec.layout(cell)
        label = f"g{layout.gpus_per_node}-{cell.strategy}" + (f"-n{layout.nodes}" if layout.nodes > 1 else "")
        out.setdefault(re.sub(r"[^A-Za-z0-9._-]", "_", label), cell)
    return out


def submit_doctor(job: str, args: argparse.Namespace, width: int = 80) -> int:
    """Submit, wait, print each node's report; 0 when a cell would run on every shape."""
    from aslhpc.orchestration.experiment import find_job_file, load_spec
    from aslhpc.slurm.cluster import slurm_reachable

    spec = load_spec(find_job_file(job))
    ok, why = slurm_reachable()
    if not ok:
        raise AslhpcError(f"SLURM is not reachable ({why}); run {aslhpc_command('doctor')} on the node "
                          "itself")
    _check_request(spec)
    results = Path(args.results or spec.results).expanduser().resolve()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    folder = results / spec.name / "doctor" / stamp
    folder.mkdir(parents=True, exist_ok=True)
    base = {"experiment": str(Path(spec.source).resolve()), "results": str(results),
            "data": str(Path(args.data or spec.data).expanduser().resolve()), "cache_dir": args.cache_dir,
            "image_size": args.image_size, "node_local": args.node_local, "quick": args.quick}
    jobs = {}
    for label, cell in shapes(spec).items():
        options = {**base, "ddp": cell.strategy == "ddp"}
        try:
            jobs[label] = submit_job(folder / label, spec, cell, f"doctor-{spec.name}-{label}", options,
                                     folder / f"{label}.json")
        except Exception as exc:  # noqa: BLE001 - sbatch's refusal (partition, reservation) in one line
            last = str(exc).strip().splitlines()[-1:] or [type(exc).__name__]
            raise AslhpcError(f"sbatch refused the doctor job for {label}: {last[0]}; "
                              "check [cluster] in the experiment file") from exc
        print(f"submitted doctor job {jobs[label].job_id} for job shape {label}", flush=True)
    _wait(jobs, args.timeout)
    return _print_reports(jobs, folder, width)


def _check_request(spec) -> None:  # noqa: ANN001 - ExperimentSpec
    """The checks submit makes of partition, reservation, GPUs and nodes, before any job is queued."""
    from aslhpc.orchestration.requestchecks import job_shapes
    from aslhpc.slurm.cluster import check_request, query_cluster

    c = spec.cluster
    try:
        info = query_cluster()
    except (RuntimeError, OSError) as exc:
        raise AslhpcError(f"cannot query SLURM ({exc}); check `scontrol ping`") from exc
    problems, _ = check_request(info, partition=c.partition, reservation=c.reservation, gpu_type=c.gpu_type,
                                jobs=job_shapes(spec), account=c.account)
    if problems:
        raise AslhpcError(f"{'; '.join(problems)} ({spec.source} [cluster]); no doctor job submitted")


def _wait(jobs: dict, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    shown: dict[str, str] = {}
    while True:
        states = {label: j.state for label, j in jobs.items()}
        for label, state in states.items():
            if shown.get(label) != state:
                print(f"  {label}: job {jobs[label].job_id} {state}", file=sys.stderr, flush=True)
                shown[label] = state
        if all(CellState.parse(s) in _DONE for s in states.values()):
            return
        if time.monotonic() > deadline:
            waiting = ", ".join(f"{jobs[k].job_id} ({s})" for k, s in states.items()
                                if CellState.parse(s) not in _DONE)
            raise AslhpcError(f"doctor jobs {waiting} did not finish within {timeout:.0f} s; see squeue "
                              "(the reservation may be full), or raise --timeout")
        time.sleep(2.0)


def _print_reports(jobs: dict, folder: Path, width: int) -> int:
    from aslhpc.atomic import read_json

    code = 0
    for label, job in jobs.items():
        path = folder / f"{label}.json"
        try:
            report = Report.from_dict(read_json(path))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            tail = ""
            try:
                tail = " | ".join((job.stderr() or "").strip().splitlines()[-3:])
            except Exception:  # noqa: BLE001 - the log may be missing too
                pass
            print(f"error: doctor job {job.job_id} ({label}) ended {job.state} without a report "
                  f"({type(exc).__name__}: {path}); its stderr ends: {tail or '(empty)'}", file=sys.stderr)
            code = 1
            continue
        title = f"doctor on {report.host}: job {job.job_id}, shape {label}"
        print(render(report, width=width, title=title), end="")
        code = max(code, report.exit_code)
    print(f"reports in {folder}")
    return code
