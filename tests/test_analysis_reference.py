"""The published 2020 reference table: transcription, validation, labelling."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aslhpc.analysis.reference import REFERENCE_LABEL, REQUIRED_COLUMNS, load_reference, reference_matrix
from aslhpc.errors import AslhpcError

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "results" / "reference" / "lad2020.csv"
# the study's text, where the workspace has it beside the repository (../shared/seed/); else skipped
SEED = Path(__file__).resolve().parents[1].parent / "shared" / "seed" / "000_273167d1ca351350.txt"


def test_reference_has_the_three_tables():
    ref = load_reference(REF)
    assert len(ref) == 12
    assert sorted(set(ref["batch_size"])) == [128, 256, 512] and sorted(set(ref["gpus"])) == [1, 2, 3, 4]
    r = ref[(ref["batch_size"] == 512) & (ref["gpus"] == 2)].iloc[0]
    assert r["gpu0_gb"] == 3.219 and r["gpu1_gb"] == 3.113  # the table's value, not the screenshot's
    assert ref["source"].str.startswith("Lad 2020").all()


@pytest.mark.skipif(not SEED.exists(), reason="the seed text is not in this checkout")
def test_reference_matches_the_seed_tables_exactly():
    text = SEED.read_text(encoding="utf-8")
    blocks = re.findall(r"^Experiment (\d)\t.*?\n((?:Using \dGPU\t.*\n){4})", text, flags=re.M)
    assert [b[0] for b in blocks] == ["1", "2", "3"]
    csv_rows = REF.read_text(encoding="utf-8").splitlines()[1:]
    for (exp, body), bs in zip(blocks, (128, 256, 512), strict=True):
        for line in body.strip().splitlines():
            cells = line.split("\t")
            gpus = int(cells[0][len("Using ") : -len("GPU")])
            row = next(r for r in csv_rows if r.startswith(f"{bs},{gpus},"))
            assert row.split(",")[2:11] == cells[1:10], f"experiment {exp}, {cells[0]}"


def test_missing_columns_are_one_line_naming_them(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("batch_size,gpus,gpu0_gb,exec_time_s\n128,1,2.8,2500\n", encoding="utf-8")
    with pytest.raises(AslhpcError) as info:
        load_reference(bad)
    msg = str(info.value)
    assert "\n" not in msg
    assert "gpu1_gb, gpu2_gb, gpu3_gb, data_parallel, train_acc, val_acc, test_acc" in msg


def test_bad_values_are_one_line_errors(tmp_path):
    header = ",".join(REQUIRED_COLUMNS)
    f = tmp_path / "r.csv"
    f.write_text(header + "\n128,1,2.8,NA,NA,NA,fast,No,99,99,99\n", encoding="utf-8")
    with pytest.raises(AslhpcError, match="row 2: exec_time_s='fast' is not a number"):
        load_reference(f)
    f.write_text(header + "\n128,1,2.8,NA,NA,NA,2500,maybe,99,99,99\n", encoding="utf-8")
    with pytest.raises(AslhpcError, match="data_parallel='maybe'"):
        load_reference(f)
    with pytest.raises(AslhpcError, match="does not exist"):
        load_reference(tmp_path / "nope.csv")


def test_reference_matrix_is_labelled_and_complete():
    m = reference_matrix(load_reference(REF))
    assert (m["source"] == REFERENCE_LABEL).all() and (m["state"] == "COMPLETED").all()
    assert m.loc[(m["batch_size"] == 128) & (m["gpus"] == 1), "batches_train"].iloc[0] == 600


def test_cpu_reference_is_the_studys_section_6_6_run(tmp_path):
    from aslhpc.analysis.reference_cpu import default_cpu_reference_path, load_cpu_reference

    c = load_cpu_reference(default_cpu_reference_path())
    assert (c.batch_size, c.epochs, c.exec_time_s) == (128, 1, 1383.2038)
    assert c.val_acc == 67.7767 and "Section 6.6" in c.source
    bad = tmp_path / "cpu.csv"
    bad.write_text("device,gpus\nx,0\n", encoding="utf-8")
    with pytest.raises(AslhpcError) as e:
        load_cpu_reference(bad)
    assert "lacks batch_size, epochs, exec_time_s" in str(e.value) and "\n" not in str(e.value)
