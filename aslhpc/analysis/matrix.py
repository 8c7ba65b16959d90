"""Load an experiment's cells into one tidy frame: one row per cell, holes included.

The 2020 study copied numbers from nvidia-smi and training logs by hand; here every
``cells/*/result.json`` (docs/design.md, schema 1) becomes a row, and every cell the
manifest expects but that has no result becomes a *hole* row whose ``state``/``reason``
say why (failed, running, pending, corrupt, ...). Nothing is dropped silently and no
file content can crash the loader: a bad file is a hole with a reason.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from aslhpc import cellfiles
from aslhpc.atomic import read_json
from aslhpc.errors import AslhpcError
from aslhpc.orchestration.cellstate import error_is_current

COMPLETED = "completed"
#: progress older than this (seconds) without SLURM information reads as "incomplete", not "running".
STALE_PROGRESS_S = 1800.0

_CELL_RE = re.compile(r"^g(?P<gpus>\d+)-b(?P<bs>\d+)(?:-(?P<strategy>[a-z0-9]+))?-r(?P<repeat>\d+)$")

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

#: why a DDP cell whose ranks diverged is a hole (result.json ``ranks.in_sync`` false)
RANKS_DIVERGED = "DDP ranks ended with different weights (ranks.in_sync false)"

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
    """A float or NaN: result files written by older/newer trainers may lack a key."""
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _int(value: Any) -> float:
    """Integers travel as floats (NaN-able) until the frame is built."""
    return _num(value)


def _first(mapping: Any, *keys: str) -> Any:
    """The first present, non-empty value among ``keys``, searched one level deep too.

    ``collect_provenance()`` is owned by another module and may nest (``{"gpu": {...}}``);
    the report only needs a few well-known facts, so search leniently.
    """
    if not isinstance(mapping, Mapping):
        return None
    for key in keys:
        value = mapping.get(key)
        if value not in (None, "", [], {}):
            return value
    for value in mapping.values():
        if isinstance(value, Mapping):
            for key in keys:
                inner = value.get(key)
                if inner not in (None, "", [], {}):
                    return inner
    return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return "; ".join(str(v) for v in value)
    return str(value)


def _devices(names: Any) -> str | None:
    """["V100", "V100"] -> "2 × V100": the report's provenance column stays narrow."""
    if not isinstance(names, list | tuple) or not names:
        return _text(names) if names else None
    counts: dict[str, int] = {}
    for n in names:
        counts[str(n)] = counts.get(str(n), 0) + 1
    return "; ".join(n if c == 1 else f"{c} × {n}" for n, c in counts.items())


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _identity_from_id(cell: str) -> dict[str, Any]:
    m = _CELL_RE.match(cell)
    if not m:
        return {}
    return {
        "gpus": int(m["gpus"]),
        "batch_size": int(m["bs"]),
        "repeat": int(m["repeat"]),
        "strategy": m["strategy"] or "dp",
    }


