"""The experiment matrix as one tidy frame: one row per cell, holes included.

The 2020 study copied numbers from nvidia-smi and training logs by hand; here every completed cell's
result.json (docs/result-files.md) becomes a row, and every cell the manifest expects but that has no
result becomes a *hole* row whose ``state``/``reason`` say why (a :class:`~aslhpc.states.CellState`: FAILED,
RUNNING, PENDING, DAMAGED, NOT_SUBMITTED, ...; the words status shows).
The files are read once, by :mod:`aslhpc.snapshot`; this module only shapes what it read (pure
functions over dicts and frames).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from aslhpc.errors import AslhpcError
from aslhpc.states import CellState

__all__ = ["BASE_COLUMNS", "METRIC_KEYS", "assemble_matrix", "check_split_hashes",
           "finalize_matrix", "gpu_columns", "holes", "missing", "proc_columns", "row_from_result"]

#: metric columns read straight from result.json
METRIC_KEYS = (
    "train_acc",
    "val_acc",
    "test_acc",
    "train_loss",
    "val_loss",
    "test_loss",
    "exec_time_s",
    "data_prep_s",
    "images_per_s",
)

#: the columns every matrix frame has, in order (the gpu<i>_gb, then gpu<i>_proc_gb, columns follow)
BASE_COLUMNS = (
    "experiment",
    "cell_id",
    "gpus",
    "batch_size",
    "repeat",
    "seed",
    "strategy",
    "pipeline",
    "model",
    "model_params",
    "model_gflops",
    "split_kind",
    "split_seed",
    "split_hash",
    "state",
    "reason",
    "in_manifest",
    "source",
    "gpus_used",
    "device",
    "device_names",
    "data_parallel",
    "amp",
    "world_size",
    "epochs",
    "epochs_planned",
    "max_steps",
    "best_epoch",
    *METRIC_KEYS,
    "extra_test_acc",
    "extra_test_n",
    "n_train",
    "n_val",
    "n_test",
    "batches_train",
    "nvml",
    "nvml_reason",
    "gpu_mem_total_gb",
    "torch_reserved_gb",
    "data_device_gb",
    "host",
    "gpu_name",
    "driver",
    "cuda",
    "cudnn",
    "torch",
    "python",
    "aslhpc_version",
    "slurm_job_id",
    "slurm_partition",
    "slurm_nodelist",
    "slurm_restarts",
    "started_at",
    "attempt_started_at",
    "finished_at",
)


def gpu_columns(n: int) -> list[str]:
    """``gpu0_gb`` .. ``gpu{n-1}_gb``: per-GPU peak memory, one column per GPU slot.

    The device-wide NVML peak (``telemetry.gpus[i].mem_peak_gb``): everything on the GPU,
    including, in the fast pipeline, the dataset cached there (``data_device_gb``)."""
    return [f"gpu{i}_gb" for i in range(n)]


def proc_columns(n: int) -> list[str]:
    """``gpu0_proc_gb`` .. : per-GPU peak memory of the cell's own process (``proc_mem_peak_gb``),
    what nvidia-smi's process list shows and what the 2020 paper's "GPU n (GB)" columns were."""
    return [f"gpu{i}_proc_gb" for i in range(n)]


def _num(value: Any) -> float:
    """A float, or NaN for a value the writer left out (null or absent: older/newer trainers)."""
    return math.nan if value is None else float(value)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return "; ".join(str(v) for v in value)
    return str(value)


def _devices(names: list[str] | None) -> str | None:
    """["V100", "V100"] -> "2 × V100": the report's provenance column stays narrow."""
    if not names:
        return None
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    return "; ".join(n if c == 1 else f"{c} × {n}" for n, c in counts.items())


def _gpu_memory(tel: Mapping[str, Any], used: int | None) -> dict[str, float]:
    """Per-GPU peak memory, by position in the telemetry list (= logical device i of the cell).

    No NVML -> no columns (NaN: not measured); slots past ``gpus_used`` -> NaN (unused, "NA" in tables)."""
    row: dict[str, float] = {}
    if not tel.get("nvml"):
        return row
    for i, g in enumerate(tel.get("gpus") or []):
        if used is not None and i >= used:
            break
        g = g or {}
        row[f"gpu{i}_gb"] = _num(g.get("mem_peak_gb"))
        row[f"gpu{i}_proc_gb"] = _num(g.get("proc_mem_peak_gb"))
        if i == 0:
            row["gpu_mem_total_gb"] = _num(g.get("mem_total_gb"))
    return row


