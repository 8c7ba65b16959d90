"""``python -m aslhpc.collect`` end to end on a temporary results directory."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from test_analysis_helpers import paper_experiment, result_json, write_cell

from aslhpc.collect import main

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "results" / "reference" / "lad2020.csv"
LABEL = "published 2020 reference (not measured by aslhpc)"


def _run(argv: list[str]) -> tuple[int, str]:
    buf = io.StringIO()
    rc = main(argv, console=Console(file=buf, width=240))
    return rc, buf.getvalue()


def test_collect_single_experiment_end_to_end(tmp_path, monkeypatch):
    # no SLURM to ask (CI runs one): the skipped cell's job is unknown
    monkeypatch.setenv("PATH", str(tmp_path))
    exp = paper_experiment(tmp_path, "paper", skip=((512, 4),))
    rc, out = _run(["--results", str(tmp_path), "--reference-file", str(REF), "--no-plots"])
    assert rc == 0
    for name in ("report.md", "cells.csv", "summary.csv", "tables.md", "verdicts.json", "comparison.md"):
        assert (exp / name).is_file(), name
    assert not (exp / "plots").exists()  # --no-plots
    assert out.rstrip().endswith(f"report: {exp / 'report.md'}")
    # the summary: the matrix with the hole's state, one line per verdict, the shared configurations
    assert "b=512" in out and "PENDING" in out and "not supported" in out
    assert "×1.00 · +0.00 pp" in out and "the 2020 study also ran b=512 × 4 GPUs, not run here" in out
    assert "Using 3GPU" not in out and f"this run vs {LABEL}" not in out  # full tables: --verbose
    rc, full = _run(["--results", str(tmp_path), "--reference-file", str(REF), "--no-plots", "--verbose"])
    assert rc == 0 and "Using 3GPU" in full and f"this run vs {LABEL}" in full


def test_reference_flag_prints_the_run_beside_the_reference(tmp_path):
    paper_experiment(tmp_path, "paper")
    rc, out = _run(
        ["--results", str(tmp_path), "--experiment", "paper", "--reference-file", str(REF), "--no-plots",
         "--verbose"]
    )
    assert rc == 0 and "2020 Exec. Time (secs)" in out and f"H2 ({LABEL}): not supported" in out


def test_reference_only_prints_the_papers_verdicts(tmp_path):
    rc, out = _run(
        ["--reference-only", "--reference-file", str(REF), "--results", str(tmp_path), "--no-plots",
         "--verbose"]
    )
    assert rc == 0
    assert LABEL in out
    for h, verdict in (
        ("H1", "supported"),
        ("H2", "not supported"),
        ("H3", "not supported"),
        ("H4", "not supported"),
    ):
        line = next(line for line in out.splitlines() if f"│ {h}:" in line)
        assert f"│ {verdict} " in line, line
    assert "256 × 3 GPUs at 2028.72 s" in out and "5.267 GB per-process in total" in out
    assert (tmp_path / "lad2020-analysis" / "report.md").is_file()


def test_several_experiments_need_a_name(tmp_path, capsys):
    paper_experiment(tmp_path, "a")
    paper_experiment(tmp_path, "b")
    rc, _ = _run(["--results", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: 2 experiments") and "(a, b)" in err and err.count("\n") == 1
    rc, _ = _run(["--results", str(tmp_path / "none")])
    assert rc == 2 and "no experiment with a manifest.json" in capsys.readouterr().err


def test_bad_reference_file_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("batch_size,gpus,exec_time_s\n128,1,2500\n", encoding="utf-8")
    rc, _ = _run(["--reference-only", "--reference-file", str(bad), "--results", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith(f"error: reference file {bad} lacks columns gpu0_gb, gpu1_gb")


def test_mixed_splits_refused_then_allowed(tmp_path, capsys):
    exp = paper_experiment(tmp_path, "paper")
    write_cell(exp, result_json("paper", 1, 128, repeat=1, split_hash="0ddba11"))
    rc, _ = _run(["--results", str(tmp_path), "--no-plots"])
    assert rc == 2 and "--allow-mixed-splits" in capsys.readouterr().err
    rc, _ = _run(["--results", str(tmp_path), "--no-plots", "--allow-mixed-splits"])
    assert rc == 0


def test_module_entry_point(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "aslhpc.collect",
        "--reference-only",
        "--no-plots",
        "--results",
        str(tmp_path),
    ]
    cmd += ["--reference-file", str(REF)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "report: " in proc.stdout and "not supported" in proc.stdout
