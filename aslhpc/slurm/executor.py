"""One submitit executor per cell, and the exact sbatch script it would submit (for --dry-run).

This is the one module that knows submitit beyond its public API (everything else goes through it):

* :class:`_PrivateSlurmExecutor` / :class:`_PrivateLocalExecutor` override submitit's documented
  per-backend hook ``_internal_process_submissions`` only to create the job's files privately (umask 077,
  folders 0700): submitit writes them with the process umask, and a group-writable pickle is code anyone
  in the group could make a job run;
* :func:`render_sbatch` calls ``_make_submission_file_text``: the dry run then renders the very text a
  submission writes (submitit has no public way to get it);
* the file names submitit gives a job (``<uuid>.pkl`` before sbatch, ``<id>_submitted.pkl`` after,
  ``<id>_0_log.out``): :data:`UUID_PICKLE`, :func:`submitted_pickle`, used to finish a hand-off that a
  killed submit left half done (:mod:`aslhpc.orchestration.reconcile`).

Why a fresh executor per cell: ``update_parameters(x=None)`` does not unset ``x`` and typed
``gres`` must never meet ``gpus_per_node``, so reusing one executor across GPU counts leaks
the previous cell's request (docs/mini-cluster.md, "Pitfalls").

The SLURM path uses :class:`submitit.SlurmExecutor` with its native parameter names, so the
dry-run renders the script through the very same executor object and method
(``_make_submission_file_text`` -> ``_make_sbatch_string``) that a real submission uses; only
the command line differs (see :func:`render_sbatch`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import submitit

from aslhpc.errors import ConfigError
from aslhpc.packaged import find, names, search_dirs
from aslhpc.slurm.request import JobRequest

# USR2 this long before the time limit: enough to requeue; the trainer saved at the last epoch
SIGNAL_DELAY_S = 90
#: the call submitit dumps before sbatch (renamed to :func:`submitted_pickle` once the job id is known)
UUID_PICKLE = re.compile(r"[0-9a-f]{32}\.pkl")
#: what every job runs after its Python, before submitit's own entry point (see aslhpc.slurm.safe_submit)
GUARD = "-u -m aslhpc.slurm.safe_submit"


def submitted_pickle(folder: Path, job_id: str) -> Path:
    """Where submitit's job ``job_id`` (``<array>_<task>`` for a task) looks for its call in ``folder``."""
    return folder / f"{job_id}_submitted.pkl"


def result_pickle(folder: Path, job_id: str) -> Path:
    """Where submitit writes job ``job_id``'s outcome (task 0) in ``folder``: a pickle, so aslhpc only
    ever asks whether it exists (never opens it: anyone who can write the results directory could plant
    one)."""
    return folder / f"{job_id}_0_result.pkl"


def stray_pickles(folder: Path) -> list[Path]:
    """The ``<uuid>.pkl`` calls in ``folder`` that no job id was given to yet, oldest first."""
    try:
        found = [p for p in folder.glob("*.pkl") if UUID_PICKLE.fullmatch(p.name)]
        return sorted(found, key=lambda p: p.stat().st_mtime_ns)
    except OSError:
        return []


def private_dir(path: Path, top: Path | None = None) -> Path:
    """Create ``path`` with mode 0700 set explicitly, whatever the umask, and the same for each folder
    between it and ``top`` (included) when ``top`` is one of its parents; folders of other users are left.

    A job folder holds the pickle its job will run: only its owner may write there."""
    path = Path(path).absolute()
    with _private_umask():
        path.mkdir(parents=True, exist_ok=True)
    chain = [path]
    if top is not None and Path(top).absolute() in path.parents:
        top = Path(top).absolute()
        chain += [p for p in path.parents if p == top or top in p.parents]
    for p in chain:
        with contextlib.suppress(OSError):
            if p.stat().st_uid == os.getuid():
                p.chmod(0o700)
    return path


@contextlib.contextmanager
def _private_umask() -> Iterator[None]:
    """umask 077 while submitit writes a job's files (and while a local controller is forked)."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def guarded_python(python: str | None) -> str:
    """The job's Python followed by :data:`GUARD`, so every job checks its pickle before loading it."""
    return f"{python or default_python()} {GUARD}"

