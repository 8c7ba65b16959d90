"""collect_experiment end to end as a library call: files, plots, report.md contents."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console
from test_analysis_helpers import paper_experiment, result_json, write_cell, write_json, write_manifest

from aslhpc.analysis import REFERENCE_LABEL, load_reference
from aslhpc.analysis.plots import PLOT_FILES
from aslhpc.collecting import collect_experiment, collect_reference

REF = Path(__file__).resolve().parents[1] / "results" / "reference" / "lad2020.csv"
PNG = b"\x89PNG\r\n\x1a\n"


def _experiment_with_holes_and_repeats(tmp_path: Path) -> Path:
    exp = paper_experiment(tmp_path, "paper", skip=((512, 4),))
    write_json(
        exp / "cells" / "g4-b512-r0" / "error.json",
        {"error": "CUDA error: out of memory", "traceback": "", "time": ""},
    )
    for r, t in ((1, 2040.0), (2, 2010.0)):
        write_cell(exp, result_json("paper", 3, 256, r, exec_time_s=t, job_id=f"20{r}"))
    return exp


def test_collect_writes_tables_plots_and_report(tmp_path):
    exp = _experiment_with_holes_and_repeats(tmp_path)
    out = collect_experiment(exp, reference=load_reference(REF))
    for name in (
        "cells.csv",
        "summary.csv",
        "summary.md",
        "tables.md",
        "table_b128.csv",
        "table_b512.csv",
        "verdicts.json",
        "comparison.csv",
        "comparison.md",
        "report.md",
    ):
        assert (exp / name).is_file() and (exp / name).stat().st_size > 0, name
    for f in PLOT_FILES.values():
        data = (exp / "plots" / f).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, f
    assert not list(exp.rglob(".*.tmp"))  # atomic writes leave no temp files
    report = out.report_path.read_text(encoding="utf-8")
    assert out.report_path == exp / "report.md"
    # tables (paper layout), with the repeated cell as mean ± hw and a failed hole row
    assert "### Batch size 256" in report and "| Using 3GPU |" in report
    assert "2026.24 ±" in report  # mean of 2028.72, 2040, 2010
    assert "| Using 4GPU | FAILED | FAILED | FAILED | FAILED | FAILED |" in report
    # plots linked relatively
    assert "![time](plots/time_vs_gpus.png)" in report
    # verdicts with evidence, conclusions
    assert "## Hypotheses" in report and "**not supported**" in report and "counter-example" in report
    assert "## Conclusions" in report and "The fastest configuration is batch size" in report
    # holes with reason, provenance per cell
    assert (
        "## Holes" in report
        and "g4-b512-r0 | 4 | 512 | 0 | dp | FAILED | CUDA error: out of memory" in report
    )
    assert "## Provenance" in report and "| g3-b256-r2 | COMPLETED |" in report and "202" in report
    assert "host: `d1001`" in report
    # the reference comparison is labelled
    assert f"## Compared with the {REFERENCE_LABEL}" in report and "2020 Exec. Time (secs)" in report
    cmp = (exp / "comparison.csv").read_text()
    assert "2028.72" in cmp


def test_collect_without_write_touches_nothing(tmp_path):
    exp = paper_experiment(tmp_path)
    before = sorted(p.name for p in exp.iterdir())
    out = collect_experiment(exp, write=False)
    assert out.report_path is None and sorted(p.name for p in exp.iterdir()) == before
    assert [v.verdict for v in out.analysis.verdicts] == [
        "supported",
        "not supported",
        "not supported",
        "not supported",
    ]


def test_collect_prints_tables_verdicts_and_holes(tmp_path):
    exp = _experiment_with_holes_and_repeats(tmp_path)
    buf = io.StringIO()
    collect_experiment(exp, console=Console(file=buf, width=200), plots=False, verbose=True)
    text = buf.getvalue()
    assert "Using 4GPU" in text and "Hypotheses" in text and "Conclusions" in text
    assert "CUDA error: out of memory" in text


def test_reference_report_is_labelled(tmp_path):
    out = collect_reference(REF, tmp_path / "ref", plots=False)
    report = out.report_path.read_text(encoding="utf-8")
    assert REFERENCE_LABEL in report and "read off nvidia-smi by hand" in report
    assert "| Using 3GPU | 1.809 | 1.739 | 1.719 | NA | 2028.72 | Yes |" in report
    assert (tmp_path / "ref" / "summary.csv").read_text().count(REFERENCE_LABEL) == 12


def test_nothing_completed_and_stray_dirs_do_not_crash(tmp_path):
    exp = tmp_path / "e"
    write_manifest(exp, "e", [(1, 128, 0, "dp"), (2, 128, 0, "dp")])
    (exp / "cells" / "junk").mkdir(parents=True)
    out = collect_experiment(exp)
    assert {v.verdict for v in out.analysis.verdicts} == {"inconclusive"}
    assert out.analysis.conclusions.fastest is None
    report = out.report_path.read_text(encoding="utf-8")
    assert "| Using 2GPU | PENDING | PENDING |" in report and "2 cells have no usable result" in report
    assert "Ignored 1 directory" in report and "`junk (PENDING:" in report
    assert not (exp / "plots").exists()


def test_report_shows_process_memory_and_data_on_gpu_beside_the_device_peak(tmp_path):
    exp = tmp_path / "fast"
    write_manifest(exp, "fast", [(1, 128, 0, "dp"), (2, 128, 0, "dp")])
    write_cell(exp, result_json("fast", 1, 128, data_device_gb=0.262))
    write_cell(exp, result_json("fast", 2, 128, data_device_gb=0.262))
    out = collect_experiment(exp, plots=False)
    report = out.report_path.read_text(encoding="utf-8")
    # the paper-shaped table: per-process peaks in the GPU columns (like the study's), the device-wide
    # total and the data on the GPU in named columns of their own, and a note saying what each measures
    assert (
        "| GPU 0 (GB, per-process) | GPU 1 (GB, per-process) | Device-wide total (GB) | Data on GPU (GB) |"
        in report
    )
    assert "| Using 2GPU | 1.558 | 1.520 | 3.100 | 0.262 |" in report
    tables_end = report.index("## All configurations")
    note = report[report.index("### Batch size 128") : tables_end]
    assert "per-process" in note and "compare like with like" in note and "`Data on GPU" in note
    assert "includes `Data on GPU (GB)`" in note  # a fast cell's per-process figure holds its dataset
    # the all-configurations tables: the per-process total in the main one; the device-wide total, the
    # data on the GPU and the process memory per GPU in the detail
    main, detail = md_tables(report[tables_end:])[:2]
    assert main[1]["peak GPU memory (GB, per-process total)"] == "3.078"
    assert detail[1]["device-wide total (GB)"] == "3.100"
    assert detail[1]["data on GPU (GB)"] == "0.262"
    assert detail[1]["per-process per GPU (GB)"] == "1.558 / 1.520"
    cells = (exp / "cells.csv").read_text().splitlines()[0].split(",")
    # CSV headers say what each memory figure measures
    want = {"data_device_gb", "gpu0_proc_gb", "gpu1_proc_gb", "gpu0_device_gb", "total_device_gb"}
    assert want <= set(cells)
    assert "gpu0_gb" not in cells and "total_gpu_gb" not in cells


def md_tables(text: str) -> list[list[dict[str, str]]]:
    """The Markdown tables in ``text``, in order, each as its rows (header -> cell)."""
    tables, header = [], None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            tables.append([])
        elif set(line) - set("|-"):
            tables[-1].append(dict(zip(header, cells, strict=True)))
    return tables


def _strict_json(path: Path) -> dict:
    """json.loads that refuses NaN/Infinity, as strict parsers (JavaScript, jq) do."""

    def refuse(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def test_verdicts_json_is_strict_json_with_null_for_missing_figures(tmp_path):
    exp = tmp_path / "e"
    write_manifest(exp, "e", [(1, 128, 0, "dp"), (2, 128, 0, "dp")])
    out = collect_experiment(exp, plots=False)
    assert out.analysis.conclusions.fastest_time_s != out.analysis.conclusions.fastest_time_s  # NaN in memory
    data = _strict_json(exp / "verdicts.json")
    assert data["conclusions"]["fastest_time_s"] is None and data["conclusions"]["fastest"] is None
    assert not list(exp.glob(".*.tmp"))


def test_report_says_which_epoch_the_accuracies_come_from(tmp_path):
    out = collect_experiment(paper_experiment(tmp_path), plots=False)
    report = out.report_path.read_text(encoding="utf-8")
    tables = report[report.index("## Tables") : report.index("## All configurations")]
    assert "lowest validation loss" in tables and "not the last epoch that `status` shows" in tables
    assert "Ran on the CPU" not in report and "(CPU run)" not in report


def test_cpu_fallback_speedup_is_not_labelled_gpu_scaling(tmp_path):
    exp = tmp_path / "cpu"
    write_manifest(exp, "cpu", [(1, 128, 0, "dp"), (2, 128, 0, "dp")])
    for g, t in ((1, 600.0), (2, 500.0)):
        write_cell(exp, result_json("cpu", g, 128, exec_time_s=t, gpus_used=0, nvml=False))
    report = collect_experiment(exp, plots=False).report_path.read_text(encoding="utf-8")
    assert "Ran on the CPU (GPU fallback): b=128 × 1 GPU, b=128 × 2 GPUs" in report
    assert "not GPU scaling" in report
    section = report[report.index("## All configurations") : report.index("## Where the time went")]
    main, detail = md_tables(section)[:2]
    assert main[1]["GPUs"] == "2 (ran on CPU)" and main[1]["GPU-hours"].endswith("(requested)")
    assert detail[1]["speed-up vs 1 GPU"] == "1.20 (CPU run)" and detail[1]["efficiency T1/(N·TN)"] == (
        "0.60 (CPU run)")
    # the paper table says why the 2-GPU cell did not run data parallel, from what it recorded
    assert "| Using 2GPU | n/m | n/m | 500.00 | No (ran on CPU: 0 of 2 GPUs used) |" in report


def _with_breakdown(
    exp: Path, g: int, bs: int, pipeline: str, wait: float, compute: float, util: float
) -> None:
    r = result_json(exp.name, g, bs)
    r["pipeline"] = r["config"]["pipeline"] = pipeline
    r["time_breakdown"] = {"data_wait_s": wait, "compute_s": compute, "eval_s": 100.0, "other_s": 10.0}
    for gpu in r["telemetry"]["gpus"]:
        gpu["util_mean_pct"] = util
    write_cell(exp, r)


def test_time_breakdown_table_plot_and_h2_evidence_when_recorded(tmp_path):
    exp = tmp_path / "bd"
    _with_breakdown(exp, 1, 128, "paper", 400.0, 1600.0, 60.0)
    _with_breakdown(exp, 4, 128, "paper", 1420.0, 580.0, 18.0)
    out = collect_experiment(exp)
    report = out.report_path.read_text(encoding="utf-8")
    section = report[report.index("## Where the time went") :]
    # waiting for data: 71 % of the training loop; GPU utilisation 18 %
    assert "| 128 | 4 | paper |" in section and "| 71 |" in section and "| 18 |" in section
    assert (exp / "plots" / "time_breakdown.png").read_bytes().startswith(PNG)
    assert "![breakdown](plots/time_breakdown.png)" in report
    h2 = next(v for v in out.analysis.verdicts if v.hypothesis == "H2")
    assert "at 4 GPUs" in h2.evidence and "b=128: 71 % waiting for data, GPU utilisation 18 %" in h2.evidence
    # GPU utilisation is in the all-configurations table too
    assert "GPU util (%)" in report


def test_without_a_breakdown_the_report_says_not_recorded(tmp_path):
    exp = paper_experiment(tmp_path, "paper")
    report = collect_experiment(exp, plots=False).report_path.read_text(encoding="utf-8")
    assert "Time breakdown: not recorded" in report
    assert not (exp / "plots" / "time_breakdown.png").exists()


def test_report_has_the_2020_cpu_run_as_labelled_reference_and_h4_reading(tmp_path):
    exp = paper_experiment(tmp_path, "paper")
    report = collect_experiment(exp, reference=load_reference(REF), plots=False).report_path.read_text(
        encoding="utf-8"
    )
    cpu = report[report.index("## The 2020 CPU run") :]
    assert cpu.startswith(f"## The 2020 CPU run — {REFERENCE_LABEL}")
    assert "1 epoch at batch size 128 in 1383.20 s" in cpu and "Section 6.6" in cpu
    assert "100.03 s per epoch" in cpu and "13.8× faster" in cpu  # 2500.82 s / 25 epochs, computed
    # H4: the study's reading with its quote, and the literal reading only as a labelled aside
    assert '"256 batches seem to be the optimal batch size"' in report and "How H4 is read" in report
    assert "*Aside, not the study's meaning:*" in report


def test_a_cpu_cell_sits_in_the_matrix_beside_the_2020_cpu_epoch(tmp_path):
    exp = paper_experiment(tmp_path, "paper")
    cpu = result_json("paper", 0, 128, exec_time_s=30000.0, nvml=False)
    write_cell(exp, cpu)
    out = collect_experiment(exp, reference=load_reference(REF), plots=False)
    report = out.report_path.read_text(encoding="utf-8")
    assert "| Using CPU |" in report
    assert "This run's CPU cell at batch size 128: 1200.00 s per epoch over 25 epochs." in report
    h2 = next(v for v in out.analysis.verdicts if v.hypothesis == "H2")
    assert h2.verdict == "not supported"  # the CPU cell is no GPU count: H2 is judged on the GPU cells


def test_the_report_names_the_network_with_its_size(tmp_path):
    """Parameters and FLOPs per image come from result.json's model block (what the trainer measured)."""
    exp = tmp_path / "sized"
    write_manifest(exp, "sized", [(1, 128, 0, "dp")])
    result = result_json("sized", 1, 128)
    result["model"] = {"spec": "torchvision:resnet18", "params": 11_178_051, "flops_per_image": 74_025_984,
                       "classes": ["a", "b", "c"]}
    write_cell(exp, result)
    report = collect_experiment(exp).report_path.read_text(encoding="utf-8")
    assert "Model: `torchvision:resnet18`, 11,178,051 parameters, 0.074 GFLOPs per image" in report, report
