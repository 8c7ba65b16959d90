"""The split as a matrix axis: cell ids, shared settings, the one-split form kept, bad input as one line."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from aslhpc import submit
from aslhpc.analysis.leakage import gap_line, gap_sentence, gap_table, newcombe
from aslhpc.analysis.tables import wilson_interval
from aslhpc.errors import ConfigError
from aslhpc.orchestration.experiment import (
    REPO_JOBS,
    ExperimentSpec,
    Overrides,
    SpecErrors,
    apply_overrides,
    load_spec,
)

BASE = """
[experiment]
name = "x"
[matrix]
gpus = [1, 2]
batch_sizes = [32]
"""


def spec_of(tmp_path: Path, matrix: str = "", train: str = "") -> ExperimentSpec:
    p = tmp_path / "x.toml"
    p.write_text(BASE + matrix + ("\n[train]\n" + train if train else ""))
    return load_spec(p)


def test_blocked_cells_carry_the_split_and_share_everything_else(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, 'splits = ["random", "blocked"]\nrepeats = 2', "epochs = 3\nsplit_seed = 7")
    ids = [c.cell_id for c in spec.cells()]
    assert ids[:4] == ["g1-b32-r0", "g1-b32-r1", "g2-b32-r0", "g2-b32-r1"]  # random: today's ids
    assert ids[4:] == ["g1-b32-blocked-r0", "g1-b32-blocked-r1", "g2-b32-blocked-r0", "g2-b32-blocked-r1"]
    r, b = (spec.train_config(c) for c in (spec.cells()[1], spec.cells()[5]))
    assert (r.split, b.split) == ("random", "blocked")
    same = {k: v for k, v in r.to_dict().items() if k not in ("split", "out")}
    assert same == {k: v for k, v in b.to_dict().items() if k not in ("split", "out")}
    assert r.split_seed == b.split_seed == 7 and r.seed == b.seed == 1  # same seeds on both splits
    assert ExperimentSpec.from_dict(spec.to_dict()) == spec  # the manifest's copy rebuilds the same cells


def test_one_split_experiments_keep_their_ids(tmp_path: Path) -> None:
    one = spec_of(tmp_path, "", 'split = "blocked"').cells()
    assert [c.cell_id for c in one] == ["g1-b32-r0", "g2-b32-r0"]
    assert spec_of(tmp_path, "", 'split = "blocked"').cells()[0].split == "blocked"
    lad = load_spec(REPO_JOBS / "lad2020.toml")
    assert lad.splits == () and lad.cells()[0].cell_id == "g1-b128-r0"
    leak = load_spec(REPO_JOBS / "lad2020-leakage.toml")
    assert leak.splits == ("random", "blocked") and len(leak.cells()) == 2 * len(lad.cells())
    assert {c.cell_id for c in leak.cells() if c.split == "random"} == {c.cell_id for c in lad.cells()}


@pytest.mark.parametrize(("matrix", "train", "needle"), [
    ('splits = ["random"]', 'split = "random"', "both matrix.splits and train.split are set"),
    ('splits = ["random", "shuffled"]', "",
     "matrix.splits='shuffled' is not valid; use one of random, blocked"),
    ('splits = ["blocked", "blocked"]', "", "matrix.splits lists a value twice"),
    ("splits = []", "", "matrix.splits is empty"),
])
def test_bad_splits_are_one_line_each(tmp_path: Path, matrix: str, train: str, needle: str) -> None:
    with pytest.raises(SpecErrors) as err:
        spec_of(tmp_path, matrix, train)
    assert any(needle in p and "\n" not in p for p in err.value.problems), err.value.problems


def test_flags_set_the_axis_and_refuse_a_conflicting_split(tmp_path: Path) -> None:
    lad = load_spec(REPO_JOBS / "lad2020.toml")
    both = apply_overrides(lad, Overrides(splits=("random", "blocked"), gpus=(1,), batch_sizes=(128,)))
    assert [c.cell_id for c in both.cells()] == ["g1-b128-r0", "g1-b128-blocked-r0"]
    leak = load_spec(REPO_JOBS / "lad2020-leakage.toml")
    with pytest.raises(ConfigError, match="--split blocked conflicts with the experiment's splits axis"):
        apply_overrides(leak, Overrides(split="blocked"))
    assert apply_overrides(leak, Overrides(split="blocked", splits=())).split_kinds() == ("blocked",)
    blocked = spec_of(tmp_path, "", 'split = "blocked"')  # its g1-b32-r0 already means blocked
    with pytest.raises(ConfigError, match="--splits random,blocked conflicts with train.split = 'blocked'"):
        apply_overrides(blocked, Overrides(splits=("random", "blocked")))


def test_submit_refuses_a_bad_splits_flag_before_anything_runs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        submit.main(["--splits", "random,shuffled", "--results", str(tmp_path), "--dry-run"])
    assert exit_.value.code == 2 and "'random,shuffled': use random, blocked" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_dry_run_writes_one_script_per_split(tmp_path: Path, synth_root: Path) -> None:
    rc = submit.main(["lad2020", "--splits", "random,blocked", "--gpus", "1", "--batch-sizes", "128",
                      "--data", str(synth_root), "--results", str(tmp_path), "--dry-run", "--mem", "1G"])
    assert rc == 0
    names = sorted(p.name for p in (tmp_path / "lad2020" / "dry-run").glob("*.sbatch"))
    assert names == ["g1-b128-blocked-r0.sbatch", "g1-b128-r0.sbatch"]


def _cells(rows: list[tuple[str, int, float, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"batch_size": 32, "gpus": 1, "strategy": "dp", "pipeline": "fast",
                          "state": "COMPLETED", "split_kind": k, "repeat": r, "test_acc": acc, "n_test": n}
                         for k, r, acc, n in rows])


def test_gap_of_one_run_each_has_the_newcombe_interval() -> None:
    gap = gap_table(_cells([("random", 0, 100.0, 17), ("blocked", 0, 86.2069, 29)]))
    (row,) = gap.to_dict(orient="records")
    assert row["gap_pp"] == pytest.approx(13.7931, abs=1e-3) and row["n"] == 1
    lo, hi = newcombe(1.0, 17, 25 / 29, 29)
    assert (row["gap_low"], row["gap_high"]) == pytest.approx((100 * lo, 100 * hi))
    l1, _ = wilson_interval(1.0, 17)
    _, u2 = wilson_interval(25 / 29, 29)
    assert lo == pytest.approx(1.0 - 25 / 29 - math.hypot(1.0 - l1, u2 - 25 / 29))
    assert lo < 0 < hi  # 17 and 29 images cannot tell a 14-point gap from none
    assert "random split adds +13.79 percentage points" in gap_sentence(gap)
    line = gap_line(gap, {"random": "supported"})
    assert line.startswith("Leakage: random − blocked test accuracy +13.79 pp [")


def test_gap_with_repeats_pairs_the_runs_of_one_seed() -> None:
    gap = gap_table(_cells([("random", 0, 99.0, 1740), ("random", 1, 99.5, 1740),
                            ("random", 2, 99.2, 1740), ("blocked", 0, 90.0, 1740),
                            ("blocked", 1, 91.5, 1740), ("blocked", 2, 90.2, 1740)]))
    (row,) = gap.to_dict(orient="records")
    diffs = [9.0, 8.0, 9.0]
    hw = 4.302652729911275 * pd.Series(diffs).std() / math.sqrt(3)  # t(0.975, 2)
    assert row["gap_pp"] == pytest.approx(26 / 3) and row["n"] == 3
    assert (row["gap_low"], row["gap_high"]) == pytest.approx((26 / 3 - hw, 26 / 3 + hw), rel=1e-4)
    assert row["interval"] == "paired t over 3 repeats"


def test_a_configuration_without_both_results_has_no_gap() -> None:
    cells = _cells([("random", 0, 99.0, 100), ("blocked", 0, 90.0, 100)])
    cells.loc[1, "state"] = "FAILED"
    (row,) = gap_table(cells).to_dict(orient="records")
    assert math.isnan(row["gap_pp"]) and gap_sentence(gap_table(cells)) == ""


def test_the_leakage_files_split_sizes_are_what_the_split_functions_give() -> None:
    """jobs/lad2020-leakage.toml states both splits' sizes on 87,029 images; they differ (the blocked split
    applies the size rule per class), and the file must not claim they are the same (issue 25 item 9)."""
    from aslhpc.data.layout import CANONICAL_CLASSES, DatasetIndex
    from aslhpc.data.split import make_split

    files = tuple(f"{c}/{c}{k}.jpg" for c in CANONICAL_CLASSES for k in range(1, 3002))
    labels = tuple(i for i in range(len(CANONICAL_CLASSES)) for _ in range(3001))
    index = DatasetIndex(Path("/nowhere"), tuple(CANONICAL_CLASSES), files, labels)
    random, blocked = make_split(index, "random").sizes(), make_split(index, "blocked").sizes()
    assert len(files) == 87029 and random == (76760, 8528, 1741) and blocked == (76763, 8526, 1740)
    text = (REPO_JOBS / "lad2020-leakage.toml").read_text()
    for sizes in (random, blocked):
        assert "/".join(f"{n:,}" for n in sizes) in text
    assert "same 76,760" not in text and "as in 2020" not in text
    assert "as in 2020" not in (REPO_JOBS / "lad2020.toml").read_text()
