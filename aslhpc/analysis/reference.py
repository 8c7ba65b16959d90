"""The published 2020 figures (Lad, 2020) as a matrix the same analysis can run on.

``results/reference/lad2020.csv`` transcribes the paper's three tables. Loading it into
the same frame shape as :func:`aslhpc.snapshot.load_matrix` lets ``collect
--reference-only`` recompute the paper's own verdicts from its numbers, and ``collect
--reference`` print a run beside them. They are published figures, never measurements of
ours, so everything that shows them carries :data:`REFERENCE_LABEL`.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from aslhpc.analysis.matrix import finalize_matrix
from aslhpc.errors import AslhpcError
from aslhpc.packaged import reference_table
from aslhpc.states import CellState

REFERENCE_LABEL = "published 2020 reference (not measured by aslhpc)"
REFERENCE_TITLE = "Lad (2020), American Sign Language Recognition using CNNs and Data Parallelism in PyTorch"
REQUIRED_COLUMNS = (
    "batch_size",
    "gpus",
    "gpu0_gb",
    "gpu1_gb",
    "gpu2_gb",
    "gpu3_gb",
    "exec_time_s",
    "data_parallel",
    "train_acc",
    "val_acc",
    "test_acc",
)
#: the paper's fixed setup (section 3 and 5): what derived columns need
PAPER_SPLIT = {"n_train": 76760, "n_val": 8528, "n_test": 1741}
PAPER_EPOCHS = 25
DEFAULT_FILE = Path("reference") / "lad2020.csv"

_YES = {"yes": True, "y": True, "true": True, "1": True, "no": False, "n": False, "false": False, "0": False}


def default_reference_path(results: str | Path = "results") -> Path:
    """``<results>/reference/lad2020.csv`` (a site's own copy), else the table shipped in the package."""
    own = Path(results) / DEFAULT_FILE
    return own if own.is_file() else reference_table()


def load_reference(path: str | Path) -> pd.DataFrame:
    """Read and validate a reference table in the lad2020.csv format.

    Raises a one-line :class:`AslhpcError` naming the file and what is wrong (missing
    columns, non-numeric values, unknown Data Parallel value) so a hand-edited table
    fails loudly instead of skewing verdicts.
    """
    path = Path(path)
    if not path.is_file():
        raise AslhpcError(f"reference file {path} does not exist; pass --reference-file FILE")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise AslhpcError(
            f"reference file {path} is not a readable CSV ({type(exc).__name__}); fix or replace it"
        ) from None
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise AslhpcError(
            f"reference file {path} lacks column{'s' if len(missing) > 1 else ''} {', '.join(missing)}; "
            f"it needs {','.join(REQUIRED_COLUMNS)} (see results/reference/README.md)"
        )
    if raw.empty:
        raise AslhpcError(f"reference file {path} has no rows; add one row per (batch_size, gpus) cell")
    out = pd.DataFrame(index=raw.index)
    for col in REQUIRED_COLUMNS:
        if col == "data_parallel":
            vals = raw[col].str.strip().str.lower()
            bad = ~vals.isin(list(_YES))
            if bad.any():
                i = int(bad.idxmax())
                raise AslhpcError(
                    f"reference file {path} row {i + 2}: data_parallel={raw.at[i, col]!r}; use Yes or No"
                )
            out[col] = vals.map(_YES).astype(bool)
            continue
        text = raw[col].str.strip()
        na = text.str.upper().isin(["NA", "", "NAN"])
        nums = pd.to_numeric(text.where(~na), errors="coerce")
        bad = nums.isna() & ~na
        if col in ("batch_size", "gpus", "exec_time_s"):
            bad |= na
        if bad.any():
            i = int(bad.idxmax())
            raise AslhpcError(
                f"reference file {path} row {i + 2}: {col}={raw.at[i, col]!r} is not a number; fix the table"
            )
        out[col] = nums.astype("float64")
    out["batch_size"] = out["batch_size"].astype("int64")
    out["gpus"] = out["gpus"].astype("int64")
    out["source"] = raw["source"] if "source" in raw.columns else str(path)
    dup = out.duplicated(["batch_size", "gpus"])
    if dup.any():
        i = int(dup.idxmax())
        raise AslhpcError(
            f"reference file {path} row {i + 2}: batch_size={out.at[i, 'batch_size']}, "
            f"gpus={out.at[i, 'gpus']} appears twice; keep one"
        )
    return out.reset_index(drop=True)


def reference_matrix(reference: pd.DataFrame, name: str = "lad2020") -> pd.DataFrame:
    """The reference table as a completed-cells matrix (one run per cell, like the paper)."""
    rows = []
    for r in reference.to_dict("records"):
        g, bs = int(r["gpus"]), int(r["batch_size"])
        row = {
            "experiment": name,
            "cell_id": f"ref-g{g}-b{bs}",
            "gpus": g,
            "batch_size": bs,
            "repeat": 0,
            "strategy": "dp",
            "pipeline": "paper",
            "split_kind": "random",
            "state": CellState.COMPLETED.value,
            "reason": "",
            "in_manifest": True,
            "source": REFERENCE_LABEL,
            "gpus_used": g,
            "device": "cuda",
            "device_names": "Tesla V100-SXM2-32GB",
            "gpu_name": "Tesla V100-SXM2-32GB",
            "data_parallel": bool(r["data_parallel"]),
            "epochs": PAPER_EPOCHS,
            "epochs_planned": PAPER_EPOCHS,
            "exec_time_s": r["exec_time_s"],
            "train_acc": r["train_acc"],
            "val_acc": r["val_acc"],
            "test_acc": r["test_acc"],
            "batches_train": math.ceil(PAPER_SPLIT["n_train"] / bs),
            **PAPER_SPLIT,
        }
        for i in range(4):
            row[f"gpu{i}_gb"] = r.get(f"gpu{i}_gb", math.nan)
        rows.append(row)
    return finalize_matrix(pd.DataFrame.from_records(rows))
