"""A strong-scaling model fitted to the measured times: T(N) = serial + parallel / N (Amdahl).

The 2020 study saw time barely fall from 1 to 4 GPUs and could only say so; fitting the model tells
*why* in one number: the serial part (what no GPU count divides: data loading, validation, DataParallel's
per-step scatter/gather on one GPU, start-up) as a share of a 1-GPU cell, and what any GPU count would
give. Fitted by non-negative least squares (a negative part is meaningless) over every repeat.

Intervals: with at least two repeats at every GPU count, a bootstrap over repeats (resampled within each
GPU count, :data:`BOOT_SAMPLES` draws, fixed seed so collect is reproducible); otherwise from the residuals
(Student t on n - 2 degrees of freedom, the covariance s^2 (A'A)^-1 of ordinary least squares; approximate
where NNLS held a part at 0); with two points and one run each the fit is exact and has no interval. The
column ``interval`` says which. ``scaling.csv`` carries the parameter covariance and the critical value,
so ``predictions.csv`` can be recomputed from it alone.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import nnls
from scipy.stats import norm, t

from aslhpc.analysis.tables import data_wait_share, gpu_label
from aslhpc.atomic import atomic_write_bytes, atomic_write_text
from aslhpc.states import CellState

#: one fit per series: the strategy/pipeline/split are fitted apart, as the verdicts judge them apart
FIT_KEYS = ["batch_size", "strategy", "pipeline", "split"]
BOOTSTRAP = "bootstrap over repeats"
RESIDUALS = "residuals"
NO_INTERVAL = "none (exact fit: two points, one run each)"
BOOT_SAMPLES = 1000
LEVEL = 0.95
#: below this R² the sentence says the times do not follow the model
POOR_FIT_R2 = 0.5
SCALING_CSV = "scaling.csv"
PREDICTIONS_CSV = "predictions.csv"
PLOT_FILE = "scaling.png"

FIT_COLUMNS = [*FIT_KEYS, "serial_s", "parallel_s", "serial_fraction", "r2", "n_points", "n_gpu_counts",
               "gpus_measured", "interval", "serial_low_s", "serial_high_s", "parallel_low_s",
               "parallel_high_s", "cov_ss", "cov_sp", "cov_pp", "crit", "max_speedup", "level"]
PREDICTION_COLUMNS = [*FIT_KEYS, "gpus", "predicted_time_s", "low_s", "high_s", "measured", "gpu_hours"]


def scaling_points(frame: pd.DataFrame) -> pd.DataFrame:
    """The runs a fit may use: completed, with a time, on the GPUs they asked for.

    A cell that fell back to the CPU (or ran on fewer GPUs than requested) says nothing about N GPUs."""
    done = frame[(frame["state"] == CellState.COMPLETED) & frame["exec_time_s"].notna() & (frame["gpus"] > 0)]
    if "gpus_used" in done:
        done = done[~(done["gpus_used"] < done["gpus"])]
    out = done.assign(split=done["split_kind"] if "split_kind" in done else "random")
    if "pipeline" not in out:
        out = out.assign(pipeline="")
    return out[[*FIT_KEYS, "gpus", "exec_time_s"]].reset_index(drop=True)


def _nnls(n: np.ndarray, y: np.ndarray) -> np.ndarray:
    a = np.column_stack([np.ones_like(n), 1.0 / n])
    return nnls(a, y)[0]


def _bootstrap(n: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(BOOT_SAMPLES, 2) refits on repeats resampled within each GPU count."""
    groups = [np.flatnonzero(n == g) for g in np.unique(n)]
    draws = np.empty((BOOT_SAMPLES, 2))
    for b in range(BOOT_SAMPLES):
        idx = np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])
        draws[b] = _nnls(n[idx], y[idx])
    return draws


