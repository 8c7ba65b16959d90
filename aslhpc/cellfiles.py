"""The files one cell leaves on disk: the contract between trainer, status and collect.

A cell directory (``results/<experiment>/cells/<cell_id>/``) holds:

* ``config.json``    the cell's TrainConfig, written when training starts;
* ``epochs.jsonl``   one JSON line per finished epoch (appended, flushed);
* ``progress.json``  the current epoch/batch, rewritten atomically every few batches;
* ``samples.csv``    the telemetry sampler's time series (flushed as it goes);
* ``checkpoint.pt``  the resumable state after the last finished epoch;
* ``best_model.pt``  the best-validation-loss model (what ``predict`` loads);
* ``result.json``    the final result, written last and atomically: its presence means done;
* ``error.json``     written atomically when training raised: one-line error + traceback.

Readers never need the trainer's code, only these names; status and collect read a cell through
:func:`aslhpc.orchestration.cellrecord.load_cell`, which checks each file once (a damaged one makes
the cell DAMAGED, never a traceback).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CONFIG = "config.json"
EPOCHS = "epochs.jsonl"
PROGRESS = "progress.json"
SAMPLES = "samples.csv"
CHECKPOINT = "checkpoint.pt"
BEST_MODEL = "best_model.pt"
RESULT = "result.json"
ERROR = "error.json"

RESULT_SCHEMA = 1


def config_key(gpus: int, batch_size: int, strategy: str = "dp", split: str = "random") -> str:
    """A configuration's name: its cells' id without the repeat (``g2-b256``, ``g2-b256-ddp``)."""
    parts = [f"g{gpus}", f"b{batch_size}"]
    if strategy != "dp":
        parts.append(strategy)
    if split != "random":
        parts.append(split)
    return "-".join(parts)


def cell_id(gpus: int, batch_size: int, repeat: int = 0, strategy: str = "dp", split: str = "random") -> str:
    """Stable, filesystem- and shell-safe cell name, e.g. ``g2-b256-r0``, ``g2-b256-ddp-r1`` or
    ``g2-b256-blocked-r0``. A default (dp, random) adds nothing, so the ids of experiments written before
    an axis existed stay valid; callers pass ``split`` only for an experiment with a ``splits`` axis."""
    return f"{config_key(gpus, batch_size, strategy, split)}-r{repeat}"


@dataclass(frozen=True)
class CellPaths:
    """Paths of one cell directory; creating the object touches nothing on disk."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def epochs(self) -> Path:
        return self.root / EPOCHS

    @property
    def progress(self) -> Path:
        return self.root / PROGRESS

    @property
    def samples(self) -> Path:
        return self.root / SAMPLES

    @property
    def checkpoint(self) -> Path:
        return self.root / CHECKPOINT

    @property
    def best_model(self) -> Path:
        return self.root / BEST_MODEL

    @property
    def result(self) -> Path:
        return self.root / RESULT

    @property
    def error(self) -> Path:
        return self.root / ERROR

    def error_files(self) -> list[Path]:
        """``error.json`` first, then the other DDP ranks' ``error.rank<r>.json`` by rank: a rank > 0
        that raised under NCCL may be the only one that wrote anything."""
        def rank(p: Path) -> int:
            digits = p.name[len("error.rank"):-len(".json")]
            return int(digits) if digits.isdigit() else 1 << 30
        ranked = sorted(self.root.glob("error.rank*.json"), key=rank)
        return [self.error, *ranked]


def experiment_dir(results: str | Path, experiment: str) -> Path:
    return Path(results) / experiment


def cells_dir(results: str | Path, experiment: str) -> Path:
    return experiment_dir(results, experiment) / "cells"
