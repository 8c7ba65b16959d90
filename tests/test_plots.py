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


def test_the_breakdown_hatches_configurations_whose_cells_shared_a_host(tmp_path: Path, monkeypatch) -> None:
    import pandas as pd

    rows = [{"split_kind": "random", "n": 1, "batch_size": 128, "gpus": g, "strategy": "dp",
             "pipeline": "paper", "gpus_used": g, "time_data_wait_s": 10.0, "time_compute_s": 20.0,
             "time_eval_s": 5.0, "time_other_s": 1.0, "concurrent": note}
            for g, note in ((1, ""), (2, "g2-b128-r0 with g1-b256-r0 on n1"))]
    axes = []
    real = Figure.add_subplot

    def spy(fig, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        axes.append(real(fig, *a, **k))
        return axes[-1]

    monkeypatch.setattr(Figure, "add_subplot", spy)
    plots.plot_breakdown(pd.DataFrame(rows), tmp_path / "b.png")
    [ax] = axes
    hatched = {round(p.get_x() + p.get_width() / 2) for p in ax.patches if p.get_hatch() and p.get_height()}
    assert hatched == {1}  # every part of the 2-GPU bar, none of the 1-GPU bar
    assert "hatched: shared a host (contended)" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert [t.get_text().endswith("shared") for t in ax.get_xticklabels()] == [False, True]
    rows[1]["concurrent"] = ""
    axes.clear()
    plots.plot_breakdown(pd.DataFrame(rows), tmp_path / "c.png")
    assert not any(p.get_hatch() for p in axes[0].patches)
