"""The 2020 study's CPU run (Section 6.6, "CPU Performance") as labelled reference data.

The study ran one epoch on the CPU "for verifying how much time does it take": 1383.2038 s for
epoch 1 at batch size 128 (its log shows 600 training batches), train accuracy 39.33 %, validation
67.78 %. ``aslhpc/reference/lad2020_cpu.csv`` transcribes that log line; like lad2020.csv it is a
published figure, never a measurement of ours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from aslhpc.analysis.reference import REFERENCE_LABEL
from aslhpc.errors import AslhpcError
from aslhpc.packaged import shipped_dir

CPU_FILE = "lad2020_cpu.csv"
COLUMNS = ("device", "gpus", "batch_size", "epochs", "exec_time_s", "train_acc", "val_acc")


@dataclass(frozen=True)
class CpuReference:
    """One published CPU run: ``exec_time_s`` over ``epochs`` epochs at ``batch_size``."""

    device: str
    batch_size: int
    epochs: int
    exec_time_s: float
    train_acc: float
    val_acc: float
    source: str
    label: str = REFERENCE_LABEL

    @property
    def epoch_s(self) -> float:
        return self.exec_time_s / self.epochs


def default_cpu_reference_path(results: str | Path = "results") -> Path:
    """``<results>/reference/lad2020_cpu.csv`` (a site's own copy), else the one shipped in the package."""
    own = Path(results) / "reference" / CPU_FILE
    return own if own.is_file() else shipped_dir("reference") / CPU_FILE


def load_cpu_reference(path: str | Path) -> CpuReference:
    """Read the one-row CPU reference; a one-line :class:`AslhpcError` names what is wrong."""
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise AslhpcError(
            f"CPU reference {path} is not a readable CSV ({type(exc).__name__}); fix or replace it"
        ) from None
    missing = [c for c in COLUMNS if c not in raw.columns]
    if missing or raw.empty:
        what = f"lacks {', '.join(missing)}" if missing else "has no rows"
        raise AslhpcError(f"CPU reference {path} {what}; it needs {','.join(COLUMNS)}")
    r = raw.iloc[0]
    try:
        nums = {c: float(r[c]) for c in ("batch_size", "epochs", "exec_time_s", "train_acc", "val_acc")}
    except ValueError:
        raise AslhpcError(f"CPU reference {path}: a figure is not a number; fix the table") from None
    if not all(math.isfinite(v) for v in nums.values()) or nums["epochs"] < 1:
        raise AslhpcError(f"CPU reference {path}: epochs must be >= 1 and every figure finite; fix the table")
    return CpuReference(
        device=str(r["device"]),
        batch_size=int(nums["batch_size"]),
        epochs=int(nums["epochs"]),
        exec_time_s=nums["exec_time_s"],
        train_acc=nums["train_acc"],
        val_acc=nums["val_acc"],
        source=str(r.get("source", path)),
    )
