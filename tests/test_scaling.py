"""The scaling model: T(N) = serial + parallel / N fitted by NNLS, its predictions, sentences and files."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from aslhpc.analysis.analyze import reference_cells
from aslhpc.analysis.reference import REFERENCE_LABEL, load_reference
from aslhpc.analysis.scaling import (
    BOOTSTRAP,
    NO_INTERVAL,
    PREDICTIONS_CSV,
    RESIDUALS,
    SCALING_CSV,
    fit_scaling,
    predict,
    scaling_plot,
    scaling_sentences,
    write_scaling,
)
from aslhpc.packaged import reference_table


def cells(times: dict[tuple[int, int], list[float]], **extra: object) -> pd.DataFrame:
    """A matrix-shaped frame: one completed row per run of (batch_size, gpus)."""
    rows = []
    for (bs, g), ts in times.items():
        for r, t in enumerate(ts):
            rows.append({"batch_size": bs, "gpus": g, "repeat": r, "strategy": "dp", "pipeline": "fast",
                         "split_kind": "random", "state": "COMPLETED", "exec_time_s": t, "gpus_used": g,
                         **extra})
    return pd.DataFrame(rows)


def amdahl(serial: float, parallel: float, counts: list[int], noise: list[float] | None = None,
           bs: int = 128) -> dict[tuple[int, int], list[float]]:
    noise = noise or [0.0]
    return {(bs, n): [serial + parallel / n + e for e in noise] for n in counts}


@pytest.fixture(scope="module")
def published() -> pd.DataFrame:
    return reference_cells(load_reference(reference_table()))


def test_exact_amdahl_data_fit_their_parameters() -> None:
    fits = fit_scaling(cells(amdahl(100.0, 900.0, [1, 2, 4, 8])))
    (f,) = fits.to_dict("records")
    assert f["serial_s"] == pytest.approx(100.0)
    assert f["parallel_s"] == pytest.approx(900.0)
    assert f["serial_fraction"] == pytest.approx(0.1)
    assert f["r2"] == pytest.approx(1.0)
    assert f["n_points"] == 4 and f["interval"] == RESIDUALS


def test_nnls_never_returns_a_negative_part() -> None:
    # time rising with GPUs: least squares would want parallel < 0; NNLS holds it at 0, all serial
    fits = fit_scaling(cells({(128, 1): [100.0], (128, 2): [120.0], (128, 4): [130.0]}))
    f = fits.iloc[0]
    assert f["parallel_s"] == 0.0 and f["serial_s"] > 0
    assert f["serial_fraction"] == 1.0


def test_series_with_one_gpu_count_and_cpu_fallbacks_are_not_fitted() -> None:
    frame = cells({(128, 1): [100.0], (256, 1): [90.0], (256, 2): [60.0]})
    frame.loc[(frame["batch_size"] == 256) & (frame["gpus"] == 2), "gpus_used"] = 0  # ran on the CPU
    assert fit_scaling(frame).empty
    assert list(predict(fit_scaling(frame)).columns)[:4] == ["batch_size", "strategy", "pipeline", "split"]


def test_repeats_give_a_bootstrap_interval_containing_the_truth() -> None:
    frame = cells(amdahl(100.0, 900.0, [1, 2, 4], noise=[-5.0, 0.0, 5.0]))
    f = fit_scaling(frame).iloc[0]
    assert f["interval"] == BOOTSTRAP and f["n_points"] == 9
    assert f["serial_low_s"] <= 100.0 <= f["serial_high_s"]
    assert f["parallel_low_s"] <= 900.0 <= f["parallel_high_s"]
    assert f["serial_high_s"] > f["serial_low_s"]


def test_two_single_runs_are_an_exact_fit_without_interval() -> None:
    f = fit_scaling(cells(amdahl(100.0, 900.0, [1, 2]))).iloc[0]
    assert f["interval"] == NO_INTERVAL
    p = predict(fit_scaling(cells(amdahl(100.0, 900.0, [1, 2]))))
    assert p["low_s"].isna().all() and p["predicted_time_s"].notna().all()


def test_predictions_span_at_least_eight_and_twice_the_largest_count() -> None:
    fits = fit_scaling(cells({**amdahl(100.0, 900.0, [1, 2]), **amdahl(50.0, 500.0, [2, 6], bs=256)}))
    p = predict(fits)
    assert sorted(p.loc[p["batch_size"] == 128, "gpus"]) == list(range(1, 9))
    assert sorted(p.loc[p["batch_size"] == 256, "gpus"]) == list(range(1, 13))
    assert set(p.loc[p["measured"], "gpus"]) == {1, 2, 6}
    assert set(predict(fits, max_gpus=3)["gpus"]) == {1, 2, 3}


def test_published_table_fit_matches_an_independent_numpy_fit(published: pd.DataFrame) -> None:
    fits = fit_scaling(published)
    assert sorted(fits["batch_size"]) == [128, 256, 512]
    for _, f in fits.iterrows():
        sub = published[published["batch_size"] == f["batch_size"]]
        n, y = sub["gpus"].to_numpy(float), sub["exec_time_s"].to_numpy(float)
        a = np.column_stack([np.ones_like(n), 1 / n])
        coef = np.linalg.lstsq(a, y, rcond=None)[0]
        assert (coef >= 0).all()  # unconstrained optimum is feasible here, so NNLS must equal it
        assert f["serial_s"] == pytest.approx(coef[0], rel=1e-9)
        assert f["parallel_s"] == pytest.approx(coef[1], rel=1e-9)
        resid = y - a @ coef
        assert f["r2"] == pytest.approx(1 - (resid ** 2).sum() / ((y - y.mean()) ** 2).sum())


def test_published_sentences_say_the_serial_share_limits_scaling(published: pd.DataFrame) -> None:
    fits = fit_scaling(published)
    sentences = scaling_sentences(fits)
    assert len(sentences) == 3
    for s, (_, f) in zip(sentences, fits.iterrows(), strict=True):
        assert s.startswith(f"b={f['batch_size']}: the serial part is {f['serial_fraction'] * 100:.0f} %")
        assert f"under {f['serial_s']:,.0f} s" in s
    # the 2020 times fell by at most ~17 % from 1 to 4 GPUs: the serial part is most of a 1-GPU cell
    assert (fits["serial_fraction"] > 0.5).all()


def test_sentence_names_the_data_wait_share_where_recorded() -> None:
    fits = fit_scaling(cells(amdahl(600.0, 400.0, [1, 2, 4])))
    breakdown = pd.DataFrame([{"batch_size": 128, "gpus": 4, "strategy": "dp", "pipeline": "fast",
                               "split_kind": "random", "time_data_wait_s": 300.0, "time_compute_s": 100.0}])
    (s,) = scaling_sentences(fits, breakdown)
    assert "at 4 GPUs 75 % of the training loop was waiting for data" in s
    (plain,) = scaling_sentences(fits)
    assert "waiting for data" not in plain


def test_csvs_refit_independently(tmp_path, published: pd.DataFrame) -> None:
    fits = fit_scaling(published)
    preds = predict(fits)
    files = write_scaling(tmp_path, fits, preds, label=REFERENCE_LABEL)
    assert set(files) == {SCALING_CSV, PREDICTIONS_CSV}
    sc = pd.read_csv(tmp_path / SCALING_CSV)
    pr = pd.read_csv(tmp_path / PREDICTIONS_CSV)
    assert (sc["source"] == REFERENCE_LABEL).all() and (pr["source"] == REFERENCE_LABEL).all()
    for _, f in sc.iterrows():
        q = pr[pr["batch_size"] == f["batch_size"]]
        n = q["gpus"].to_numpy(float)
        # the predicted curve is exactly serial + parallel / N: refit it with numpy
        a = np.column_stack([np.ones_like(n), 1 / n])
        coef = np.linalg.lstsq(a, q["predicted_time_s"], rcond=None)[0]
        assert coef == pytest.approx([f["serial_s"], f["parallel_s"]], rel=1e-9)
        assert f["serial_fraction"] == pytest.approx(f["serial_s"] / (f["serial_s"] + f["parallel_s"]))
        # the band follows from the CSV's covariance and critical value alone
        x = np.column_stack([np.ones_like(n), 1 / n])
        cov = np.array([[f["cov_ss"], f["cov_sp"]], [f["cov_sp"], f["cov_pp"]]])
        half = f["crit"] * np.sqrt(np.einsum("ij,jk,ik->i", x, cov, x))
        assert q["high_s"].to_numpy() == pytest.approx(q["predicted_time_s"].to_numpy() + half, rel=1e-9)
        assert (q["low_s"] <= q["predicted_time_s"]).all()


def test_plot_is_written_and_nothing_without_a_fit(tmp_path, published: pd.DataFrame) -> None:
    path = scaling_plot(published, fit_scaling(published), tmp_path / "plots" / "scaling.png",
                        label=REFERENCE_LABEL)
    assert path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    empty = fit_scaling(cells({(128, 1): [1.0]}))
    assert scaling_plot(cells({(128, 1): [1.0]}), empty, tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()
    assert math.isfinite(fit_scaling(published)["r2"].min())
