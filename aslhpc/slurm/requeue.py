"""The job's self-requeue, safe from the SIGTERM that the requeue itself sends.

On USR2 (preemption, or the time limit coming) submitit's handler runs ``scontrol requeue <job id>``
with ``check_call``. SLURM carries out a requeue by sending SIGTERM to every process of the job, and
that includes the ``scontrol`` child. On a busy node the SIGTERM can arrive before ``scontrol`` has
exited. ``check_call`` then raises ``CalledProcessError(-SIGTERM)`` inside the signal handler, the
exception surfaces in the training loop, and the cell ends FAILED with an error.json instead of being
requeued. That happened under load in ``tests/e2e/test_requeue.py`` (docs/development.md).

:func:`requeue` replaces submitit's ``SlurmJobEnvironment._requeue``; :mod:`aslhpc.slurm.safe_submit`
installs it in every job before submitit loads the job. ``scontrol`` is started with SIGTERM
ignored, so it always finishes its request (SIGKILL, KillWait seconds later, still ends it). If it
dies of SIGTERM anyway, the job is being stopped already, by this requeue or by a cancel. That is not
a training error, and the job exits as after a requeue. A real refusal (a non-zero exit) still raises,
as before.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import submitit.slurm.slurm as submitit_slurm

#: submitit's own limit on the scontrol call
TIMEOUT_S = 60


def _start_ignoring_sigterm(cmd: list[str]) -> subprocess.Popen[bytes]:
    """Start ``cmd`` with SIGTERM ignored. An ignored signal stays ignored across exec. Changing the
    parent's handler for that moment is safe: this runs in the main thread (in a signal handler), where
    submitit's own SIGTERM handler only logs and ignores. ``preexec_fn`` is avoided because it is unsafe
    with threads (the sampler, the loaders)."""
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        return subprocess.Popen(cmd)
    finally:
        signal.signal(signal.SIGTERM, previous)


def requeue(job_id: str, countdown: int) -> None:
    """``scontrol requeue job_id``: return once SLURM has the request, raise if it refused it."""
    cmd = ["scontrol", "requeue", job_id]
    proc = _start_ignoring_sigterm(cmd)
    try:
        code = proc.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    if code == -signal.SIGTERM:
        print(f"aslhpc: scontrol requeue {job_id} was stopped by SIGTERM: the job is being stopped "
              "(by this requeue, or by a cancel), not failed", file=sys.stderr, flush=True)
        return
    if code != 0:
        raise subprocess.CalledProcessError(code, cmd)
    print(f"aslhpc: requeued job {job_id} ({countdown} timeouts left)", file=sys.stderr, flush=True)


def _requeue_method(self: submitit_slurm.SlurmJobEnvironment, countdown: int) -> None:
    requeue(self.job_id, countdown)


def install() -> None:
    """Make submitit's SLURM job environment requeue through :func:`requeue` (idempotent)."""
    submitit_slurm.SlurmJobEnvironment._requeue = _requeue_method  # type: ignore[method-assign]