def _row_from_result(res: dict[str, Any]) -> dict[str, Any]:
    """Flatten one result.json into a row; missing keys become NaN/None, never errors."""
    cfg = res.get("config") or {}
    split = res.get("split") or {}
    tel = res.get("telemetry") or {}
    prov = res.get("provenance") or {}
    vers = res.get("versions") or {}
    slurm = res.get("slurm") or {}
    batches = res.get("batches") or {}
    extra = res.get("extra_test") or {}
    gpus_used = res.get("gpus_used")
    row: dict[str, Any] = {
        "experiment": res.get("experiment"),
        "gpus": _int(res.get("gpus_requested", cfg.get("gpus"))),
        "batch_size": _int(cfg.get("batch_size")),
        "seed": _int(cfg.get("seed")),
        "strategy": res.get("strategy") or cfg.get("strategy"),
        "pipeline": res.get("pipeline") or cfg.get("pipeline"),
        "split_kind": split.get("kind") or cfg.get("split"),
        "split_seed": _int(split.get("seed")),
        "split_hash": split.get("hash"),
        "gpus_used": _int(gpus_used),
        "device": res.get("device"),
        "device_names": _devices(res.get("device_names")),
        "data_parallel": bool(res["data_parallel"]) if "data_parallel" in res else None,
        "amp": _text(res.get("amp")),
        "world_size": _int(res.get("world_size")),
        "epochs": _int(res.get("epochs")),
        "epochs_planned": _int(cfg.get("epochs")),
        # >0: each epoch stopped after this many batches (--max-steps), whatever the batch size
        "max_steps": _int(cfg.get("max_steps")),
        "best_epoch": _int(res.get("best_epoch")),
        "extra_test_acc": _num(extra.get("acc")) if isinstance(extra, Mapping) else math.nan,
        "extra_test_n": _int(extra.get("n")) if isinstance(extra, Mapping) else math.nan,
        "n_train": _int(split.get("train")),
        "n_val": _int(split.get("val")),
        "n_test": _int(split.get("test")),
        "batches_train": _int(batches.get("train")) if isinstance(batches, Mapping) else math.nan,
        "nvml": bool(tel.get("nvml")) if isinstance(tel, Mapping) and "nvml" in tel else None,
        "nvml_reason": _text(tel.get("reason")) if isinstance(tel, Mapping) else None,
        "started_at": res.get("started_at"),
        "attempt_started_at": res.get("attempt_started_at"),  # absent in older results: started_at stands in
        "finished_at": res.get("finished_at"),
        "torch": _text(vers.get("torch")),
        "cuda": _text(vers.get("cuda") or _first(prov, "cuda", "cuda_version")),
        "cudnn": _text(vers.get("cudnn") or _first(prov, "cudnn", "cudnn_version")),
        "python": _text(vers.get("python")),
        "aslhpc_version": _text(vers.get("aslhpc")),
        "host": _text(res.get("host") or _first(prov, "hostname", "host", "node", "machine")),
        "gpu_name": _text(sorted({str(n) for n in res["device_names"]}))
        if isinstance(res.get("device_names"), list) and res["device_names"]
        else _text(_first(prov, "gpu_name", "gpu", "gpus")),
        "driver": _text(_first(prov, "driver", "driver_version", "nvidia_driver")),
    }
    for key in METRIC_KEYS:
        row[key] = _num(res.get(key))
    if isinstance(slurm, Mapping):
        row["slurm_job_id"] = _text(slurm.get("job_id"))
        row["slurm_partition"] = _text(slurm.get("partition"))
        row["slurm_nodelist"] = _text(slurm.get("nodelist"))
        row["slurm_restarts"] = _int(slurm.get("restarts"))
    # Per-GPU peak memory, by position in the telemetry list (= logical device i of the cell).
    # No NVML -> NaN (not measured); slots past gpus_used -> NaN (unused, "NA" in tables).
    gpus_list = tel.get("gpus") if isinstance(tel, Mapping) else None
    used = int(gpus_used) if isinstance(gpus_used, int | float) and not isinstance(gpus_used, bool) else None
    if tel.get("nvml") if isinstance(tel, Mapping) else False:
        for i, g in enumerate(gpus_list or []):
            if used is not None and i >= used:
                break
            if isinstance(g, Mapping):
                row[f"gpu{i}_gb"] = _num(g.get("mem_peak_gb"))
                row[f"gpu{i}_proc_gb"] = _num(g.get("proc_mem_peak_gb"))
                if i == 0:
                    row["gpu_mem_total_gb"] = _num(g.get("mem_total_gb"))
    torch_mem = tel.get("torch") if isinstance(tel, Mapping) else None
    if isinstance(torch_mem, list) and torch_mem:
        vals = [_num(t.get("max_reserved_gb")) for t in torch_mem if isinstance(t, Mapping)]
        vals = [v for v in vals if not math.isnan(v)]
        row["torch_reserved_gb"] = sum(vals) if vals else math.nan
    # the fast pipeline's cached dataset held on the GPU (0 when it stayed in host memory)
    row["data_device_gb"] = _num(tel.get("data_device_gb")) if isinstance(tel, Mapping) else math.nan
    return row


def _ranks_diverged(res: Mapping[str, Any]) -> bool:
    """DDP ranks that ended with different weights (``ranks.in_sync`` false); older results lack the key."""
    ranks = res.get("ranks")
    return isinstance(ranks, Mapping) and ranks.get("in_sync") is False


def _last_attempt(entry: Mapping[str, Any]) -> Mapping[str, Any] | None:
    attempts = entry.get("attempts") or []
    last = attempts[-1] if attempts else None
    return last if isinstance(last, Mapping) else None


