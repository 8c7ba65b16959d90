"""What every submitit job runs instead of ``python -m submitit.core._submit <folder>``: check, then go on.

A submitit job unpickles its ``<id>_submitted.pkl`` from the results directory and runs it, as the job's
owner. Anyone who could replace that file (a group-writable folder on a shared site, a file another user
owns) could run code in someone else's job. So before submitit's ``process_job`` loads the pickle, this
checks that the pickle and every folder from it up to the experiment's ``jobs/`` are owned by this user
and writable by nobody else, and refuses with one line (exit 2) otherwise; nothing is unpickled then.

The executors (:mod:`aslhpc.slurm.executor`) put ``-u -m aslhpc.slurm.safe_submit`` after the job's
Python, so the rendered command reads
``<python> -u -m aslhpc.slurm.safe_submit -u -m submitit.core._submit <folder>``: the folder is the last
argument, as for submitit's own entry point. It also installs :func:`aslhpc.slurm.requeue.requeue` for
submitit's self-requeue on USR2 (a requeue's own SIGTERM must not fail the cell).
"""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

#: seconds to wait for the pickle (submitit moves it into place right after sbatch; its own wait is 60 s)
WAIT_S = 60


def unsafe(path: Path, uid: int | None = None) -> str:
    """Why ``path`` may not be trusted ('' when it may): not ours, group/other-writable, a symlink."""
    uid = os.getuid() if uid is None else uid
    try:
        st = path.lstat()
    except OSError as exc:
        return f"{path} cannot be checked ({exc.strerror or exc})"
    if stat.S_ISLNK(st.st_mode):
        return f"{path} is a symbolic link"
    if st.st_uid != uid:
        return f"{path} belongs to uid {st.st_uid}, not to this job's user (uid {uid})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} is writable by {'group' if st.st_mode & stat.S_IWGRP else 'others'} (mode " \
               f"{stat.S_IMODE(st.st_mode):04o})"
    return ""


def chain(pickle: Path) -> list[Path]:
    """The pickle, then each folder above it up to and including the experiment's ``jobs/`` (just the
    pickle's own folder where there is no ``jobs/`` above it: a job folder outside an experiment)."""
    parents = list(pickle.parents)
    top = next((i for i, p in enumerate(parents) if p.name == "jobs"), 0)
    return [pickle, *parents[:top + 1]]


def check_pickle(pickle: Path, uid: int | None = None) -> str:
    """The first reason not to load ``pickle`` ('' when it is safe to load)."""
    for path in chain(pickle):
        why = unsafe(path, uid)
        if why:
            return why
    return ""


def _wait_for(path: Path, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(1)
    return True


def main(argv: list[str] | None = None) -> int:
    """Check the job's pickle, then run submitit's ``process_job`` on the folder (the last argument)."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("error: no job folder given; this module is run by submitit jobs only", file=sys.stderr)
        return 2
    folder = args[-1]
    os.environ["SUBMITIT_FOLDER"] = folder
    import submitit
    from submitit.core.submission import process_job

    from aslhpc.slurm import requeue

    requeue.install()

    pickle = submitit.JobEnvironment().paths.submitted_pickle
    if _wait_for(pickle, WAIT_S):  # a missing pickle: submitit's own wait and message
        why = check_pickle(pickle.absolute())
        if why:
            print(f"error: refusing to load {pickle}: {why}; a job only runs a pickle its owner wrote in a "
                  "private folder (chmod go-w, and submit again)", file=sys.stderr)
            return 2
    process_job(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
