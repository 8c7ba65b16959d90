"""``submit --collect``: one small job that runs collect once every cell's job has ended.

It depends on the cells with ``--dependency=afterany:<ids>`` (a job array's id covers all its tasks),
so the user comes back to ``report.md`` without running collect by hand. The manifest records it as
``collect`` (an :class:`~aslhpc.orchestration.manifest.Attempt` that is no cell); status shows it as a
row of its own. Submitting again replaces it: an old one still pending is cancelled first, so copies
never stack up. It asks for one CPU and no GPU (collect reads files and draws plots).
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

from aslhpc.errors import ClusterError
from aslhpc.invocation import aslhpc_command
from aslhpc.orchestration.experiment import ExperimentSpec
from aslhpc.orchestration.manifest import Attempt, Manifest, now_iso
from aslhpc.slurm.accounting import Runner, array_base, job_comment, queued_jobs_named
from aslhpc.slurm.accounting import run_slurm_command as _run
from aslhpc.slurm.executor import collect_name, command_executor, read_preamble, slurm_parameters
from aslhpc.slurm.request import JobRequest
from aslhpc.states import CellState

#: what the collect job asks for: minutes, memory per node
COLLECT_TIME_MIN = 30
COLLECT_MEM = "4G"


def collect_request(spec: ExperimentSpec) -> JobRequest:
    """One task, one CPU, no GPU, on the experiment's partition/reservation with its site options."""
    c = spec.cluster
    setup = read_preamble(c.preamble) + tuple(c.setup)
    return JobRequest(collect_name(spec.name), c.partition, c.reservation, "", 0, 1, 1, 1, COLLECT_MEM,
                      COLLECT_TIME_MIN, setup, 0, c.site())


def dependency(job_ids: Iterable[str]) -> str:
    """``afterany:<id>:<id>...``, each job array once by its id (that covers all its tasks); '' for none."""
    ids = sorted({array_base(j) for j in job_ids if j}, key=lambda j: (len(j), j))
    return "afterany:" + ":".join(ids) if ids else ""


def replace_old(manifest: Manifest, out: Callable[[str], None], run: Runner = _run) -> None:
    """Cancel the experiment's earlier collect job if it still waits (a running one is left to finish)."""
    old = manifest.collect
    if old is None:
        return
    try:
        queued = {j.job_id: j.state for j in queued_jobs_named([collect_name(manifest.experiment)], run)}
    except RuntimeError:
        queued = {}
    if queued.get(old.job_id) == CellState.PENDING:
        run(["scancel", old.job_id])
        out(f"{'collect':<16} replaced    job {old.job_id} (cancelled while it waited)")


def submit_collect(spec: ExperimentSpec, manifest: Manifest, after: Iterable[str], python: str,
                   out: Callable[[str], None], token: str, next_round: bool = False) -> Attempt:
    """Submit the collect job after the jobs ``after`` (recorded in ``manifest.collect``; the caller
    saves). ``next_round``: the job is the --until-conclusive chain's next step (``submit --next-round``:
    decide, write the round's report, submit the next round and another such job) instead of collect."""
    import submitit

    replace_old(manifest, out)
    jobs = (spec.experiment_dir / "jobs").resolve()
    ex = command_executor(jobs / "collect" / "%j", jobs, python=python)
    params = {k: v for k, v in slurm_parameters(collect_request(spec)).items() if v not in ("", None)}
    params["comment"] = job_comment(spec.name, "collect", token, spec.cluster.comment)
    dep = dependency(after)
    if dep:
        params["dependency"] = dep
    ex.update_parameters(**params)
    step = ["aslhpc.submit", "--next-round"] if next_round else ["aslhpc.collect"]
    cmd = [*shlex.split(python), "-m", *step, "--experiment", spec.name, "--results",
           str(Path(spec.results).resolve())]
    try:
        job = ex.submit(submitit.helpers.CommandFunction(cmd))
    except (submitit.core.utils.FailedJobError, submitit.core.utils.FailedSubmissionError,
            subprocess.SubprocessError) as exc:
        raise ClusterError(f"sbatch refused the collect job: {' '.join(str(exc).split())}; the cells are "
                           f"submitted and recorded: run {aslhpc_command('collect')} when they end") from exc
    attempt = Attempt(str(job.job_id), "slurm", now_iso(), f"jobs/collect/{job.job_id}", token)
    manifest.collect = attempt
    what = "the next round's decision" if next_round else "collect"
    out(f"{'collect':<16} submitted   job {job.job_id} (runs {what} "
        + (f"after {dep.split(':', 1)[1].replace(':', ', ')})" if dep else "now: no cell job is live)"))
    return attempt