def _hole_state(paths: cellfiles.CellPaths, entry: Mapping[str, Any], now: float) -> tuple[str, str]:
    """State of a cell without a usable result.json, from its files alone (no SLURM answer).

    An error.json counts only if it belongs to the live attempt (:func:`error_is_current`):
    after ``submit --retry-failed`` the previous attempt's error says nothing about the new job.
    """
    if paths.error.exists():
        try:
            err = read_json(paths.error)
        except (OSError, ValueError) as exc:
            return "failed", f"error.json present but unreadable ({type(exc).__name__})"
        err = err if isinstance(err, Mapping) else {}
        if error_is_current(str(err.get("time") or ""), _last_attempt(entry)):
            return "failed", _one_line(err.get("error") or "error.json has no 'error' line")
    progress_files = [p for p in (paths.progress, paths.epochs) if p.exists()]
    if progress_files:
        newest = max(p.stat().st_mtime for p in progress_files)
        age = now - newest
        where = ""
        try:
            prog = read_json(paths.progress) if paths.progress.exists() else None
            if isinstance(prog, Mapping) and prog.get("epoch") is not None:
                where = (
                    f"epoch {prog.get('epoch')}/{prog.get('epochs', '?')}, {prog.get('phase', 'training')}"
                )
        except (OSError, ValueError):
            where = "progress.json unreadable"
        if not where:
            where = "epochs.jsonl present"
        ago = f"{age / 60:.0f} min ago" if age < 7200 else f"{age / 3600:.1f} h ago"
        if age > STALE_PROGRESS_S:
            return "incomplete", f"no result.json; last progress {ago} ({where}); job may have died"
        return "running", f"{where}; updated {ago}"
    last = _last_attempt(entry)
    if entry.get("attempts"):
        return "pending", f"submitted as job {(last or {}).get('job_id', '?')}, no output yet"
    if paths.root.exists():
        return "pending", "cell directory exists but holds no result, error or progress"
    return "missing", "in the manifest but never submitted (no attempts, no files)"


def _status_state(state: str, reason: str) -> tuple[str, str]:
    """A state from :func:`aslhpc.orchestration.cellstate.experiment_status` in the matrix's lower-case words."""
    state = str(state).lower()
    if state == COMPLETED:  # only a readable result.json makes a cell completed
        return "incomplete", f"status says COMPLETED but there is no usable result.json ({reason})"
    if state == "not_submitted":
        return "missing", reason or "in the manifest but never submitted"
    return state, str(reason or "")


def _read_manifest(exp_dir: Path) -> dict[str, Any] | None:
    path = exp_dir / "manifest.json"
    if not path.exists():
        return None
    try:
        manifest = read_json(path)
    except (OSError, ValueError) as exc:
        raise AslhpcError(
            f"{path} is unreadable ({type(exc).__name__}); restore it or re-run submit for this experiment"
        ) from None
    if not isinstance(manifest, Mapping):
        raise AslhpcError(f"{path} is not a JSON object; restore it or re-run submit for this experiment")
    return dict(manifest)


def _cell_dirs(exp_dir: Path, manifest: Mapping[str, Any] | None) -> dict[str, tuple[Path, dict[str, Any]]]:
    """cell_id -> (directory, manifest entry or {}): manifest cells first, then any extra dirs."""
    out: dict[str, tuple[Path, dict[str, Any]]] = {}
    cells = (manifest or {}).get("cells") or {}
    if isinstance(cells, Mapping):
        for cid, entry in cells.items():
            entry = dict(entry) if isinstance(entry, Mapping) else {}
            rel = entry.get("out_dir") or f"cells/{cid}"
            out[str(cid)] = (exp_dir / rel, entry)
    cells_root = exp_dir / "cells"
    if cells_root.is_dir():
        for d in sorted(cells_root.iterdir()):
            if d.is_dir() and d.name not in out and not d.name.startswith("."):
                out[d.name] = (d, {})
    return out


def _config_identity(paths: cellfiles.CellPaths) -> dict[str, Any]:
    """pipeline/split of a hole from its config.json, when training got that far."""
    try:
        cfg = read_json(paths.config)
    except (OSError, ValueError):
        return {}
    if not isinstance(cfg, Mapping):
        return {}
    return {
        k: v
        for k, v in {
            "pipeline": cfg.get("pipeline"),
            "split_kind": cfg.get("split"),
            "seed": _int(cfg.get("seed")),
        }.items()
        if v is not None
    }