def _provenance(res: Mapping[str, Any]) -> dict[str, Any]:
    """Host, versions and SLURM facts: result.json's ``versions``/``slurm``, else its ``provenance``."""
    prov = res.get("provenance") or {}
    vers = res.get("versions") or {}
    slurm = res.get("slurm") or prov.get("slurm") or {}
    names = res.get("device_names") or prov.get("gpu_models")
    return {
        "torch": _text(vers.get("torch") or prov.get("torch")),
        "cuda": _text(vers.get("cuda") or prov.get("cuda")),
        "cudnn": _text(vers.get("cudnn") or prov.get("cudnn")),
        "python": _text(vers.get("python") or prov.get("python")),
        "aslhpc_version": _text(vers.get("aslhpc")),
        "host": _text(res.get("host") or prov.get("hostname")),
        "gpu_name": _text(sorted(set(names))) if names else None,
        "driver": _text(prov.get("driver_version")),
        "slurm_job_id": _text(slurm.get("job_id")),
        "slurm_partition": _text(slurm.get("partition")),
        "slurm_nodelist": _text(slurm.get("nodelist")),
        "slurm_restarts": _num(slurm.get("restarts")),
    }


def row_from_result(res: Mapping[str, Any]) -> dict[str, Any]:
    """Flatten one checked result.json (docs/result-files.md) into a row."""
    cfg = res.get("config") or {}
    split = res.get("split") or {}
    tel = res.get("telemetry") or {}
    batches = res.get("batches") or {}
    extra = res.get("extra_test") or {}
    row: dict[str, Any] = {
        "experiment": res.get("experiment"),
        "gpus": _num(res.get("gpus_requested", cfg.get("gpus"))),
        "batch_size": _num(cfg.get("batch_size")),
        "seed": _num(cfg.get("seed")),
        "strategy": res.get("strategy") or cfg.get("strategy"),
        "pipeline": res.get("pipeline") or cfg.get("pipeline"),
        "split_kind": split.get("kind") or cfg.get("split"),
        "split_seed": _num(split.get("seed")),
        "split_hash": split.get("hash"),
        "gpus_used": _num(res.get("gpus_used")),
        "device": res.get("device"),
        "device_names": _devices(res.get("device_names")),
        "data_parallel": bool(res["data_parallel"]) if "data_parallel" in res else None,
        "amp": _text(res.get("amp")),
        "world_size": _num(res.get("world_size")),
        "epochs": _num(res.get("epochs")),
        "epochs_planned": _num(cfg.get("epochs")),
        # >0: each epoch stopped after this many batches (--max-steps), whatever the batch size
        "max_steps": _num(cfg.get("max_steps")),
        "best_epoch": _num(res.get("best_epoch")),
        "extra_test_acc": _num(extra.get("acc")),
        "extra_test_n": _num(extra.get("n")),
        "n_train": _num(split.get("train")),
        "n_val": _num(split.get("val")),
        "n_test": _num(split.get("test")),
        "batches_train": _num(batches.get("train")),
        "nvml": bool(tel["nvml"]) if "nvml" in tel else None,
        "nvml_reason": _text(tel.get("reason")),
        "started_at": res.get("started_at"),
        "attempt_started_at": res.get("attempt_started_at"),  # absent in older results: started_at stands in
        "finished_at": res.get("finished_at"),
        **_provenance(res),
        **{key: _num(res.get(key)) for key in METRIC_KEYS},
        **_gpu_memory(tel, res.get("gpus_used")),
    }
    torch_mem = [t for t in tel.get("torch") or [] if t]
    reserved = [t["max_reserved_gb"] for t in torch_mem if t.get("max_reserved_gb") is not None]
    if reserved:
        row["torch_reserved_gb"] = sum(reserved)
    # the fast pipeline's cached dataset held on the GPU (0 when it stayed in host memory)
    row["data_device_gb"] = _num(tel.get("data_device_gb"))
    model = res.get("model") if isinstance(res.get("model"), dict) else {}
    row["model"] = str(model.get("spec") or (res.get("config") or {}).get("model") or "ladnet")
    row["model_params"] = _num(model.get("params"))
    flops = model.get("flops_per_image")
    row["model_gflops"] = _num(flops) / 1e9 if flops else math.nan
    return row


