"""report.md's configuration tables stay readable (issue 26, finding 7): a compact main table, the detail
apart, constants said once, the 2020 configurations not run here in one line, a fallback's reason."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from test_analysis_helpers import paper_experiment, result_json, write_cell, write_manifest
from test_analysis_report import md_tables

from aslhpc.analysis import load_reference
from aslhpc.analysis.tables import (
    MAIN_VIEW_MAX_COLUMNS,
    configs_line,
    data_parallel_label,
    main_view,
)
from aslhpc.collecting import collect_experiment, collect_reference

REF = Path(__file__).resolve().parents[1] / "results" / "reference" / "lad2020.csv"
MAIN_COLUMNS = ["batch", "GPUs", "runs", "exec time (s)", "test acc (%)",
                "peak GPU memory (GB, per-process total)", "GPU-hours"]


def _section(report: str, start: str, end: str) -> str:
    return report[report.index(start) : report.index(end)]


def test_main_table_holds_the_deciding_figures_and_says_the_constants_once(tmp_path):
    out = collect_experiment(paper_experiment(tmp_path), plots=False, accounting=False)
    report = out.report_path.read_text(encoding="utf-8")
    section = _section(report, "## All configurations", "## Where the time went")
    main, detail = md_tables(section)
    assert list(main[0]) == MAIN_COLUMNS  # a column more fails here: put it in the detail table
    assert len(main) == 12 and len(list(detail[0])) <= 10
    shared = "All configurations: strategy `dp`, pipeline `fast`, split `random`, 25 epochs, all COMPLETED."
    assert shared in section
    row = next(r for r in main if r["batch"] == "256" and r["GPUs"] == "3")
    assert row["exec time (s)"] == "2028.72" and row["runs"] == "1/1"
    assert row["test acc (%)"].startswith("99.82 [") and row["peak GPU memory (GB, per-process total)"] == (
        "5.234")  # measured: (1.809 + 1.739 + 1.719) − 3 × 0.011 of other processes


def test_main_table_stays_bounded_when_every_key_varies(tmp_path):
    exp = tmp_path / "mixed"
    write_manifest(exp, "mixed", [(1, 128, 0, "dp"), (2, 128, 0, "dp"), (2, 128, 0, "ddp")])
    write_cell(exp, result_json("mixed", 1, 128))
    write_cell(exp, result_json("mixed", 2, 128, strategy="ddp"))
    paper = result_json("mixed", 1, 256, split_kind="blocked")
    paper["pipeline"] = paper["config"]["pipeline"] = "paper"
    write_cell(exp, paper)
    out = collect_experiment(exp, plots=False, accounting=False)
    view = main_view(out.analysis.summary)
    assert {"strategy", "pipeline", "split", "state"} <= set(view.columns)
    assert len(view.columns) <= MAIN_VIEW_MAX_COLUMNS
    hole = view[view["runs"] == "0/1"].iloc[0]
    assert hole["exec time (s)"] == hole["state"] != "COMPLETED"


def test_reference_configurations_not_run_are_one_line(tmp_path):
    exp = tmp_path / "two"
    write_manifest(exp, "two", [(1, 128, 0, "dp"), (2, 128, 0, "dp")])
    write_cell(exp, result_json("two", 1, 128, exec_time_s=600.0))
    write_cell(exp, result_json("two", 2, 128, exec_time_s=500.0))
    out = collect_experiment(exp, reference=load_reference(REF), plots=False, accounting=False)
    report = out.report_path.read_text(encoding="utf-8")
    section = report[report.index("## Compared with the") :]
    section = section[: section.index("Verdicts recomputed")]
    assert "not run |" not in section and "| Using 3GPU" not in section
    assert section.count("### Batch size") == 1  # b=256 and b=512: nothing in common, no table
    assert ("Not run here, so no rows above: b=128 × 3, 4 GPUs; b=256 × 1–4 GPUs; b=512 × 1–4 GPUs "
            "(10 of the reference's 12 configurations).") in section
    (table,) = md_tables(section)
    assert [r[""] for r in table] == ["Using 1GPU", "Using 2GPU"]
    assert table[0]["2020 Exec. Time (secs)"] == "2500.82"  # the reference stays labelled 2020
    assert "not run" in (exp / "comparison.csv").read_text()  # the CSV keeps every reference row
    cmp_md = (exp / "comparison.md").read_text()  # comparison.md reads as the report's section does
    assert "not run |" not in cmp_md and cmp_md.count("## Batch size") == 1
    assert "Not run here, so no rows above: b=128 × 3, 4 GPUs; b=256 × 1–4 GPUs; b=512 × 1–4 GPUs." in cmp_md


def test_a_cpu_fallback_says_why_it_was_not_data_parallel(tmp_path):
    row = pd.Series({"data_parallel": False, "gpus": 2, "gpus_used": 0.0})
    assert data_parallel_label(row) == "No (ran on CPU: 0 of 2 GPUs used)"
    one = pd.Series({"data_parallel": False, "gpus": 2, "gpus_used": 1.0})
    assert data_parallel_label(one) == "No (1 of 2 GPUs used)"
    assert data_parallel_label(pd.Series({"data_parallel": False, "gpus": 1, "gpus_used": 1.0})) == "No"
    assert data_parallel_label(pd.Series({"data_parallel": True, "gpus": 2, "gpus_used": 2.0})) == "Yes"


def test_reference_only_report_has_the_compact_table(tmp_path):
    out = collect_reference(REF, tmp_path / "ref", plots=False)
    report = out.report_path.read_text(encoding="utf-8")
    (main,) = md_tables(_section(report, "## All configurations", "## Hypotheses"))[:1]
    assert len(main) == 12 and len(main[0]) <= MAIN_VIEW_MAX_COLUMNS
    assert next(r for r in main if r["batch"] == "256" and r["GPUs"] == "3")["exec time (s)"] == "2028.72"


def test_configs_line_groups_by_batch_size():
    assert configs_line([(512, 2), (128, 3), (128, 4), (512, 1), (512, 3)]) == (
        "b=128 × 3, 4 GPUs; b=512 × 1–3 GPUs")
    assert configs_line([(64, 1)]) == "b=64 × 1 GPU"


def test_the_time_breakdown_marks_cells_that_shared_a_host_as_contended() -> None:
    """Issue 25.6: local cells that ran at the same time waited on each other; their breakdown says so."""
    import pandas as pd

    from aslhpc.analysis.tables import breakdown_view

    row = {"split_kind": "random", "n": 1, "batch_size": 32, "gpus": 1, "pipeline": "fast",
           "time_data_wait_s": 1.0, "time_compute_s": 3.0, "time_eval_s": 0.5, "time_other_s": 0.5}
    summary = pd.DataFrame([{**row, "concurrent": "g1-b32-r0 with g1-b64-r0 on laptop"},
                            {**row, "batch_size": 64, "concurrent": ""}])
    view = breakdown_view(summary)
    assert list(view["GPUs"]) == ["1 (contended)", "1"]
