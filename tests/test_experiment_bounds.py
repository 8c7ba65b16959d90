"""Bad experiment files that used to get past validation (issue 27 item 8): each is one error line, before
anything is written, naming the key and the fix: never a TypeError, RecursionError, OSError or a cell that
dies on the node after its cluster time is spent."""

from __future__ import annotations

from pathlib import Path

import pytest

from aslhpc import submit
from aslhpc.errors import ConfigError
from aslhpc.orchestration.experiment import REPO_JOBS, load_spec

SMOKE = (REPO_JOBS / "smoke.toml").read_text()


def _edit(old: str, new: str) -> str:
    assert old in SMOKE, old
    return SMOKE.replace(old, new, 1)


CASES = {
    "gpus = [[1]]": (_edit("gpus = [1, 2]", "gpus = [[1]]"), "matrix.gpus has [[1]]; use integers >= 1"),
    "a 10,000-deep inline array": (_edit("gpus = [1, 2]", "gpus = " + "[" * 10_000 + "1" + "]" * 10_000),
                                   "nests arrays or tables too deeply to parse"),
    "a 5,000-character name": (_edit('name = "smoke"', f'name = "{"x" * 5000}"'),
                               "is not a safe name; use at most 100 letters"),
    "seed = 10**20": (_edit("[train]", "[train]\nseed = 100000000000000000000"),
                      "train.seed=100000000000000000000 is more than 4294967295 (numpy and torch"),
    "the last repeat's seed": (_edit("[train]", "[train]\nseed = 4294967295").replace("repeats = 1",
                                                                                      "repeats = 2"),
                               "the last repeat's seed 4294967296 is more than 4294967295"),
    "strategy = [dp, dp]": (_edit('strategy = "dp"', 'strategy = ["dp", "dp"]'),
                            "matrix.strategy lists a value twice ('dp', 'dp'); list each once"),
    "gpus = [1, 1]": (_edit("gpus = [1, 2]", "gpus = [1, 1]"), "matrix.gpus lists a value twice"),
    "max_requeues = true": (_edit("max_requeues = 3", "max_requeues = true"),
                            "cluster.max_requeues=True must be an integer >= 0"),
    "batch size 10**10": (_edit("batch_sizes = [32, 64]", "batch_sizes = [32, 10000000000]"),
                          "matrix.batch_sizes has [10000000000]; at most 1048576"),
    "cpus_per_gpu 10**8": (_edit("cpus_per_gpu = 1", "cpus_per_gpu = 100000000"),
                           "cluster.cpus_per_gpu=100000000 is more than 1024 (CPUs per GPU)"),
    "epochs 10**14": (_edit("epochs = 2", "epochs = 100000000000000"),
                      "train.epochs=100000000000000 is more than 100000 (epochs of one cell)"),
    "workers 10**5": (_edit("workers = 0", "workers = 100000"),
                      "train.workers=100000 is more than 256 (DataLoader processes per cell)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_bad_file_is_one_error_line(tmp_path: Path, case: str) -> None:
    text, needle = CASES[case]
    path = tmp_path / "exp.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    lines = str(info.value).splitlines()
    assert len(lines) == 1 and needle in lines[0], lines
    assert len(lines[0]) < 400


def test_a_utf8_byte_order_mark_is_not_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + SMOKE.encode())
    assert load_spec(path).name == "smoke"


@pytest.mark.parametrize("case", ["seed = 10**20", "strategy = [dp, dp]", "a 5,000-character name"])
def test_submit_writes_nothing_for_them(tmp_path: Path, case: str, capsys: pytest.CaptureFixture) -> None:
    """seed = 10**20 used to pass the dry run and kill the cell on the node; a duplicate axis value submitted
    two jobs for one cell; a long name was an OSError while creating the results folder."""
    path = tmp_path / "exp.toml"
    path.write_text(CASES[case][0])
    results = tmp_path / "results"
    rc = submit.main([str(path), "--data", str(tmp_path), "--results", str(results), "--cluster", "local",
                      "--dry-run"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and CASES[case][1] in err[0]
    assert not results.exists()