def fit_one(n: Sequence[float], y: Sequence[float], level: float = LEVEL, seed: int = 0) -> dict[str, object]:
    """Fit one series (GPU counts ``n``, times ``y``, repeats as separate points): parameters, R²,
    interval kind, parameter intervals and covariance (see the module docstring)."""
    n_arr, y_arr = np.asarray(n, dtype=float), np.asarray(y, dtype=float)
    serial, parallel = _nnls(n_arr, y_arr)
    fitted = serial + parallel / n_arr
    ss_res = float(((y_arr - fitted) ** 2).sum())
    ss_tot = float(((y_arr - y_arr.mean()) ** 2).sum())
    counts = np.unique(n_arr, return_counts=True)[1]
    out: dict[str, object] = {
        "serial_s": float(serial), "parallel_s": float(parallel),
        "serial_fraction": float(serial / (serial + parallel)) if serial + parallel > 0 else math.nan,
        "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan,
        "n_points": len(y_arr), "n_gpu_counts": len(counts),
        "gpus_measured": ",".join(str(int(g)) for g in np.unique(n_arr)),
        "max_speedup": float((serial + parallel) / serial) if serial > 0 else math.inf,
        "level": level,
    }
    a = np.column_stack([np.ones_like(n_arr), 1.0 / n_arr])
    if counts.min() >= 2:
        draws = _bootstrap(n_arr, y_arr, np.random.default_rng(seed))
        cov = np.cov(draws, rowvar=False)
        lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
        crit, kind = float(norm.ppf(0.5 + level / 2)), BOOTSTRAP
    elif len(y_arr) > 2:
        cov = ss_res / (len(y_arr) - 2) * np.linalg.inv(a.T @ a)
        crit, kind = float(t.ppf(0.5 + level / 2, len(y_arr) - 2)), RESIDUALS
        half = crit * np.sqrt(np.diag(cov))
        lo = np.maximum(np.array([serial, parallel]) - half, 0.0)
        hi = np.array([serial, parallel]) + half
    else:
        cov, crit, kind = np.full((2, 2), math.nan), math.nan, NO_INTERVAL
        lo = hi = np.array([math.nan, math.nan])
    out.update(interval=kind, serial_low_s=float(lo[0]), serial_high_s=float(hi[0]),
               parallel_low_s=float(lo[1]), parallel_high_s=float(hi[1]), cov_ss=float(cov[0, 0]),
               cov_sp=float(cov[0, 1]), cov_pp=float(cov[1, 1]), crit=crit)
    return out


def fit_scaling(frame: pd.DataFrame, level: float = LEVEL) -> pd.DataFrame:
    """One row per (batch_size, strategy, pipeline, split) with at least two GPU counts measured
    (columns :data:`FIT_COLUMNS`); ``frame`` is a matrix (``load_matrix``/``derive`` output, one row per
    run). An empty frame (no series with two GPU counts) keeps the columns."""
    pts = scaling_points(frame)
    rows = []
    for key, grp in pts.groupby(FIT_KEYS, sort=True, dropna=False):
        if grp["gpus"].nunique() < 2:
            continue
        rows.append({**dict(zip(FIT_KEYS, key, strict=True)),
                     **fit_one(grp["gpus"].to_numpy(), grp["exec_time_s"].to_numpy(), level)})
    fits = pd.DataFrame.from_records(rows, columns=FIT_COLUMNS)
    if len(fits):
        fits["batch_size"] = fits["batch_size"].astype("int64")
    return fits


def predict(fits: pd.DataFrame, max_gpus: int | None = None) -> pd.DataFrame:
    """T(N) with its interval for N = 1 .. ``max_gpus`` (default max(8, twice the largest count
    measured)), per fit; ``measured`` marks the counts the fit saw. The band is the fitted mean's:
    ``crit * sqrt(x' C x)`` with x = (1, 1/N) and C the fit's covariance, so it follows from
    scaling.csv alone. ``gpu_hours`` = N x T(N) / 3600."""
    rows = []
    for _, f in fits.iterrows():
        seen = {int(g) for g in str(f["gpus_measured"]).split(",") if g}
        top = max_gpus if max_gpus is not None else max(8, 2 * max(seen))
        cov = np.array([[f["cov_ss"], f["cov_sp"]], [f["cov_sp"], f["cov_pp"]]], dtype=float)
        for n in range(1, int(top) + 1):
            x = np.array([1.0, 1.0 / n])
            mean = float(f["serial_s"] + f["parallel_s"] / n)
            half = float(f["crit"]) * math.sqrt(max(float(x @ cov @ x), 0.0))
            rows.append({**{k: f[k] for k in FIT_KEYS}, "gpus": n, "predicted_time_s": mean,
                         "low_s": max(mean - half, 0.0) if math.isfinite(half) else math.nan,
                         "high_s": mean + half if math.isfinite(half) else math.nan,
                         "measured": n in seen, "gpu_hours": n * mean / 3600.0})
    return pd.DataFrame.from_records(rows, columns=PREDICTION_COLUMNS)


