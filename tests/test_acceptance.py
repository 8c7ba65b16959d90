"""collect --expect: this run's figures against an expected table, within a tolerance."""

from __future__ import annotations

import pytest

from aslhpc import packaged
from aslhpc.analysis.acceptance import accept, parse_tolerance
from aslhpc.analysis.reference import load_reference, reference_matrix
from aslhpc.analysis.report import analyze


def _summary(ref):  # noqa: ANN001, ANN202 - the per-configuration summary of a reference table
    return analyze(reference_matrix(ref), name="lad2020", label="reference").summary


def test_the_published_table_accepts_itself_within_five_percent() -> None:
    ref = load_reference(packaged.reference_table())
    result = accept(_summary(ref), ref, 0.05, "lad2020.csv")
    assert result.passed
    assert set(result.checks["figure"]) == {"time", "test accuracy", "GPU memory"}
    assert len(result.checks) == 12 * 3
    assert result.lines() == ["acceptance against lad2020.csv: all 12 configuration(s) within ±5 %"]


def test_times_moved_past_the_tolerance_fail_naming_each_cell_and_its_direction() -> None:
    ref = load_reference(packaged.reference_table())
    moved = ref.copy()
    slow = (moved["batch_size"] == 256) & (moved["gpus"] == 2)
    fast = (moved["batch_size"] == 512) & (moved["gpus"] == 4)
    moved.loc[slow, "exec_time_s"] *= 1 / 1.08  # this run is 8 % slower than what was expected
    moved.loc[fast, "exec_time_s"] *= 1.10
    inside = (moved["batch_size"] == 128) & (moved["gpus"] == 1)
    moved.loc[inside, "exec_time_s"] *= 1.04  # 4 %: inside
    result = accept(_summary(ref), moved, 0.05, "expected.csv")
    assert not result.passed
    lines = result.lines()
    assert lines[0] == "acceptance against expected.csv: 2 of 12 configuration(s) outside ±5 %"
    assert any(line.startswith("  b=256 × 2 GPUs: time") and "8.0 % slower" in line for line in lines)
    assert any(line.startswith("  b=512 × 4 GPUs: time") and "faster" in line for line in lines)
    assert not any("b=128 × 1 GPU:" in line for line in lines)


def test_a_configuration_not_measured_is_listed_not_failed() -> None:
    ref = load_reference(packaged.reference_table())
    partial = ref[~((ref["batch_size"] == 512) & (ref["gpus"] == 4))]
    result = accept(_summary(partial), ref, 0.05, "lad2020.csv")
    assert result.passed and result.missing == [(512, 4)]
    assert result.lines()[-1] == "  not measured here (not checked): b=512 × 4 GPUs"


@pytest.mark.parametrize(("text", "value"), [("5%", 0.05), ("5 %", 0.05), ("0.05", 0.05), ("0", 0.0)])
def test_tolerances_read_as_written(text: str, value: float) -> None:
    assert parse_tolerance(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["five", "150%", "-1%", "nan"])
def test_a_bad_tolerance_names_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match="5%"):
        parse_tolerance(text)
