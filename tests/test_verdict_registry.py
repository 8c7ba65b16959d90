"""The verdict registry end to end: paired H3 from test_predictions.csv, what verdicts.json records, an
added H5, and report.md's Caveats computed from the run's own data."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from test_analysis_helpers import result_json, write_cell, write_json, write_manifest

from aslhpc.analysis import load_reference
from aslhpc.analysis.analyze import reference_cells
from aslhpc.analysis.paired import parse_predictions
from aslhpc.analysis.tables import derive, summarize
from aslhpc.analysis.verdicts import (
    INCONCLUSIVE,
    REGISTRY,
    SUPPORTED,
    Evidence,
    Hypothesis,
    Settings,
    Verdict,
    evaluate,
    register,
)
from aslhpc.collecting import collect_experiment, collect_reference

REF = Path(__file__).resolve().parents[1] / "results" / "reference" / "lad2020.csv"
N_TEST = 1741  # result_json's test split


def _predictions(cell_dir: Path, n_correct: int, images: int = N_TEST, prefix: str = "A/A") -> None:
    """test_predictions.csv as the trainer writes it: the first ``n_correct`` images right, the rest wrong."""
    lines = ["image,label,predicted,correct"]
    for i in range(images):
        ok = i < n_correct
        lines.append(f"{prefix}{i}.jpg,0,{0 if ok else 1},{int(ok)}")
    (cell_dir / "test_predictions.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _two_batches(root: Path, correct: tuple[int, int], *, predictions: bool = True,
                 tf32: bool | None = True, repeats: int = 1, gpus_used: int | None = None) -> Path:
    """One GPU count, batch sizes 128 and 256; test accuracy from ``correct`` images of 1741."""
    exp = root / "pairs"
    write_manifest(exp, "pairs", [(2, bs, r, "dp") for bs in (128, 256) for r in range(repeats)])
    for (bs, k) in zip((128, 256), correct, strict=True):
        for r in range(repeats):
            acc = 100.0 * k / N_TEST
            res = result_json("pairs", 2, bs, r, acc=(99.0, 99.0, acc), exec_time_s=1000.0 - bs + r,
                              gpus_used=gpus_used)
            if tf32 is not None:
                res["tf32"] = tf32
            res["time_breakdown"] = {"data_wait_s": 10.0, "compute_s": 500.0, "eval_s": 50.0,
                                     "other_s": 1.0, "clock": "host perf_counter (test)"}
            d = write_cell(exp, res)
            if predictions:
                _predictions(d, k)
    return exp


def _h3(out) -> Verdict:
    return next(v for v in out.analysis.verdicts if v.hypothesis == "H3")


def test_clearly_better_predictions_give_a_conclusive_paired_h3(tmp_path):
    # 97.0 % vs 98.0 % on 1741 images: the Wilson intervals overlap, but b=256 got 17 more images right and
    # none wrong that b=128 got right, so McNemar's exact test is decisive (p = 2 * 0.5**17)
    exp = _two_batches(tmp_path, (1689, 1706))
    out = collect_experiment(exp, plots=False)
    h3 = _h3(out)
    assert h3.verdict == SUPPORTED
    assert "McNemar exact" in h3.test
    (cmp,) = h3.figures["comparisons"]
    assert cmp["p_value"] == pytest.approx(2 * 0.5**17)
    assert cmp["pairs"][0]["only_a"] == 0 and cmp["pairs"][0]["only_b"] == 17
    report = (exp / "report.md").read_text(encoding="utf-8")
    assert "test: McNemar exact (paired)" in report
    data = json.loads((exp / "verdicts.json").read_text(encoding="utf-8"))
    saved = next(v for v in data["verdicts"] if v["hypothesis"] == "H3")
    assert saved["test"].startswith("McNemar exact")
    assert saved["figures"]["comparisons"][0]["p_value"] < 1e-4
    assert saved["figures"]["comparisons"][0]["pairs"][0]["only_b"] == 17
    assert saved["figures"]["comparisons"][0]["alpha"] == 0.05
    assert "2 GPUs b=128→b=256 p = 1.53e-05" in h3.evidence
    assert data["paired_tests"][0]["p_value"] == pytest.approx(2 * 0.5**17)
    # the conclusions weigh the runner-up by the same paired test, not by the overlapping Wilson intervals
    assert "It is ahead of 128 × 2 GPUs" in out.analysis.conclusions.text
    assert "McNemar's exact test on the same test images (p = 1.53e-05" in out.analysis.conclusions.text


def test_the_same_files_without_predictions_stay_unpaired_and_inconclusive(tmp_path):
    exp = _two_batches(tmp_path, (1689, 1706), predictions=False)
    out = collect_experiment(exp, plots=False)
    h3 = _h3(out)
    assert h3.verdict == INCONCLUSIVE and "Wilson" in h3.test and "McNemar" not in h3.test
    assert "inside the confidence intervals" in h3.evidence
    assert "not clearly ahead" in out.analysis.conclusions.text


def test_identical_predictions_give_p_one_and_no_difference(tmp_path):
    exp = _two_batches(tmp_path, (1700, 1700))
    h3 = _h3(collect_experiment(exp, plots=False))
    assert h3.verdict == INCONCLUSIVE
    assert h3.figures["comparisons"][0]["p_value"] == 1.0
    assert "paired test finds no significant difference" in h3.evidence


def test_a_significant_fall_is_a_paired_counter_example(tmp_path):
    exp = _two_batches(tmp_path, (1706, 1660))
    h3 = _h3(collect_experiment(exp, plots=False))
    assert h3.verdict == "not supported" and "McNemar exact" in h3.evidence


def test_different_test_images_are_not_paired(tmp_path):
    exp = _two_batches(tmp_path, (1689, 1706))
    _predictions(exp / "cells" / "g2-b256-r0", 1706, prefix="B/B")  # another test set: no pairs
    h3 = _h3(collect_experiment(exp, plots=False))
    assert "McNemar" not in h3.test and h3.verdict == INCONCLUSIVE


def test_a_damaged_predictions_file_is_skipped(tmp_path):
    assert parse_predictions("image,label,predicted,correct\nA/A1.jpg,0,0,maybe\n") is None
    frame = parse_predictions("image,label,predicted,correct\nA/A12.jpg,0,0,1\n")
    assert frame is not None and bool(frame["correct"].iloc[0]) and int(frame["frame"].iloc[0]) == 12


def test_settings_carry_the_cli_knobs_into_statements(tmp_path):
    exp = _two_batches(tmp_path, (1689, 1706))
    out = collect_experiment(exp, plots=False, h1_threshold=99.5, h3_metric="val_acc", h4_r2=0.75)
    by = {v.hypothesis: v for v in out.analysis.verdicts}
    assert "above 99.5 %" in by["H1"].statement and by["H1"].verdict == "not supported"
    assert "validation accuracy" in by["H3"].statement and "McNemar" not in by["H3"].test
    assert "R² ≥ 0.75" in by["H4"].statement
    data = json.loads((exp / "verdicts.json").read_text(encoding="utf-8"))
    assert data["h1_threshold"] == 99.5 and data["h4_r2"] == 0.75
    assert data["settings"]["h3_metric"] == "val_acc"


def test_an_added_h5_is_one_registered_class():
    class H5(Hypothesis):
        key, paper, template = "H5", "", "Nothing fails (threshold {h1_threshold:g})."

        def decide(self, summary: pd.DataFrame, settings: Settings, evidence: Evidence) -> Verdict:
            return Verdict(self.key, self.statement(settings), SUPPORTED, f"{len(summary)} rows")

    register(H5)
    try:
        summary = summarize(derive(reference_cells(load_reference(REF))))
        verdicts = evaluate(summary, Settings(h1_threshold=90.0))
        assert [v.hypothesis for v in verdicts] == ["H1", "H2", "H3", "H4", "H5"]
        assert verdicts[-1].statement == "Nothing fails (threshold 90)."
        assert verdicts[-1].evidence == "12 rows"
        assert REGISTRY[-1] is H5 and [c.key for c in REGISTRY] == ["H1", "H2", "H3", "H4", "H5"]
    finally:
        REGISTRY.remove(H5)


def test_an_added_h5_reaches_the_report(tmp_path):
    class H5(Hypothesis):
        key, template = "H5", "Every cell completed."

        def decide(self, summary: pd.DataFrame, settings: Settings, evidence: Evidence) -> Verdict:
            ok = bool((summary["n"] > 0).all())
            return Verdict(self.key, self.statement(settings), SUPPORTED if ok else INCONCLUSIVE, "counted")

    register(H5)
    try:
        exp = _two_batches(tmp_path, (1689, 1706))
        collect_experiment(exp, plots=False)
        report = (exp / "report.md").read_text(encoding="utf-8")
        assert "| H5 | Every cell completed. | **supported** |" in report
    finally:
        REGISTRY.remove(H5)


def _caveats(report: str) -> str:
    return report.split("## Caveats", 1)[1].split("\n## ", 1)[0]


def test_caveats_say_what_applies_to_this_run(tmp_path):
    exp = _two_batches(tmp_path, (1689, 1706), tf32=True)
    collect_experiment(exp, plots=False)
    c = _caveats((exp / "report.md").read_text(encoding="utf-8"))
    assert "Every configuration ran once (no repeats)" in c
    assert "TF32" in c and "on in 2 GPU cell(s)" in c
    assert "host perf_counter (test)" in c and "`Exec. Time` is `exec_time_s`" in c
    assert "per-process peak" in c
    assert "fell back to the CPU" not in c and "published 2020 reference" not in c


def test_caveats_with_repeats_and_a_cpu_fallback(tmp_path):
    exp = _two_batches(tmp_path, (1689, 1706), tf32=None, repeats=2, gpus_used=0, predictions=False)
    collect_experiment(exp, plots=False)
    c = _caveats((exp / "report.md").read_text(encoding="utf-8"))
    assert "ran once" not in c  # every configuration has two runs
    assert "4 cell(s) asked for GPUs but fell back to the CPU" in c and "`g2-b128-r0`" in c
    assert "TF32" not in c  # no GPU cell ran


def test_reference_rows_are_labelled_in_the_caveats(tmp_path):
    out = collect_reference(load_reference(REF), tmp_path / "ref", plots=False)
    c = _caveats(out.report_path.read_text(encoding="utf-8"))
    assert "The rows are the published 2020 reference" in c and "not measured by aslhpc" in c
    assert "TF32" not in c and "ran once" in c


def test_tf32_off_and_unrecorded_are_told_apart(tmp_path):
    exp = _two_batches(tmp_path, (1689, 1706), tf32=False)
    res = json.loads((exp / "cells" / "g2-b256-r0" / "result.json").read_text(encoding="utf-8"))
    del res["tf32"]
    write_json(exp / "cells" / "g2-b256-r0" / "result.json", res)
    collect_experiment(exp, plots=False)
    c = _caveats((exp / "report.md").read_text(encoding="utf-8"))
    assert "off (full FP32) in 1 GPU cell(s)" in c and "not recorded in 1 GPU cell(s) (`g2-b256-r0`" in c


def test_a_single_blocked_run_gets_its_block_bootstrap_interval(tmp_path):
    # the blocked split tests on runs of consecutive frames: its accuracy's interval resamples whole runs
    exp = tmp_path / "blocked"
    write_manifest(exp, "blocked", [(1, 128, 0, "dp")])
    d = write_cell(exp, result_json("blocked", 1, 128, acc=(99.0, 99.0, 97.0), split_kind="blocked"))
    lines = ["image,label,predicted,correct"]
    for i in range(N_TEST):  # 35 runs of 50 frames (a gap in the frame numbers between runs)
        ok = (i * 7919) % 100 < 97
        lines.append(f"A/A{i + (i // 50) * 10}.jpg,0,{0 if ok else 1},{int(ok)}")
    (d / "test_predictions.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = collect_experiment(exp, plots=False)
    h1 = next(v for v in out.analysis.verdicts if v.hypothesis == "H1")
    assert "block bootstrap" in h1.test and "bootstrap over the blocked split's runs" in h1.evidence
    row = out.analysis.summary.iloc[0]
    assert row["test_acc_lo"] < 97.0 < row["test_acc_hi"]
    assert row["test_acc_interval"] == "block bootstrap over 35 frame runs"


def test_caveats_name_the_epochs_and_the_pipeline_when_they_are_not_the_studys(tmp_path):
    """Issue 25.6: a 2-epoch smoke cell's verdict does not stand beside the paper's without the word that it
    ran 2 of 25 epochs, on another input pipeline."""
    exp = _two_batches(tmp_path, (1689, 1706))
    for cid in ("g2-b128-r0", "g2-b256-r0"):
        path = exp / "cells" / cid / "result.json"
        res = json.loads(path.read_text(encoding="utf-8"))
        res["epochs"], res["pipeline"] = 2, "fast"
        write_json(path, res)
    collect_experiment(exp, plots=False)
    c = _caveats((exp / "report.md").read_text(encoding="utf-8"))
    assert "Every cell trained 2 epochs, not the study's 25" in c
    assert "Every cell ran the `fast` input pipeline, not `paper`" in c
    paper = _two_batches(tmp_path / "paper", (1689, 1706))
    collect_experiment(paper, plots=False)
    c = _caveats((paper / "report.md").read_text(encoding="utf-8"))
    assert "not the study's 25" not in c  # the helper's cells ran 25 epochs on the paper pipeline