def _wait_share(breakdown: pd.DataFrame | None, f: pd.Series) -> tuple[float, int]:
    """(data-wait share of the training loop, at which GPU count) for the fit's series at its largest
    GPU count with a figure; (NaN, 0) where no breakdown was recorded."""
    if breakdown is None or breakdown.empty:
        return math.nan, 0
    sub = breakdown[breakdown["batch_size"] == f["batch_size"]]
    for col, key in (("strategy", "strategy"), ("pipeline", "pipeline"), ("split_kind", "split"),
                     ("split", "split")):
        if col in sub and pd.notna(f[key]) and f[key] != "":
            sub = sub[sub[col] == f[key]]
    if "data_wait_share" in sub:
        shares = sub["data_wait_share"]
    else:
        shares = pd.Series([data_wait_share(r) for _, r in sub.iterrows()], index=sub.index, dtype=float)
    sub = sub.assign(_share=shares)
    if "gpus_used" in sub:
        sub = sub[~(sub["gpus_used"] < sub["gpus"])]
    sub = sub[sub["_share"].notna() & (sub["gpus"] > 0)]
    if sub.empty:
        return math.nan, 0
    top = sub[sub["gpus"] == sub["gpus"].max()]
    return float(top["_share"].mean()), int(top["gpus"].iloc[0])


def scaling_sentence(f: pd.Series, breakdown: pd.DataFrame | None = None, series: str = "") -> str:
    """One fit in words: the serial share, the floor no GPU count gets under, the best speed-up, and
    the data-wait share as the reason where the time breakdown recorded it."""
    head = f"b={int(f['batch_size'])}{series}"
    model = f"T(N) = {f['serial_s']:,.0f} s + {f['parallel_s']:,.0f} s / N, R² {f['r2']:.2f}"
    if f["interval"] != NO_INTERVAL and math.isfinite(f["serial_low_s"]):
        model += f"; serial part {f['serial_low_s']:,.0f}–{f['serial_high_s']:,.0f} s ({f['interval']})"
    if not f["serial_s"] > 0:
        text = (f"{head}: the fit finds no serial part ({model}): time falls as 1/N, the ideal strong "
                "scaling, over the GPU counts measured")
    else:
        text = (f"{head}: the serial part is {f['serial_fraction'] * 100:.0f} % of a 1-GPU cell ({model}): "
                f"no GPU count brings it under {f['serial_s']:,.0f} s, and no number of GPUs makes it "
                f"more than {f['max_speedup']:.2f}× faster than 1 GPU")
    if math.isfinite(f["r2"]) and f["r2"] < POOR_FIT_R2:
        text += (f" (a poor fit, R² {f['r2']:.2f}: the measured times do not follow serial + parallel / N, "
                 "so read the figures as rough)")
    share, at = _wait_share(breakdown, f)
    if math.isfinite(share):
        text += f"; at {gpu_label(at)} {share * 100:.0f} % of the training loop was waiting for data"
        text += (", which is where the serial part comes from" if share >= 0.5 else
                 ", so data loading explains only part of it" if share >= 0.2 else
                 ", so data loading does not explain it")
    return text + "."


def scaling_brief(f: pd.Series, series: str = "") -> str:
    """The fit in one console line (the sentence, with its reason, is in report.md)."""
    head = f"b={int(f['batch_size'])}{series}: {f['serial_s']:,.0f} + {f['parallel_s']:,.0f}/N s"
    if not f["serial_s"] > 0:
        text = f"{head}: no serial part, ideal scaling over the GPU counts measured"
    else:
        text = f"{head}: {f['serial_fraction'] * 100:.0f} % serial, best speed-up {f['max_speedup']:.2f}×"
    poor = math.isfinite(f["r2"]) and f["r2"] < POOR_FIT_R2
    return text + (f" (R² {f['r2']:.2f}, poor fit)" if poor else f" (R² {f['r2']:.2f})")


