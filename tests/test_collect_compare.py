"""``collect --compare OTHER_RESULTS_DIR`` (issue 24): another experiment beside this one in report.md,
per configuration both completed; bad input is one error line, exit 2, before anything is written."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console
from test_analysis_helpers import paper_experiment, result_json, write_cell, write_manifest
from test_analysis_report import md_tables

from aslhpc.analysis.compare import compare_experiments
from aslhpc.collect import main
from aslhpc.collecting import collect_experiment, compared_dir
from aslhpc.errors import AslhpcError


def _other(root: Path, name: str = "h200") -> Path:
    """A second experiment: b=128 on 1 and 2 GPUs (faster, one less accurate), b=128 × 4 GPUs only here."""
    exp = root / name
    write_manifest(exp, name, [(1, 128, 0, "dp"), (2, 128, 0, "dp"), (4, 128, 0, "dp")])
    write_cell(exp, result_json(name, 1, 128, exec_time_s=1250.41, acc=(99.0, 99.5, 99.70)))
    write_cell(exp, result_json(name, 2, 128, exec_time_s=2306.56, mem_gb=(3.138, 3.062)))
    write_cell(exp, result_json(name, 4, 128, exec_time_s=800.0))
    return exp


def _this(root: Path) -> Path:
    exp = root / "paper"
    write_manifest(exp, "paper", [(1, 128, 0, "dp"), (2, 128, 0, "dp"), (1, 256, 0, "dp")])
    for g, bs in ((1, 128), (2, 128), (1, 256)):
        write_cell(exp, result_json("paper", g, bs))
    return exp


def _run(argv: list[str]) -> tuple[int, str]:
    buf = io.StringIO()
    rc = main(argv, console=Console(file=buf, width=200))
    return rc, buf.getvalue()


def _section(report: str) -> str:
    return report[report.index("## Compared with the experiment") : report.index("## Holes")]


def test_report_puts_the_two_experiments_side_by_side(tmp_path):
    this, other = _this(tmp_path / "a"), _other(tmp_path / "b")
    rc, out = _run(["--results", str(tmp_path / "a"), "--compare", str(tmp_path / "b"), "--no-plots"])
    assert rc == 0
    section = _section((this / "report.md").read_text(encoding="utf-8"))
    assert section.startswith("## Compared with the experiment `h200`")
    assert f"`paper`: this experiment, `{this}`" in section and f"`h200`: `{other}`" in section
    (table,) = md_tables(section)
    assert [(r["batch"], r["GPUs"]) for r in table] == [("128", "1"), ("128", "2")]
    one, two = table
    assert one["time (s) paper"] == "2500.82" and one["time (s) h200"] == "1250.41"
    assert one["time (s) Δ"] == "-50.0 %" and one["test acc (%) Δ"] == "-0.18 pp"
    assert two["time (s) Δ"] == "+0.0 %"
    assert two["peak memory (GB) paper"] == "3.078" and two["peak memory (GB) h200"] == "6.178"
    assert two["peak memory (GB) Δ"] == "+100.7 %"  # (6.178 − 3.078) / 3.078, both measured
    assert "Only in `paper`: b=256 × 1 GPU." in section and "Only in `h200`: b=128 × 4 GPUs." in section
    # the terminal: one line with the ranges, the configurations only one side has
    assert "Compared with h200" in out and "2 configuration(s) in both" in out
    assert "only in h200: b=128 × 4 GPUs" in out


def test_the_experiments_own_folder_works_too_and_same_names_get_neutral_labels(tmp_path):
    this = _this(tmp_path / "a")
    other = _other(tmp_path / "b", name="paper")
    out = collect_experiment(this, compare=other, plots=False, accounting=False)
    section = _section(out.report_path.read_text(encoding="utf-8"))
    assert f"`this`: this experiment `paper`, `{this}`; `other`: `paper`, `{other}`" in section
    (table,) = md_tables(section)
    assert "time (s) this" in table[0] and "time (s) other" in table[0]


def test_a_cpu_side_is_marked(tmp_path):
    this = _this(tmp_path / "a")
    other = tmp_path / "b" / "cpu"
    write_manifest(other, "cpu", [(2, 128, 0, "dp")])
    write_cell(other, result_json("cpu", 2, 128, exec_time_s=500.0, gpus_used=0, nvml=False))
    out = collect_experiment(this, compare=tmp_path / "b", plots=False, accounting=False)
    (row,) = md_tables(_section(out.report_path.read_text(encoding="utf-8")))[0]
    assert row["time (s) cpu"] == "500.00 (CPU)" and row["peak memory (GB) Δ"] == "n/m"


@pytest.mark.parametrize("case", ["missing", "empty", "two", "itself"])
def test_bad_compare_input_is_one_error_line_before_any_output(tmp_path, capsys, case):
    this = _this(tmp_path / "a")
    target = {"missing": tmp_path / "nope", "empty": tmp_path / "empty", "two": tmp_path / "b",
              "itself": tmp_path / "a"}[case]
    (tmp_path / "empty").mkdir()
    _other(tmp_path / "b", "one")
    _other(tmp_path / "b", "two")
    rc, out = _run(["--results", str(tmp_path / "a"), "--compare", str(target), "--no-plots"])
    err = capsys.readouterr().err
    assert rc == 2 and out == "" and err.count("\n") == 1 and err.startswith(f"error: --compare {target}")
    want = {"missing": "no such directory", "empty": "no experiment in it", "two": "2 experiments (one, two)",
            "itself": "is the experiment being collected"}[case]
    assert want in err and ("give" in err or "pick one" in err)  # the problem and the fix
    assert not (this / "report.md").exists() and not (this / "cells.csv").exists()


def test_compare_conflicts_with_reference_only(tmp_path, capsys):
    rc, _ = _run(["--reference-only", "--compare", str(tmp_path), "--results", str(tmp_path)])
    assert rc == 2 and "--compare" in capsys.readouterr().err


def test_compared_dir_names_the_fix_for_two_experiments(tmp_path):
    _other(tmp_path, "x")
    _other(tmp_path, "y")
    with pytest.raises(AslhpcError, match=r"pick one: --compare .*x"):
        compared_dir(tmp_path)
    assert compared_dir(tmp_path / "x") == tmp_path / "x"


def test_compare_experiments_is_a_pure_match_on_the_configuration(tmp_path):
    a = collect_experiment(paper_experiment(tmp_path / "a"), write=False, accounting=False).analysis
    b = collect_experiment(_other(tmp_path / "b"), write=False, accounting=False).analysis
    c = compare_experiments(a.summary, b.summary, this_name="paper", this_dir=tmp_path / "a",
                            other_name="h200", other_dir=tmp_path / "b")
    assert len(c.both) == 3 and len(c.only_other) == 0 and len(c.only_this) == 9
    assert set(c.both["gpus"]) == {1, 2, 4}


def test_verbose_prints_one_whole_table_per_figure(tmp_path):
    _this(tmp_path / "a")
    _other(tmp_path / "b")
    rc, out = _run(["--results", str(tmp_path / "a"), "--compare", str(tmp_path / "b"), "--no-plots",
                    "--verbose"])
    assert rc == 0 and "…" not in out
    for label in ("time (s)", "test acc (%)", "peak memory (GB)"):
        assert f"{label}: paper vs h200" in out
