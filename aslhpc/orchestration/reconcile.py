"""Adopt the jobs of interrupted submissions, so that a cell never gets a second live job: each backend
settles its own intents (:meth:`aslhpc.orchestration.backend.Backend.adopt`; how, in
:mod:`aslhpc.orchestration.adoption`).

:func:`reconcile_manifest` is submit's (in memory, under its lock); :func:`reconcile` is the same for
``status``: it takes the submit lock without waiting (a submit in progress records its own jobs) and
saves what it adopted.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from aslhpc.orchestration.adoption import Reconciled, find_local_controllers, submit_lock
from aslhpc.orchestration.adoption import array_folder as array_folder  # re-exported: older callers' names
from aslhpc.orchestration.adoption import cell_folder as cell_folder
from aslhpc.orchestration.adoption import local_folder as local_folder
from aslhpc.orchestration.backend import BACKENDS, Adopting
from aslhpc.orchestration.manifest import Manifest, load_manifest
from aslhpc.slurm.accounting import Runner, run_slurm_command


def reconcile_manifest(manifest: Manifest, experiment_dir: Path, *, run: Runner = run_slurm_command,
                       local_jobs: Callable[[str], list[int]] = find_local_controllers,
                       whole_queue: bool = False) -> Reconciled:
    """Settle every intent in ``manifest`` (in memory; the caller saves): each backend its own.

    ``run`` (SLURM's commands) and ``local_jobs`` (this machine's controllers) are replaceable in tests;
    ``whole_queue`` (submit on SLURM): a queue also gives back live jobs the manifest lost."""
    done = Reconciled()
    pending = manifest.pending()
    how = Adopting(run, local_jobs, whole_queue)
    for backend in sorted(BACKENDS.values(), key=lambda b: b.queued):  # this machine's first: no controller
        mine = {cid: i for cid, i in pending.items() if i.cluster == backend.name}
        backend.adopt(manifest, experiment_dir, mine, done, how)
    return done


def reconcile(manifest_path: str | Path, *, run: Runner = run_slurm_command) -> Reconciled:
    """For ``status``: adopt the jobs of interrupted submissions and save the manifest.

    Does nothing while a submit runs (it holds the lock and records its own jobs), nor where there is
    no manifest or no intent. Where the manifest cannot be written (another user's results), the
    adoption is not saved and :attr:`Reconciled.note` says so; a damaged manifest raises ConfigError."""
    path = Path(manifest_path)
    manifest = load_manifest(path)
    if manifest is None or not manifest.pending():
        return Reconciled()
    try:
        with submit_lock(path.parent) as held:
            if not held:
                return Reconciled(busy=True)
            manifest = load_manifest(path)  # again, under the lock
            if manifest is None or not manifest.pending():
                return Reconciled()
            done = reconcile_manifest(manifest, path.parent, run=run)
            if done.changed:
                manifest.save(path)
            return done
    except OSError as exc:
        return Reconciled(note=f"interrupted submissions in {path} not reconciled ({exc.strerror or exc}); "
                               "run submit as the experiment's owner")