def _series_labels(fits: pd.DataFrame) -> list[str]:
    mixed = [k for k in ("strategy", "pipeline", "split") if fits[k].nunique() > 1]
    return [f" ({'/'.join(str(f[k]) for k in mixed)})" if mixed else "" for _, f in fits.iterrows()]


def scaling_briefs(fits: pd.DataFrame) -> list[str]:
    """One console line per fit, named by series as :func:`scaling_sentences` names them."""
    return [scaling_brief(f, series) for (_, f), series in zip(fits.iterrows(), _series_labels(fits),
                                                                strict=True)]


def scaling_sentences(fits: pd.DataFrame, breakdown: pd.DataFrame | None = None) -> list[str]:
    """One sentence per fit (one per batch size in a single-series experiment; the series is named when
    strategies, pipelines or splits are mixed). ``breakdown``: per-configuration rows with batch_size,
    gpus (strategy, pipeline, split_kind) and either ``data_wait_share`` (0..1) or the time breakdown's
    ``time_data_wait_s``/``time_compute_s`` (the summary frame has them when recorded)."""
    return [scaling_sentence(f, breakdown, series) for (_, f), series in zip(fits.iterrows(),
                                                                             _series_labels(fits),
                                                                             strict=True)]


def scaling_plot(frame: pd.DataFrame, fits: pd.DataFrame, path: str | Path,
                 predictions: pd.DataFrame | None = None, label: str | None = None) -> Path | None:
    """Measured times (every run), the fitted T(N) with its band, and the ideal T(1)/N, one panel per
    fit; None (nothing written) without a fit. T(1) is the mean measured 1-GPU time, else the fit's;
    ``label`` (e.g. the reference label) titles the figure."""
    from matplotlib.figure import Figure  # ~1 s to import: only when plotting

    if fits.empty:
        return None
    pts = scaling_points(frame)
    pred = predictions if predictions is not None else predict(fits)
    fig = Figure(figsize=(4.2 * len(fits), 3.6), layout="constrained")
    axes = fig.subplots(1, len(fits), squeeze=False)[0]
    for ax, (_, f) in zip(axes, fits.iterrows(), strict=True):
        sel = np.logical_and.reduce([pts[k] == f[k] for k in FIT_KEYS])
        p = pts[sel]
        q = pred[np.logical_and.reduce([pred[k] == f[k] for k in FIT_KEYS])]
        ones = p.loc[p["gpus"] == 1, "exec_time_s"]
        t1 = float(ones.mean()) if len(ones) else float(f["serial_s"] + f["parallel_s"])
        ax.fill_between(q["gpus"], q["low_s"], q["high_s"], alpha=0.2, color="C0", linewidth=0)
        ax.plot(q["gpus"], q["predicted_time_s"], color="C0",
                label=f"fit: {f['serial_s']:,.0f} + {f['parallel_s']:,.0f}/N")
        ax.plot(q["gpus"], t1 / q["gpus"], color="grey", linestyle="--", label="ideal T(1)/N")
        ax.axhline(f["serial_s"], color="C3", linestyle=":", linewidth=1, label="serial part")
        ax.plot(p["gpus"], p["exec_time_s"], "o", color="black", label="measured")
        ax.set_title(f"batch size {int(f['batch_size'])} ({f['strategy']}/{f['pipeline']}, {f['split']})",
                     fontsize=9)
        ax.set_xlabel("GPUs")
        ax.set_ylabel("time (s)")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)
    if label:
        fig.suptitle(label, fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return atomic_write_bytes(path, buf.getvalue())


def write_scaling(out_dir: str | Path, fits: pd.DataFrame, predictions: pd.DataFrame,
                  label: str | None = None) -> dict[str, Path]:
    """``scaling.csv`` and ``predictions.csv`` in ``out_dir``, atomically; ``label`` (e.g. the
    reference label) goes into a ``source`` column so published figures stay labelled as such."""
    d = Path(out_dir)
    out = {}
    for name, frame in ((SCALING_CSV, fits), (PREDICTIONS_CSV, predictions)):
        csv = frame.assign(source=label) if label else frame
        out[name] = atomic_write_text(d / name, csv.to_csv(index=False))
    return out