def missing(value: Any) -> bool:
    """None or NaN: a value the writer left out."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def assemble_matrix(rows: list[dict[str, Any]], experiment: str, spec: Mapping[str, Any],
                    axis_splits: Mapping[str, str], where: Path, *,
                    allow_mixed_splits: bool = False) -> pd.DataFrame:
    """The typed matrix frame from one row per cell (:func:`row_from_result` or a hole's identity, with
    ``state``/``reason``/``cell_id``), the manifest's ``spec`` and, on a splits axis, each cell's split.

    A row whose GPU count / batch size nothing tells cannot be placed in any table: it is listed in
    ``frame.attrs["ignored"]`` (and in the report), not silently dropped."""
    for row in rows:
        row["experiment"] = row.get("experiment") or experiment

    def placeable(r: dict[str, Any]) -> bool:
        return all(not missing(r.get(k)) for k in ("gpus", "batch_size"))

    ignored = [f"{r['cell_id']} ({r['state']}: {r['reason']})" for r in rows if not placeable(r)]
    rows = [r for r in rows if placeable(r)]
    if not rows:
        raise AslhpcError(
            f"no recognisable cells in {where} (ignored: {'; '.join(ignored[:3])}); "
            "run the cells through submit, which records them in manifest.json"
        )
    frame = pd.DataFrame.from_records(rows)
    # Holes inherit the pipeline/split of their siblings so they land in the same table row; on a splits
    # axis a hole's split is the one its cell was given.
    if axis_splits:
        known = frame["split_kind"] if "split_kind" in frame else pd.Series(None, index=frame.index)
        frame["split_kind"] = known.where(known.notna(), frame["cell_id"].map(dict(axis_splits)))
    for col, spec_key in (("pipeline", "pipeline"), ("split_kind", "split"), ("strategy", "strategy")):
        if col not in frame:
            frame[col] = None
        default = _mode(frame.loc[frame["state"] == CellState.COMPLETED, col]) or spec.get(spec_key)
        if default is None:
            default = {"strategy": "dp", "split_kind": "random", "pipeline": "unknown"}[col]
        frame[col] = frame[col].where(frame[col].notna(), default)
    frame = finalize_matrix(frame)
    frame.attrs["ignored"] = ignored
    if not allow_mixed_splits:
        check_split_hashes(frame)
    return frame


def _mode(series: pd.Series) -> Any:
    s = series.dropna()
    if s.empty:
        return None
    return s.value_counts().index[0]


def finalize_matrix(frame: pd.DataFrame) -> pd.DataFrame:
    """Give a raw frame the full, typed column set (shared by the reference loader)."""
    max_gpus = int(frame["gpus"].max()) if len(frame) else 0
    present = [c for c in frame.columns if re.fullmatch(r"gpu\d+_gb", c)]
    n_gpu_cols = max(max_gpus, max((int(c[3:-3]) + 1 for c in present), default=0))
    columns = list(BASE_COLUMNS) + gpu_columns(n_gpu_cols) + proc_columns(n_gpu_cols)
    frame = frame.reindex(columns=columns)
    for col in ("gpus", "batch_size"):
        frame[col] = frame[col].astype("int64")
    frame["repeat"] = frame["repeat"].fillna(0).astype("int64")
    numeric = [c for c in columns if c.endswith("_gb") or c in METRIC_KEYS] + [
        "gpus_used",
        "seed",
        "split_seed",
        "world_size",
        "epochs",
        "epochs_planned",
        "max_steps",
        "best_epoch",
        "extra_test_acc",
        "extra_test_n",
        "n_train",
        "n_val",
        "n_test",
        "batches_train",
        "slurm_restarts",
    ]
    for col in numeric:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    frame["reason"] = frame["reason"].fillna("")
    frame["in_manifest"] = frame["in_manifest"].fillna(False).astype(bool)
    return frame.sort_values(
        ["batch_size", "gpus", "strategy", "pipeline", "split_kind", "repeat", "cell_id"]
    ).reset_index(drop=True)


def check_split_hashes(frame: pd.DataFrame) -> None:
    """Refuse completed cells of one split kind that were trained on different splits.

    Comparing accuracies across cells only means something if they saw the same
    train/val/test images; a different ``split.hash`` means a different --split/--seed or
    a different dataset. (random vs blocked cells differ by design and are compared
    apart, so the check is per split kind.)
    """
    done = frame[(frame["state"] == CellState.COMPLETED) & frame["split_hash"].notna()]
    for kind, group in done.groupby("split_kind", sort=True):
        hashes = group.groupby("split_hash", sort=False)["cell_id"].apply(list)
        if len(hashes) <= 1:
            continue
        parts = []
        for h, ids in hashes.items():
            shown = ", ".join(ids[:3]) + (f" +{len(ids) - 3} more" if len(ids) > 3 else "")
            parts.append(f"{str(h)[:12]} ({shown})")
        raise AslhpcError(
            f"completed {kind}-split cells were trained on different splits: "
            + "; ".join(parts)
            + "; re-run them with the same --split/--seed, or pass --allow-mixed-splits"
        )


def holes(frame: pd.DataFrame) -> pd.DataFrame:
    """The cells without a usable result, with state and reason: what the report must show."""
    cols = ["cell_id", "gpus", "batch_size", "repeat", "strategy", "state", "reason"]
    return frame.loc[frame["state"] != CellState.COMPLETED, cols].reset_index(drop=True)
