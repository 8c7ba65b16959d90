"""collect --expect: this run's figures against an expected table, within a tolerance."""

from __future__ import annotations

import pytest

from aslhpc import packaged
from aslhpc.analysis.acceptance import accept, parse_tolerance
from aslhpc.analysis.analyze import analyze
from aslhpc.analysis.reference import load_reference, reference_matrix


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


def test_collect_expect_exits_0_within_and_1_naming_the_cells_outside(tmp_path, capsys) -> None:
    """Issue 24's acceptance check, as a site would run it: the published table against itself, then
    against a copy whose times moved by more than the tolerance."""
    import io
    import json

    from rich.console import Console

    from aslhpc.collect import main

    table = packaged.reference_table()

    def run(expect) -> tuple[int, str]:  # noqa: ANN001
        buf = io.StringIO()
        rc = main(["--reference-only", "--out", str(tmp_path / "ref"), "--no-plots", "--expect", str(expect),
                   "--tolerance", "5%"], console=Console(file=buf, width=200))
        return rc, buf.getvalue()

    rc, text = run(table)
    assert rc == 0 and "all 12 configuration(s) within ±5 %" in text
    lines = table.read_text().splitlines()
    moved = [lines[0]]
    for line in lines[1:]:
        cols = line.split(",")
        if cols[0] in ("128", "512") and cols[1] == "2":  # b=128 and b=512 on 2 GPUs, 7 % faster than this
            cols[6] = f"{float(cols[6]) * 1.07:.2f}"
        moved.append(",".join(cols))
    copy = tmp_path / "moved.csv"
    copy.write_text("\n".join(moved) + "\n")
    rc, text = run(copy)
    assert rc == 1
    assert "2 of 12 configuration(s) outside ±5 %" in text
    assert "b=128 × 2 GPUs: time" in text and "b=512 × 2 GPUs: time" in text and "6.5 % faster" in text
    verdicts = json.loads((tmp_path / "ref" / "verdicts.json").read_text())
    assert verdicts["recommendation"][0] == "fastest: b=256 × 3 GPUs: 2,028.7 s, 1.69 GPU-hours (measured)"
    assert "## Recommendation" in (tmp_path / "ref" / "report.md").read_text()


def test_a_bad_expected_table_is_one_line_before_any_work(tmp_path, capsys) -> None:
    from aslhpc.collect import main

    bad = tmp_path / "bad.csv"
    bad.write_text("batch_size,gpus\n128,x\n")
    assert main(["--reference-only", "--out", str(tmp_path / "ref"), "--expect", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and str(bad) in err
    assert not (tmp_path / "ref").exists()
