"""Per-image comparisons: McNemar's exact test between configurations tested on the same images, and
the block bootstrap interval of a blocked-split accuracy.

Both need each cell's ``test_predictions.csv`` (written by the trainer: image, label, predicted, correct),
read once by :mod:`aslhpc.snapshot` and parsed by :func:`parse_predictions` into one frame per cell with
``frame`` (the number in the image's file name, the video frame). The rest are pure functions over
those frames.

The leakage gap (random minus blocked test accuracy) gets no McNemar test: the two splits test on
different images (the blocked split holds out whole runs of frames), so there are no pairs; its
interval stays Newcombe's (independent samples), as :mod:`aslhpc.analysis.leakage` says.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from aslhpc.analysis.stats import MCNEMAR, block_bootstrap_interval, frame_blocks, mcnemar_exact
from aslhpc.states import CellState

#: a configuration apart from its batch size: the series H3 walks along
SERIES_KEYS = ["gpus", "strategy", "pipeline", "split_kind"]
PAIRED_COLUMNS = [*SERIES_KEYS, "batch_a", "batch_b", "repeat", "acc_a", "acc_b", "only_a", "only_b", "n",
                  "p_value", "test"]


#: the trainer's per-image file in a cell directory, and the columns it has
PREDICTIONS_FILE = "test_predictions.csv"
PREDICTION_COLUMNS = ("image", "label", "predicted", "correct")
#: the largest predictions file read (87,029 images at ~40 bytes a line is ~4 MB)
PREDICTIONS_CAP = 64 << 20


def parse_predictions(text: str) -> pd.DataFrame | None:
    """One cell's ``test_predictions.csv`` text as a frame (``correct`` bool, ``frame`` from the file name);
    None when it is not what the trainer writes (a paired test then falls back to the intervals)."""
    try:
        frame = pd.read_csv(io.StringIO(text), dtype={"image": str})
    except (ValueError, pd.errors.ParserError):
        return None
    if tuple(frame.columns) != PREDICTION_COLUMNS or frame.empty:
        return None
    correct = pd.to_numeric(frame["correct"], errors="coerce")
    if not correct.isin([0, 1]).all():
        return None
    digits = frame["image"].map(lambda name: re.findall(r"\d+", Path(str(name)).stem))
    frame["frame"] = digits.map(lambda d: int(d[-1]) if d else -1)
    frame["correct"] = correct.astype(bool)
    return frame


def _aligned(a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.Series, pd.Series] | None:
    """The two cells' ``correct`` on the same images, in one order; None when the image sets differ."""
    ia, ib = a.set_index("image")["correct"], b.set_index("image")["correct"]
    if ia.index.has_duplicates or ib.index.has_duplicates or set(ia.index) != set(ib.index):
        return None
    return ia.sort_index(), ib.reindex(ia.sort_index().index)


def paired_table(cells: pd.DataFrame, predictions: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """McNemar's exact test between consecutive batch sizes of one series (same GPU count, strategy,
    pipeline, split), repeat r against repeat r, where both cells saved predictions on the same images."""
    done = cells[(cells["state"] == CellState.COMPLETED) & cells["cell_id"].isin(list(predictions))]
    rows = []
    for key, ser in done.groupby(SERIES_KEYS, sort=True, dropna=False):
        for rep, grp in ser.groupby("repeat", sort=True):
            grp = grp.sort_values("batch_size")
            ids, sizes = list(grp["cell_id"]), [int(b) for b in grp["batch_size"]]
            for (ca, ba), (cb, bb) in zip(zip(ids, sizes, strict=True), zip(ids[1:], sizes[1:], strict=True),
                                          strict=False):
                pair = _aligned(predictions[ca], predictions[cb])
                if pair is None:
                    continue
                t = mcnemar_exact(pair[0].to_numpy(), pair[1].to_numpy())
                rows.append({**dict(zip(SERIES_KEYS, key, strict=True)), "batch_a": ba, "batch_b": bb,
                             "repeat": int(rep), "acc_a": 100.0 * float(pair[0].mean()),
                             "acc_b": 100.0 * float(pair[1].mean()), "only_a": t.b, "only_b": t.c, "n": t.n,
                             "p_value": t.p, "test": MCNEMAR})
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


def block_intervals(cells: pd.DataFrame, predictions: Mapping[str, pd.DataFrame],
                    level: float = 0.95) -> pd.DataFrame:
    """Per blocked-split cell with predictions: its test accuracy's block bootstrap interval (%) and
    the number of blocks (runs of consecutive frames of one class)."""
    rows = []
    blocked = cells[(cells["state"] == CellState.COMPLETED) & (cells["split_kind"] == "blocked")]
    for cid in blocked["cell_id"]:
        pred = predictions.get(str(cid))
        if pred is None or pred.empty:
            continue
        blocks = frame_blocks(list(pred["label"]), list(pred["frame"]))
        lo, hi = block_bootstrap_interval(pred["correct"].to_numpy(), blocks, level)
        rows.append({"cell_id": cid, "test_acc_lo": 100 * lo, "test_acc_hi": 100 * hi,
                     "blocks": int(blocks.max() + 1) if len(blocks) else 0})
    return pd.DataFrame(rows, columns=["cell_id", "test_acc_lo", "test_acc_hi", "blocks"])


def attach_block_intervals(summary: pd.DataFrame, cells: pd.DataFrame,
                           intervals: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with ``test_acc_lo``/``test_acc_hi``/``test_acc_interval`` for single-run blocked
    configurations whose cell has a block bootstrap interval (the verdicts then use it, not Wilson)."""
    out = summary.copy()
    for col in ("test_acc_lo", "test_acc_hi"):
        out[col] = math.nan
    out["test_acc_interval"] = ""
    if intervals.empty:
        return out
    by_cell = intervals.set_index("cell_id")
    for i, r in out.iterrows():
        if int(r["n"]) != 1 or r["split_kind"] != "blocked":
            continue
        mine = cells[(cells["state"] == CellState.COMPLETED) & (cells["batch_size"] == r["batch_size"])
                     & (cells["gpus"] == r["gpus"]) & (cells["strategy"] == r["strategy"])
                     & (cells["pipeline"] == r["pipeline"]) & (cells["split_kind"] == "blocked")]
        hit = [c for c in mine["cell_id"] if c in by_cell.index]
        if hit:
            b = by_cell.loc[hit[0]]
            out.loc[i, ["test_acc_lo", "test_acc_hi"]] = [b["test_acc_lo"], b["test_acc_hi"]]
            out.loc[i, "test_acc_interval"] = f"block bootstrap over {int(b['blocks'])} frame runs"
    return out
