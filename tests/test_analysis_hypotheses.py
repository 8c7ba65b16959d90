"""Verdicts from the numbers alone: the paper's own on its data, flipped when the numbers change."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from test_analysis_helpers import result_json, write_cell

from aslhpc.analysis.analyze import reference_cells
from aslhpc.analysis.hypotheses import Point, compare, conclusions, evaluate, h4_literal_steps
from aslhpc.analysis.reference import load_reference
from aslhpc.analysis.tables import derive, summarize
from aslhpc.analysis.verdicts import H1, H2, H3, H4, Settings
from aslhpc.snapshot import load_matrix

REF = Path(__file__).resolve().parents[1] / "results" / "reference" / "lad2020.csv"


def _summary_of(table: pd.DataFrame) -> pd.DataFrame:
    return summarize(derive(reference_cells(table)))


@pytest.fixture
def ref() -> pd.DataFrame:
    return load_reference(REF)


def _set(table: pd.DataFrame, bs: int, gpus: int, **values: float) -> pd.DataFrame:
    t = table.copy()
    mask = (t["batch_size"] == bs) & (t["gpus"] == gpus)
    for k, v in values.items():
        t.loc[mask, k] = v
    return t


def test_reference_reproduces_the_papers_verdicts(ref):
    v = {x.hypothesis: x for x in evaluate(_summary_of(ref))}
    assert [v[h].verdict for h in ("H1", "H2", "H3", "H4")] == [
        "supported",
        "not supported",
        "not supported",
        "not supported",
    ]
    assert "lowest 98.62 % [97.96, 99.07] at b=512 × 1 GPU" in v["H1"].evidence  # Wilson, 1,741 images
    assert "Wilson binomial interval" in v["H1"].evidence
    # issue 25.9: the evidence leads with the largest counter-example (b=256: +15.9 %), not b=128's 1.7 %
    assert v["H2"].evidence.startswith("counter-example: b=256: 4 GPUs 2350.78 s > 3 GPUs 2028.72 s")
    assert "b=256" in v["H2"].evidence and "b=512" in v["H2"].evidence
    assert "1 GPU: b=512 98.62 % [97.96, 99.07] < b=256 99.88 % [99.57, 99.97]" in v["H3"].evidence
    assert "test accuracy" in v["H3"].evidence
    assert "3 GPUs: b=512 2218.39 s > b=256 2028.72 s" in v["H4"].evidence  # the largest of its gaps
    assert "3 GPUs: 600 batches (b=128) 2296.49 s > 300 batches (b=256) 2028.72 s" in h4_literal_steps(
        _summary_of(ref)
    ).evidence


def test_h1_flips_with_threshold_or_a_bad_cell(ref):
    s = _summary_of(ref)
    assert H1.verdict(s, Settings(h1_threshold=99.5)).verdict == "not supported"
    assert "b=512 × 1 GPU: 98.62 % [97.96, 99.07]" in H1.verdict(s, Settings(h1_threshold=99.5)).evidence
    # 98.9 % on 1,741 images: its Wilson interval straddles 99 %, so it neither passes nor fails
    straddles = _summary_of(ref.assign(test_acc=98.9))
    assert H1.verdict(straddles, Settings(h1_threshold=99.0)).verdict == "inconclusive"
    bad = _summary_of(_set(ref, 256, 2, test_acc=90.0))
    v = H1.verdict(bad)
    assert v.verdict == "not supported" and "b=256 × 2 GPUs: 90.00 %" in v.evidence


def test_h2_flips_when_time_falls_strictly_everywhere(ref):
    t = ref.copy()
    t["exec_time_s"] = 3000.0 / t["gpus"] + t["batch_size"]
    v = H2.verdict(_summary_of(t))
    assert v.verdict == "supported" and "9 comparisons" in v.evidence
    # one changed number changes the verdict, and the evidence names it
    v = H2.verdict(_summary_of(_set(t, 256, 4, exec_time_s=2350.8)))
    assert v.verdict == "not supported"
    assert v.evidence.startswith("counter-example: b=256: 4 GPUs 2350.80 s > 3 GPUs 1256.00 s")


def test_h3_flips_when_accuracy_rises_with_batch(ref):
    t = ref.copy()
    t["test_acc"] = 80.0 + t["batch_size"] / 30.0  # 84.27, 88.53, 97.07: apart beyond binomial noise
    t["val_acc"] = 95.0 - t["batch_size"] / 100.0
    assert H3.verdict(_summary_of(t)).verdict == "supported"
    v = H3.verdict(_summary_of(t), Settings(h3_metric="val_acc"))
    assert v.verdict == "not supported" and v.evidence.startswith("judged on validation accuracy")
    # single runs: a difference inside the Wilson intervals of the 1,741 test images decides nothing
    close = _set(t, 256, 3, test_acc=84.5)
    v = H3.verdict(_summary_of(close))
    assert v.verdict == "inconclusive" and "3 GPUs: b=256 84.50 % [" in v.evidence
    assert "≈ b=128 84.27 %" in v.evidence
    # without a test-set size there is no interval: a tie is then a counter-example
    s = _summary_of(_set(_set(t, 256, 3, test_acc=85.0), 128, 3, test_acc=85.0)).drop(columns=["n_test"])
    v = H3.verdict(s)
    assert v.verdict == "not supported" and "3 GPUs: b=256 85.00 % = b=128 85.00 %" in v.evidence


def test_h4_is_the_studys_reading_batch_size_up_time_down_linearly(ref):
    # the published numbers: not supported (b=512 is slower than b=256 at 1, 2 and 3 GPUs), led by the
    # largest gap (3 GPUs: +9.3 %), with the fits reported
    v = H4.verdict(_summary_of(ref))
    assert v.verdict == "not supported"
    assert v.evidence.startswith("counter-example: 3 GPUs: b=512 2218.39 s > b=256 2028.72 s")
    assert "single runs; gap 189.67 s" in v.evidence and "also at 1 GPU" in v.evidence
    assert "R² = " in v.evidence
    # at every GPU count time falls linearly as the batch size grows: supported, R² reported
    t = ref.copy()
    t["exec_time_s"] = 3000.0 - t["batch_size"] - 10 * t["gpus"]
    v = H4.verdict(_summary_of(t))
    assert v.verdict == "supported" and "R² = 1.000" in v.evidence and "8 comparisons" in v.evidence
    # the literal reading (more steps per epoch = faster) says the opposite on the same table
    assert h4_literal_steps(_summary_of(t)).verdict == "not supported"


def test_h4_needs_a_line_not_just_a_fall(ref):
    t = ref.copy()
    t["exec_time_s"] = t["batch_size"].map({128: 4000.0, 256: 1100.0, 512: 1000.0}) - t["gpus"]
    v = H4.verdict(_summary_of(t))
    assert v.verdict == "not supported" and "not linearly" in v.evidence
    assert H4.verdict(_summary_of(t), Settings(h4_r2=0.5)).verdict == "supported"
    # one slower larger batch is a counter-example, whatever the fit
    v = H4.verdict(_summary_of(_set(ref.assign(exec_time_s=3000.0 - ref["batch_size"]), 512, 2,
                                                       exec_time_s=2900.0)))
    assert v.verdict == "not supported" and "2 GPUs: b=512 2900.00 s > b=256 2744.00 s" in v.evidence


def test_h4_with_two_batch_sizes_cannot_test_linearity(ref):
    t = ref[ref["batch_size"] < 512].copy()
    t["exec_time_s"] = 3000.0 - t["batch_size"]
    v = H4.verdict(_summary_of(t))
    assert v.verdict == "inconclusive" and "three batch sizes" in v.evidence


def test_too_few_cells_is_inconclusive(ref):
    s = _summary_of(ref[(ref["batch_size"] == 128) & (ref["gpus"] == 1)])
    v = {x.hypothesis: x for x in evaluate(s)}
    assert v["H1"].verdict == "supported"
    for h in ("H2", "H3", "H4"):
        assert v[h].verdict == "inconclusive" and "too few cells" in v[h].evidence


def _repeats(
    tmp_path: Path, times: dict[int, tuple[float, ...]], accs: dict[int, tuple[float, ...]] | None = None
):
    exp = tmp_path / "e"
    for g, ts in times.items():
        for r, t in enumerate(ts):
            acc = (99.0, 99.0, accs[g][r]) if accs else None
            write_cell(exp, result_json("e", g, 128, r, exec_time_s=t, acc=acc))
    return summarize(derive(load_matrix(exp)))


def test_overlapping_intervals_make_h2_inconclusive(tmp_path):
    s = _repeats(tmp_path, {1: (2000.0, 2100.0, 2200.0), 2: (1950.0, 2050.0, 2150.0)})
    v = H2.verdict(s)
    assert v.verdict == "inconclusive"
    assert "intervals overlap" in v.evidence and "2050.00 ± 248.41 s" in v.evidence


def test_separated_intervals_decide_h2(tmp_path):
    s = _repeats(tmp_path / "a", {1: (2000.0, 2100.0, 2200.0), 2: (1500.0, 1510.0, 1520.0)})
    assert H2.verdict(s).verdict == "supported"
    s = _repeats(tmp_path / "b", {1: (1500.0, 1510.0, 1520.0), 2: (2000.0, 2100.0, 2200.0)})
    v = H2.verdict(s)
    assert (
        v.verdict == "not supported"
        and "b=128: 2 GPUs 2100.00 ± 248.41 s > 1 GPU 1510.00 ± 24.84 s" in v.evidence
    )


def test_h1_interval_straddling_threshold_is_inconclusive(tmp_path):
    s = _repeats(tmp_path, {1: (2000.0, 2010.0, 2020.0)}, accs={1: (94.0, 96.0, 95.5)})
    v = H1.verdict(s)
    assert v.verdict == "inconclusive" and "straddles 95 %" in v.evidence


def test_compare_rules():
    assert compare(Point(10, 0, 1), Point(9, 0, 1)) == "lt"
    assert compare(Point(10, 0, 1), Point(10, 0, 1)) == "eq"
    assert compare(Point(10, 1, 3), Point(9.5, 1, 3)) == "overlap"
    assert compare(Point(10, 1, 3), Point(7.9, 1, 3)) == "lt"
    assert compare(Point(10, 1, 3), Point(12.1, 0, 1)) == "gt"


def test_conclusions_on_the_reference(ref):
    c = conclusions(_summary_of(ref))
    assert c.fastest == "256 × 3 GPUs" and c.fastest_time_s == 2028.72
    assert c.fastest_mem_total_gb == pytest.approx(5.267)
    assert c.fastest_mem_per_gpu_gb == (1.809, 1.739, 1.719)
    assert c.most_accurate == "128 × 2 GPUs" and c.most_accurate_test_acc == 100.0
    assert c.most_accurate_mem_total_gb == pytest.approx(3.100)
    assert "256 × 3 GPUs at 2028.72 s, using 5.267 GB per-process in total" in c.text
    assert "(1.809 + 1.739 + 1.719 GB per GPU)" in c.text


def test_conclusions_follow_the_numbers_and_flag_uncertain_rankings(ref, tmp_path):
    c = conclusions(_summary_of(_set(ref, 128, 4, exec_time_s=1000.0)))
    assert c.fastest == "128 × 4 GPUs" and c.fastest_mem_total_gb == pytest.approx(1.355 + 3 * 1.317)
    s = _repeats(tmp_path, {1: (2000.0, 2100.0, 2200.0), 2: (1950.0, 2050.0, 2150.0)})
    c = conclusions(s)
    assert c.fastest == "128 × 2 GPUs" and "not certain" in c.text
    assert "of the 32.5 GB each GPU has" in c.text


def test_h2_is_inconclusive_when_cells_ran_on_fewer_gpus_than_requested():

    summary = pd.DataFrame({
        "gpus": [1, 2], "gpus_used": [0, 0], "batch_size": [32, 32], "exec_time_s": [60.0, 40.0],
        "exec_time_s_hw": [float("nan")] * 2, "n": [1, 1], "strategy": ["dp", "dp"],
        "pipeline": ["fast", "fast"],
        "split_kind": ["random", "random"],
    })
    v = H2.verdict(summary)
    assert v.verdict == "inconclusive" and "ran on 0 GPU(s)" in v.evidence
    summary["gpus_used"] = [1, 2]
    assert H2.verdict(summary).verdict == "supported"


def _batch_series(tmp_path: Path, *, max_steps: int = 0) -> pd.DataFrame:
    """1 GPU at three batch sizes: larger batches faster, linearly (H4 holds), and more accurate beyond
    the test set's binomial noise (H3 holds)."""
    exp = tmp_path / "capped"
    for bs, t, acc in ((128, 1192.0, 96.3), (256, 1128.0, 98.5), (512, 1000.0, 99.8)):
        r = result_json("capped", 1, bs, exec_time_s=t, acc=(acc, acc, acc))
        if max_steps:
            r["config"]["max_steps"] = max_steps
            r["batches"]["train"] = max_steps
        write_cell(exp, r)
    return summarize(derive(load_matrix(exp)))


