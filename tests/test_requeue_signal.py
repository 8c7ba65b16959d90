"""A job's self-requeue survives the SIGTERM the requeue sends (the cell is requeued, not FAILED).

The fake ``scontrol`` does what a busy node did in the e2e requeue test: the job's SIGTERM reaches it
before it exits. Here it sends SIGTERM to itself first, then records the request.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
import submitit.slurm.slurm as submitit_slurm

from aslhpc.slurm import requeue, safe_submit

SIGTERMED_SCONTROL = """#!/bin/sh
kill -TERM $$
echo "$@" >> "$SCONTROL_LOG"
"""


def fake_scontrol(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "scontrol"
    script.write_text(body)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "scontrol.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SCONTROL_LOG", str(log))
    monkeypatch.setenv("SLURM_JOB_ID", "284")
    return log


@pytest.fixture
def restore_submitit(monkeypatch: pytest.MonkeyPatch) -> None:
    """install() patches submitit's class; undo it after each test."""
    monkeypatch.setattr(submitit_slurm.SlurmJobEnvironment, "_requeue",
                        submitit_slurm.SlurmJobEnvironment._requeue)


def test_the_requeue_request_completes_although_the_requeue_sigterms_scontrol(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_submitit: None) -> None:
    log = fake_scontrol(tmp_path, monkeypatch, SIGTERMED_SCONTROL)
    env = submitit_slurm.SlurmJobEnvironment()
    with pytest.raises(subprocess.CalledProcessError, match="SIGTERM"):
        env._requeue(2)  # submitit's own: the failure seen under load
    assert not log.exists()

    requeue.install()
    env._requeue(2)  # no exception escapes into the training loop
    assert log.read_text().split() == ["requeue", "284"]  # and scontrol finished sending the request


#: a scontrol that dies of SIGTERM although started with it ignored (it resets the handler first)
SIGTERM_DEATH = ("#!/bin/sh\nexec python3 -c 'import os, signal; "
                 "signal.signal(signal.SIGTERM, signal.SIG_DFL); os.kill(os.getpid(), signal.SIGTERM)'\n")


def test_scontrol_dying_of_sigterm_is_a_job_being_stopped_not_an_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_scontrol(tmp_path, monkeypatch, SIGTERM_DEATH)
    requeue.requeue("284", 1)  # returns: SLURM is stopping the job; the handler then exits as requeued


def test_a_refused_requeue_still_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_scontrol(tmp_path, monkeypatch, "#!/bin/sh\necho 'Requested operation is presently disabled' >&2\n"
                                         "exit 1\n")
    with pytest.raises(subprocess.CalledProcessError):
        requeue.requeue("284", 1)


def test_every_job_requeues_through_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       restore_submitit: None) -> None:
    """safe_submit (every job's entry point) installs it before submitit runs the job."""
    seen = []
    monkeypatch.setattr("submitit.core.submission.process_job",
                        lambda folder: seen.append(submitit_slurm.SlurmJobEnvironment._requeue))
    monkeypatch.setattr(safe_submit, "WAIT_S", 0)
    monkeypatch.setenv("SLURM_JOB_ID", "284")
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    monkeypatch.setenv("SUBMITIT_FOLDER", str(tmp_path))  # main sets it; monkeypatch then restores it
    assert safe_submit.main(["-u", "-m", "submitit.core._submit", str(tmp_path)]) == 0
    assert seen and seen[0] is requeue._requeue_method
