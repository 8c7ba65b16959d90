"""The figures say what the verdicts weigh: intervals at one run, series that coincide both visible."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.figure import Figure

from aslhpc import packaged
from aslhpc.analysis import plots
from aslhpc.analysis.analyze import analyze
from aslhpc.analysis.reference import load_reference, reference_matrix
from aslhpc.analysis.stats import wilson_interval


@pytest.fixture(scope="module")
def summary():  # noqa: ANN201 - the 2020 table's per-configuration summary (single runs)
    ref = load_reference(packaged.reference_table())
    return analyze(reference_matrix(ref), name="lad2020", label="ref").summary


def test_single_run_accuracies_carry_their_wilson_interval(summary) -> None:
    one = summary[(summary["batch_size"] == 512) & (summary["gpus"] == 1)]
    lo, hi, what = plots._accuracy_bars(one)
    a, b = wilson_interval(98.62 / 100, int(one["n_test"].iloc[0]))
    assert lo[0] == pytest.approx(98.62 - a * 100) and hi[0] == pytest.approx(b * 100 - 98.62)
    assert lo[0] > 0.5  # ~0.66 pp on 1,741 images: the noise the 98.6-100 axis used to hide
    assert what == "95 % Wilson interval on the test images"


def test_coinciding_series_are_drawn_side_by_side(summary, tmp_path: Path, monkeypatch) -> None:
    drawn: list[list[float]] = []
    real = Figure.add_subplot

    def spy(fig, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        ax = real(fig, *a, **k)
        orig = ax.errorbar

        def errorbar(x, *a2, **k2):  # noqa: ANN001, ANN002, ANN003, ANN202
            drawn.append([float(v) for v in x])
            return orig(x, *a2, **k2)

        ax.errorbar = errorbar
        return ax

    monkeypatch.setattr(Figure, "add_subplot", spy)
    plots.plot_accuracy_vs_batch(summary, tmp_path / "acc.png")
    assert (tmp_path / "acc.png").stat().st_size > 0
    assert len(drawn) == 4  # one test series per GPU count
    at_128 = [xs[0] for xs in drawn]
    assert len(set(at_128)) == 4 and all(120 < x < 137 for x in at_128)  # near 128, none on another
