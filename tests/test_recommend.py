"""The recommendation: the cheapest configuration within X % of the fastest, the fastest within a budget."""

from __future__ import annotations

import pytest

from aslhpc import packaged
from aslhpc.analysis import scaling
from aslhpc.analysis.analyze import analyze
from aslhpc.analysis.recommend import candidates, recommend
from aslhpc.analysis.reference import load_reference, reference_matrix


@pytest.fixture(scope="module")
def published():  # noqa: ANN201 - (summary, predictions) of the 2020 table
    a = analyze(reference_matrix(load_reference(packaged.reference_table())), name="lad2020", label="ref")
    return a.summary, scaling.predict(scaling.fit_scaling(a.cells))


def test_on_the_2020_table_one_gpu_is_the_cheap_choice_a_quarter_slower(published) -> None:
    summary, _ = published
    rec = recommend(candidates(summary), within=0.25)
    assert (rec.fastest["batch_size"], rec.fastest["gpus"]) == (256, 3)
    assert (rec.cheapest_within["batch_size"], rec.cheapest_within["gpus"]) == (256, 1)
    assert rec.lines() == [
        "fastest: b=256 × 3 GPUs: 2,028.7 s, 1.69 GPU-hours (measured)",
        "cheapest within 25 % of it: b=256 × 1 GPU: 2,461.5 s, 0.68 GPU-hours (measured), "
        "21.3 % slower for 60 % fewer GPU-hours",
    ]


def test_within_ten_percent_nothing_is_cheaper_than_the_fastest(published) -> None:
    summary, predictions = published
    rec = recommend(candidates(summary, predictions), within=0.10)
    assert rec.cheapest_within.name == rec.fastest.name
    assert rec.lines()[1] == "cheapest within 10 % of it: the same configuration"


def test_a_budget_picks_the_fastest_that_fits_and_predictions_are_labelled(published) -> None:
    summary, predictions = published
    cands = candidates(summary, predictions)
    assert set(cands["source"]) == {"measured", "predicted"}
    assert not ((cands["source"] == "predicted") & (cands["gpus"] <= 4)).any()  # measured counts stay so
    rec = recommend(cands, within=0.10, budget_gpu_hours=0.69)
    assert (rec.within_budget["batch_size"], rec.within_budget["gpus"]) == (256, 1)
    assert recommend(cands, budget_gpu_hours=0.1).lines()[-1] == \
        "fastest within 0.1 GPU-hours: none (every configuration costs more)"


def test_a_cpu_fallback_is_no_candidate(published) -> None:
    summary, _ = published
    fell_back = summary.copy()
    fell_back.loc[(fell_back["batch_size"] == 256) & (fell_back["gpus"] == 3), "gpus_used"] = 0
    rec = recommend(candidates(fell_back))
    assert (rec.fastest["batch_size"], rec.fastest["gpus"]) != (256, 3)
    assert recommend(candidates(summary.iloc[0:0])).lines() == []
