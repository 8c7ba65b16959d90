"""Requested vs used per cell (aslhpc.analysis.efficiency): the figures and the plain hints."""

from __future__ import annotations

import math
import subprocess

import pytest

from aslhpc.analysis.efficiency import Usage, efficiency_frame, hint, markdown, parse_duration_s
from aslhpc.snapshot import sacct_usage


def test_an_oversized_request_gets_the_hint_a_user_can_act_on() -> None:
    u = Usage("g1-b32-r0", cores=8, mem_req_gb=16, gpus=1, elapsed_s=3600, cpu_time_s=3600,
              rss_peak_gb=1.2, gpu_util_pct=20.0, gpu_mem_peak_gb=3.0, gpu_mem_total_gb=32.0)
    text = hint(u)
    assert "asked 16 GB, peaked at 1.2 GB: --mem 2G would do" in text
    assert "used 12% of 8 CPUs: about 2 would do" in text  # 3600 CPU-s / (8 cores x 3600 s)
    assert "the 1 GPU(s) were 20% busy on average" in text
    row = efficiency_frame([u]).iloc[0]
    assert row["cpu_eff_pct"] == pytest.approx(12.5) and row["cpu_from"] == "sacct"
    assert row["gpu_h_charged"] == pytest.approx(1.0) and row["gpu_h_useful"] == pytest.approx(0.2)
    assert row["mem_pct"] == pytest.approx(7.5)


def test_a_well_sized_cell_gets_no_hint_and_a_cpu_cell_says_why_it_has_no_gpu_figures() -> None:
    fit = Usage("a", cores=2, mem_req_gb=4, gpus=0, elapsed_s=100, cpu_time_s=160, rss_peak_gb=3.0)
    assert hint(fit) == ""
    cpu = Usage("b", cores=1, mem_req_gb=1, gpus=2, elapsed_s=60, cpu_util_pct=30.0, rss_peak_gb=0.6,
                no_gpu_reason="CPU fallback: 2 GPU(s) requested, 0 visible")
    frame = efficiency_frame([fit, cpu])
    b = frame.iloc[1]
    assert b["cpu_from"] == "sampled" and b["cpu_eff_pct"] == 30.0
    assert math.isnan(b["gpu_util_pct"]) and math.isnan(b["gpu_h_useful"])
    assert b["hint"] == "no GPU figures: CPU fallback: 2 GPU(s) requested, 0 visible"
    md = "\n".join(markdown(frame))
    assert "## What each cell used" in md and "| b | 1 | 30% (sampled) |" in md


def test_a_request_the_cell_outgrew_is_flagged_as_clearly_as_one_too_large() -> None:
    """Issue 25.8: RSS 1.2 of 1 GB asked (seff would say >100 %) gets a hint and a mark in status."""
    from aslhpc.analysis.efficiency import compact

    over = Usage("g1-b64-r0", cores=1, mem_req_gb=1, gpus=0, elapsed_s=60, rss_peak_gb=1.2)
    assert hint(over) == ("peaked at 1.2 GB, above the 1 GB asked: the job is at its memory limit (SLURM "
                          "ends it OUT_OF_MEMORY past it); --mem 2G")
    near = Usage("n", cores=1, mem_req_gb=4, gpus=0, elapsed_s=60, rss_peak_gb=3.8)
    assert hint(near).startswith("peaked at 3.8 GB, near the 4 GB asked") and hint(near).endswith("--mem 6G")
    frame = efficiency_frame([over, near])
    assert compact(frame.iloc[0]) == "RSS 1.2/1 GB (at limit) | GPU -"
    assert "at limit" not in compact(efficiency_frame([Usage("ok", 1, 4, 0, 60, rss_peak_gb=2.0)]).iloc[0])


def test_sacct_cpu_time_comes_from_the_allocation_row_in_one_call() -> None:
    """Recorded on the mini cluster: the allocation row's TotalCPU is the sum of its steps."""
    text = ("198_0|00:04.450|00:00:16|\n198_0.batch|00:00.010|00:00:16|5120K\n"
            "198_0.0|00:04.439|00:00:16|1500M\n7|1-02:00:00|2-00:00:00|\n")
    calls = []

    def run(cmd: list[str]) -> subprocess.CompletedProcess:
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, text, "")

    got = sacct_usage(["198_0", "7"], run)
    assert len(calls) == 1 and calls[0][calls[0].index("--jobs") + 1] == "7,198"
    assert got["198_0"] == (pytest.approx(4.45), 16.0, 1.5) and got["7"] == (93600.0, 172800.0, None)
    assert "MaxRSS" in calls[0][calls[0].index("-o") + 1]
    assert parse_duration_s("") is None and parse_duration_s("05:30") == 330.0


def test_the_usage_plot_draws_measured_cells_and_nothing_for_none(tmp_path) -> None:  # noqa: ANN001
    from PIL import Image

    from aslhpc.analysis.efficiency import plot_usage

    cells = [Usage("g1-b32-r0", cores=4, mem_req_gb=16, gpus=1, elapsed_s=100, cpu_time_s=200,
                   rss_peak_gb=1.2, gpu_util_pct=40.0),
             Usage("g2-b32-r0", cores=1, mem_req_gb=1, gpus=2, elapsed_s=60, cpu_util_pct=30.0,
                   no_gpu_reason="CPU fallback")]
    path = plot_usage(efficiency_frame(cells), tmp_path / "usage.png")
    assert path is not None and Image.open(path).size[0] > 500
    assert plot_usage(efficiency_frame([]), tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_a_peak_only_sacct_saw_flags_the_request_as_too_small() -> None:
    """Issue 25.8: the samples are seconds apart; sacct's MaxRSS (cgroup accounting) can be higher, and a
    request the job outgrew is flagged from it, as seff does."""
    from aslhpc.analysis.efficiency import usage_from_result

    res = {"exec_time_s": 60.0, "telemetry": {"cpu": {"rss_peak_gb": 0.5, "util_mean_pct": 90.0}}}
    sampled = usage_from_result("c", 1, 1.0, 0, res, (50.0, 60.0, None))
    seen = usage_from_result("c", 1, 1.0, 0, res, (50.0, 60.0, 0.98))
    assert sampled.rss_peak_gb == 0.5 and seen.rss_peak_gb == 0.98
    frame = efficiency_frame([sampled, seen])
    assert list(frame["mem_at_limit"]) == [False, True] and "--mem" in frame["hint"][1]