def load_matrix(
    exp_dir: str | Path,
    states: Mapping[str, tuple[str, str]] | None = None,
    *,
    allow_mixed_splits: bool = False,
    now: float | None = None,
) -> pd.DataFrame:
    """Read manifest.json (if any) and every ``cells/*/result.json`` into one frame.

    One row per cell (completed or hole), columns :data:`BASE_COLUMNS` plus
    ``gpu0_gb``..``gpu{max_gpus-1}_gb``. ``states`` maps cell_id -> (state, reason) as
    :func:`aslhpc.orchestration.cellstate.experiment_status` resolved them (``collect.live_states``: files
    first, then SLURM, as docs/design.md orders it); a cell without a usable result.json
    takes that state, lower-cased. Cells absent from ``states`` (or all cells, when it is
    None) get their state from their files alone. Completed cells that
    were trained on different splits of the same kind are refused (see
    :func:`check_split_hashes`) unless ``allow_mixed_splits``.
    """
    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        raise AslhpcError(f"experiment directory {exp_dir} does not exist; check --results/--experiment")
    manifest = _read_manifest(exp_dir)
    cells = _cell_dirs(exp_dir, manifest)
    if not cells:
        raise AslhpcError(
            f"no cells in {exp_dir} (no manifest cells, no cells/*/); submit the experiment first"
        )
    spec = (manifest or {}).get("spec") or {}
    spec = spec if isinstance(spec, Mapping) else {}
    experiment = (manifest or {}).get("experiment") or exp_dir.name
    now = time.time() if now is None else now
    states = states or {}

    rows: list[dict[str, Any]] = []
    for cid, (root, entry) in cells.items():
        paths = cellfiles.CellPaths(root)
        ident = {
            **_identity_from_id(cid),
            **{k: entry[k] for k in ("gpus", "batch_size", "repeat", "strategy") if k in entry},
        }
        row: dict[str, Any] | None = None
        if paths.result.exists():
            try:
                res = read_json(paths.result)
                if not isinstance(res, Mapping):
                    raise ValueError("not a JSON object")
                if res.get("status", COMPLETED) != COMPLETED:
                    raise ValueError(f"status is {res.get('status')!r}, not 'completed'")
                row = _row_from_result(dict(res))
                # the figures stay in cells.csv, but a run whose ranks diverged is no result
                row.update({"state": "failed", "reason": RANKS_DIVERGED} if _ranks_diverged(res)
                           else {"state": COMPLETED, "reason": ""})
                # identity: the manifest/cell-id is authoritative where the result lacks it
                for k, v in ident.items():
                    if row.get(k) is None or (isinstance(row.get(k), float) and math.isnan(row[k])):
                        row[k] = v
                row["repeat"] = ident.get("repeat", math.nan)
            except (OSError, ValueError) as exc:
                row = {
                    "state": "corrupt",
                    "reason": _one_line(f"result.json unreadable: {type(exc).__name__}: {exc}"),
                }
        if row is None:
            if cid in states:  # status already put the cell's files first: take its state as it is
                state, reason = _status_state(*states[cid])
                if not reason:
                    reason = _hole_state(paths, entry, now)[1]
            else:
                state, reason = _hole_state(paths, entry, now)
            row = {"state": state, "reason": _one_line(reason)}
        if row["state"] != COMPLETED:
            row.update(ident)
            row.update(_config_identity(paths))
            if "seed" in entry:
                row["seed"] = _int(entry["seed"])
        row["cell_id"] = cid
        row["in_manifest"] = bool(entry)
        row["source"] = "aslhpc"
        if not row.get("experiment"):
            row["experiment"] = experiment
        rows.append(row)

    # A directory whose GPU count / batch size nothing tells (not in the manifest, no readable
    # result, name not g<gpus>-b<batch>-r<repeat>) cannot be placed in any table: it is
    # listed in ``frame.attrs["ignored"]`` (and in the report), not silently dropped.
    def placeable(r: dict[str, Any]) -> bool:
        return all(isinstance(r.get(k), int | float) and not math.isnan(r[k]) for k in ("gpus", "batch_size"))

    ignored = [f"{r['cell_id']} ({r['state']}: {r['reason']})" for r in rows if not placeable(r)]
    rows = [r for r in rows if placeable(r)]
    if not rows:
        raise AslhpcError(
            f"no recognisable cells in {exp_dir} (ignored: {'; '.join(ignored[:3])}); "
            "cell directories are named g<gpus>-b<batch>-r<repeat> by submit"
        )
    frame = pd.DataFrame.from_records(rows)
    # Holes inherit the pipeline/split of their siblings so they land in the same table row.
    for col, spec_key in (("pipeline", "pipeline"), ("split_kind", "split"), ("strategy", "strategy")):
        if col not in frame:
            frame[col] = None
        default = _mode(frame.loc[frame["state"] == COMPLETED, col]) or spec.get(spec_key)
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
    done = frame[(frame["state"] == COMPLETED) & frame["split_hash"].notna()]
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
    return frame.loc[frame["state"] != COMPLETED, cols].reset_index(drop=True)


def find_experiments(results: str | Path) -> list[str]:
    """Experiment names under ``results`` (directories holding a manifest.json), sorted."""
    root = Path(results)
    if not root.is_dir():
        return []
    return sorted(d.name for d in root.iterdir() if d.is_dir() and (d / "manifest.json").is_file())
