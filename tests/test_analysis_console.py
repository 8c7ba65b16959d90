"""collect's console summary: fits 80 and 120 columns whole, and says what the run showed."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console
from test_analysis_helpers import paper_experiment, result_json, write_cell, write_manifest

from aslhpc.analysis import load_reference
from aslhpc.collecting import collect_experiment

REF = Path(__file__).resolve().parents[1] / "results" / "reference" / "lad2020.csv"


def _demo_like(tmp_path: Path) -> Path:
    """The demo's smoke matrix: 1-2 "GPUs" x b=32/64, 2 epochs, every cell fell back to the CPU."""
    exp = tmp_path / "smoke"
    write_manifest(exp, "smoke", [(g, bs, 0, "dp") for g in (1, 2) for bs in (32, 64)])
    for g in (1, 2):
        for bs, t, acc in ((32, 3.27, 94.12), (64, 3.28 + g, 52.94)):
            r = result_json("smoke", g, bs, exec_time_s=t, acc=(88.0, 95.0, acc), nvml=False, gpus_used=0)
            r["config"]["epochs"] = 2
            r["split"].update(train=731, val=81, test=17)
            write_cell(exp, r)
    return exp


def _render(exp: Path, width: int, verbose: bool = False) -> str:
    buf = io.StringIO()
    collect_experiment(
        exp, reference=load_reference(REF), console=Console(file=buf, width=width), plots=False,
        verbose=verbose,
    )
    return buf.getvalue()


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("which", ["demo", "matrix"])
def test_summary_fits_the_terminal_whole(tmp_path, width, which):
    exp = _demo_like(tmp_path) if which == "demo" else paper_experiment(tmp_path, "paper", skip=((512, 4),))
    text = _render(exp, width)
    lines = text.splitlines()
    assert all(len(line) <= width for line in lines), max(lines, key=len)
    assert "…" not in text  # no header or figure cut to an ellipsis
    assert len(lines) <= 35  # a summary, not the tables: one screen of a 40-row terminal
    for h in ("H1", "H2", "H3", "H4"):
        assert sum(line.startswith(f"{h} ") for line in lines) == 1
    if which == "demo":
        assert "b=32" in text and "b=64" in text and "3.27 s* · 94.12 %" in text
        assert "* ran on the CPU (GPU fallback): not GPU scaling" in text
        assert "2 epochs per cell (the study ran 25)" in text
        # no configuration in common with 2020: one line, no table of "not run"
        assert "the 2020 study ran b=128/256/512 × 1–4 GPUs, not run here" in " ".join(text.split())
        assert "not run │" not in text
    else:
        for bs in (128, 256, 512):
            assert f"b={bs}" in text
        assert "PENDING" in text  # the hole, by its state
        assert "b=128: 2,226 + 258/N s: 90 % serial, best speed-up 1.12× (R² 0.82)" in text  # the fit
        assert "2028.7 s · 99.82 %" in text or "2028.7 s\n" in text
        assert "2020 study also ran b=512 × 4 GPUs, not run here" in " ".join(text.split())
        assert "Fastest: b=256 × 3 GPUs at 2028.7 s" in " ".join(text.split())
        assert "×1.00 · +0.00 pp" in text or "×1.00\n" in text  # this run against 2020, shared cells only


def test_verbose_prints_the_full_tables_and_report_keeps_them(tmp_path):
    exp = paper_experiment(tmp_path, "paper")
    full = _render(exp, 200, verbose=True)
    assert "Using 3GPU" in full and "Exec. Time (secs)" in full and "2020 Exec. Time (secs)" in full
    report = (exp / "report.md").read_text(encoding="utf-8")
    assert "| Using 3GPU |" in report and "## Compared with the published 2020 reference" in report


def test_a_matrix_too_wide_for_80_columns_is_stacked_or_split_not_cut(tmp_path):
    exp = tmp_path / "wide"
    for bs in (16, 32, 64, 128, 256, 512, 1024, 2048):
        for g in (1, 2, 3, 4):
            write_cell(exp, result_json("wide", g, bs, exec_time_s=2345.67, acc=(99.0, 99.0, 99.99)))
    text = _render(exp, 80)
    assert "…" not in text and all(len(line) <= 80 for line in text.splitlines())
    for bs in (16, 2048):
        assert f"b={bs}" in text
    assert text.count("2345.7 s") == 32 + 1  # every cell whole, plus the "Fastest" line