def test_max_steps_makes_batch_size_verdicts_inconclusive(tmp_path):
    v = {x.hypothesis: x for x in evaluate(_batch_series(tmp_path / "full"))}
    assert v["H3"].verdict == "supported" and v["H4"].verdict == "supported"
    v = {x.hypothesis: x for x in evaluate(_batch_series(tmp_path / "smoke", max_steps=3))}
    for h in ("H3", "H4"):
        assert v[h].verdict == "inconclusive", v[h]
        assert "max_steps=3" in v[h].evidence and "re-run without --max-steps" in v[h].evidence
    assert "time fell" not in v["H4"].evidence
    assert v["H1"].verdict == "supported"  # a threshold, not a comparison across batch sizes
    c = conclusions(_batch_series(tmp_path / "smoke2", max_steps=3))
    assert "Caveat:" in c.text and "max_steps=3" in c.text


def _local_cells(tmp_path: Path, windows: dict[int, tuple[str, ...]], *, slurm: bool = False,
                 cpu: bool = False) -> pd.DataFrame:
    """b=128 at 1 and 2 GPUs (2 GPUs faster: H2 holds) on host ws1, with the given
    [start, (resumed at,) end]."""
    exp = tmp_path / "local"
    for g, (start, *resumed, end) in windows.items():
        r = result_json("local", g, 128, exec_time_s=2000.0 / g, host="ws1")
        r["host"] = "ws1"
        r["started_at"], r["finished_at"] = start, end
        if resumed:
            r["attempt_started_at"] = resumed[0]
        if not slurm:
            r["slurm"] = None
        if cpu:
            r["gpus_used"], r["device"] = 0, "cpu"
        write_cell(exp, r)
    return summarize(derive(load_matrix(exp)))