__all__ = ["JobRequest", "SIGNAL_DELAY_S", "UUID_PICKLE", "GUARD", "submitted_pickle", "result_pickle",
           "stray_pickles", "private_dir", "guarded_python", "job_name", "array_name", "array_executor",
           "read_preamble", "slurm_parameters", "slurm_executor", "command_executor",
           "local_executor", "cell_command", "render_sbatch", "default_python"]


def job_name(experiment: str, cell_id: str) -> str:
    return f"aslhpc-{experiment}-{cell_id}"


#: the job name of every job array of an experiment (its tasks' cells are in the manifest, by task index)
ARRAY = "array"


def array_name(experiment: str) -> str:
    """The job name of an experiment's job arrays: ``aslhpc-<experiment>-array``."""
    return job_name(experiment, ARRAY)


def collect_name(experiment: str) -> str:
    """The job name of the dependent job that runs collect (``submit --collect``)."""
    return job_name(experiment, "collect")


def preamble_path(name: str, templates: Path | None = None) -> Path:
    """Where preamble ``name`` is: a path (``site/setup.sh``) as given; a name in ``templates`` if given, else
    ``./sbatch_templates/<name>.sh``, else the one shipped with aslhpc. ConfigError if none exists."""
    if "/" in name or name.endswith(".sh"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise ConfigError(f"sbatch preamble file {path} does not exist; pass an existing .sh file or a "
                              f"name ({names('preamble')})")
        return path
    if templates is not None:
        path = templates / f"{name}.sh"
        found = path if path.is_file() else None
        where, known = str(templates), ", ".join(sorted(p.stem for p in templates.glob("*.sh"))) or "(none)"
    else:
        found = find("preamble", name)
        where, known = " or ".join(str(d) for d, _ in search_dirs("preamble")), names("preamble")
    if found is None:
        raise ConfigError(f"sbatch preamble {name!r} not found in {where}; use --preamble with one of: "
                          f"{known}")
    return found


def read_preamble(name: str, templates: Path | None = None) -> tuple[str, ...]:
    """The setup lines of preamble ``name`` (see :func:`preamble_path`): comments and blank lines dropped."""
    if not name:
        return ()
    lines = preamble_path(name, templates).read_text(encoding="utf-8").splitlines()
    return tuple(ln.rstrip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#"))


def interpreter_setup(python: str | None = None) -> list[str]:
    """Setup lines recorded at submit time: the job fails loudly where the Python submit ran from is missing,
    and, when that Python is a virtual environment's (this one), the job has its ``bin/`` on PATH."""
    python = python or default_python()
    words = shlex.split(python)
    lines = ["# the Python that ran submit, recorded at submit time"]
    if words and words[0].startswith("/"):
        exe = shlex.quote(words[0])
        lines.append(f"[ -x {exe} ] || {{ echo \"error: aslhpc: {words[0]} (the Python submit ran from) "
                     "is not "
                     "on $(hostname); submit from a Python the compute nodes share\" >&2; exit 1; }")
    if words[:1] == [sys.executable] and sys.prefix != sys.base_prefix:
        venv = shlex.quote(sys.prefix)
        lines.append(f"export VIRTUAL_ENV={venv} PATH={venv}/bin:$PATH")
    return lines if len(lines) > 1 else []


def slurm_parameters(req: JobRequest, python: str | None = None) -> dict[str, Any]:
    """SlurmExecutor parameters: typed ``gres`` only (never ``gpus_per_node``), reservation via
    ``additional_parameters`` (submitit has no reservation parameter), ``wckey`` None unless the site sets
    one (submitit's default would write ``--wckey=submitit``). The setup lines: the preamble's and
    ``[cluster] setup``, then :func:`interpreter_setup` for ``python`` (default: this interpreter)."""
    site = req.site
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
    params.update(site.sbatch_parameters())  # the [cluster] site options: one definition (request.py)
    extra: dict[str, Any] = dict(params.pop("additional_parameters", {}))
    if req.reservation:
        extra["reservation"] = req.reservation
    if extra:
        params["additional_parameters"] = extra
    setup = [*req.setup, *interpreter_setup(python)]
    if setup:
        params["setup"] = setup
    return params


class _PrivateSlurmExecutor(submitit.SlurmExecutor):
    """A SlurmExecutor whose job files are private (see the module doc)."""

    def _internal_process_submissions(self, delayed_submissions: list[Any]) -> list[Any]:
        private_dir(utils_folder(self.folder))
        with _private_umask():
            return super()._internal_process_submissions(delayed_submissions)


class _PrivateLocalExecutor(submitit.LocalExecutor):
    """A LocalExecutor whose job files are private; its controller inherits the umask."""

    def _internal_process_submissions(self, delayed_submissions: list[Any]) -> list[Any]:
        private_dir(utils_folder(self.folder))
        with _private_umask():
            return super()._internal_process_submissions(delayed_submissions)


def utils_folder(folder: str | Path) -> Path:
    """The part of a submitit folder pattern before its first ``%j``-like tag (created up front)."""
    return submitit.core.utils.JobPaths.get_first_id_independent_folder(folder)


class _RenderOnlySlurmExecutor(_PrivateSlurmExecutor):
    """A SlurmExecutor that can be built where ``srun`` is absent (dry runs on a laptop); it never submits."""

    @classmethod
    def affinity(cls) -> int:
        return 1

    def _submit_command(self, command: str) -> submitit.core.core.Job:  # pragma: no cover - guard
        raise RuntimeError("render-only executor: use submitit.SlurmExecutor to submit")


def slurm_executor(folder: str | Path, req: JobRequest, *, python: str | None = None,
                   render_only: bool = False) -> submitit.SlurmExecutor:
    """A fresh executor for one cell; ``max_num_timeout`` = requeues after a timeout (preemptions: free)."""
    cls = _RenderOnlySlurmExecutor if render_only else _PrivateSlurmExecutor
    ex = cls(folder=folder, max_num_timeout=req.max_requeues, python=guarded_python(python))
    ex.update_parameters(**slurm_parameters(req, python))
    return ex


def command_executor(folder: str | Path, top: Path, *, python: str | None = None) -> submitit.SlurmExecutor:
    """A private, guarded executor for a job that runs a command (the collect job, a round's next step):
    its folder (made 0700 up to ``top`` here) holds a pickle the job loads, like a cell's."""
    private_dir(Path(folder).parent if "%" in Path(folder).name else Path(folder), top)
    return _PrivateSlurmExecutor(folder=folder, max_num_timeout=0, python=guarded_python(python))


def array_executor(folder: str | Path, req: JobRequest, parallelism: int, *, python: str | None = None,
                   render_only: bool = False) -> submitit.SlurmExecutor:
    """One executor for a job array of cells sharing ``req``'s shape: submit them inside ``ex.batch()``;
    at most ``parallelism`` of its tasks run at once (sbatch ``--array=0-N%parallelism``)."""
    ex = slurm_executor(folder, req, python=python, render_only=render_only)
    ex.update_parameters(array_parallelism=max(1, int(parallelism)))
    return ex


def local_executor(folder: str | Path, req: JobRequest, gpus: Sequence[str] | None = None, *,
                   python: str | None = None) -> submitit.LocalExecutor:
    """The same cell on this machine: same time limit (so requeue-on-timeout works), same tasks and GPUs.

    A multi-node request runs all its tasks here (one machine is one node). The preamble is
    not run: its module/venv lines are for the cluster's nodes. ``gpus`` are the
    CUDA_VISIBLE_DEVICES entries the job gets (its share of this machine's, see
    :func:`aslhpc.slurm.local.next_start`); None = this machine has no GPU: an empty
    CUDA_VISIBLE_DEVICES (submitit's default would list ``0..N-1`` for the request's N, which for a
    huge N overflows the environment: E2BIG). Indices go through submitit's ``visible_gpus``;
    UUID / MIG entries, which it cannot take, are exported by a setup line instead.
    """
    ex = _PrivateLocalExecutor(folder=folder, max_num_timeout=req.max_requeues, python=guarded_python(python))
    params: dict[str, Any] = {"timeout_min": req.time_min, "tasks_per_node": req.nodes * req.tasks_per_node,
                              "gpus_per_node": 0, "signal_delay_s": SIGNAL_DELAY_S}
    if gpus is not None:
        if all(g.isdigit() for g in gpus):
            params.update(gpus_per_node=len(gpus), visible_gpus=tuple(int(g) for g in gpus))
        else:
            params.update(gpus_per_node=0, setup=["export "
                                                  f"CUDA_VISIBLE_DEVICES={shlex.quote(','.join(gpus))}"])
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