def test_cells_sharing_a_host_at_once_make_time_verdicts_inconclusive(tmp_path):
    apart = {
        1: ("2026-04-11T20:00:00Z", "2026-04-11T20:30:00Z"),
        2: ("2026-04-11T20:30:00Z", "2026-04-11T20:50:00Z"),
    }
    assert H2.verdict(_local_cells(tmp_path / "a", apart)).verdict == "supported"
    at_once = {
        1: ("2026-04-11T20:00:00Z", "2026-04-11T20:30:00Z"),
        2: ("2026-04-11T20:10:00Z", "2026-04-11T20:25:00Z"),
    }
    s = _local_cells(tmp_path / "b", at_once)
    v = H2.verdict(s)
    assert v.verdict == "inconclusive"
    assert "g1-b128-r0 with g2-b128-r0 on ws1" in v.evidence and "--max-parallel 1" in v.evidence
    assert "taken at face value: supported" in v.evidence
    assert "Caveat:" in conclusions(s).text
    # SLURM jobs get their own GPUs: overlapping windows there are normal...
    assert H2.verdict(_local_cells(tmp_path / "c", at_once, slurm=True)).verdict == "supported"
    # ...but SLURM cells that fell back to the CPU on one node shared its cores
    shared = _local_cells(tmp_path / "e", at_once, slurm=True, cpu=True)
    assert shared["concurrent"].astype(str).str.contains("on ws1").all()
    assert "ran at the same time as other cells on the same host" in conclusions(shared).text
    # g1 was stopped and resumed after g2 had ended: only its last attempt's window counts
    resumed = {1: ("2026-04-11T20:00:00Z", "2026-04-11T20:40:00Z", "2026-04-11T21:00:00Z"),
               2: ("2026-04-11T20:10:00Z", "2026-04-11T20:25:00Z")}
    assert H2.verdict(_local_cells(tmp_path / "d", resumed)).verdict == "supported"


def test_conclusions_word_a_tie_between_single_runs(ref, tmp_path):
    # single runs: the Wilson intervals of the 1,741 test images decide (100 % vs 100 %: no winner)
    c = conclusions(_summary_of(_set(ref, 256, 3, test_acc=100.0)))
    assert "the difference is inside the intervals (Wilson, on the test images)" in c.text
    # with no test-set size there is no interval at all, and the text says so
    s = _summary_of(_set(ref, 256, 3, test_acc=100.0)).drop(columns=["n_test"])
    c = conclusions(s)
    assert "a single run per configuration: no interval to tell them apart" in c.text
    assert "inside the intervals" not in c.text
    s = _repeats(
        tmp_path, {1: (2000.0, 2100.0, 2200.0), 2: (1500.0, 1510.0, 1520.0)},
        accs={1: (99.0, 99.5, 99.2), 2: (99.1, 99.4, 99.3)},
    )
    c = conclusions(s)
    assert "the difference is inside the intervals" in c.text and "single run" not in c.text
