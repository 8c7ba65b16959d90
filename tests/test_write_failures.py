"""A full disk or a read-only mount met by collect: one ``error:`` line, the earlier outputs intact, and a
killed collect's temporary files gone on the next run."""

from __future__ import annotations

import errno
import io
import os
import time
from pathlib import Path

import pytest
from rich.console import Console
from test_analysis_helpers import paper_experiment

from aslhpc.collect import main

REF = Path(__file__).resolve().parents[1] / "results" / "reference" / "lad2020.csv"


def _collect(tmp_path: Path) -> int:
    return main(["--results", str(tmp_path), "--reference-file", str(REF), "--no-plots"],
                console=Console(file=io.StringIO(), width=120))


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_write_failure_is_one_line_and_keeps_the_earlier_report(tmp_path, monkeypatch, capsys, code):
    monkeypatch.setenv("PATH", str(tmp_path))  # no SLURM to ask
    exp = paper_experiment(tmp_path, "paper")
    assert _collect(tmp_path) == 0
    before = {p.name: p.read_bytes() for p in exp.iterdir() if p.is_file()}
    capsys.readouterr()
    real_replace = os.replace

    def full_disk(src, dst, *a, **k):  # noqa: ANN001, ANN002, ANN003 - os.replace's signature
        if Path(dst).parent == exp:
            raise OSError(code, os.strerror(code), str(dst))
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", full_disk)
    assert _collect(tmp_path) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert str(exp) in err  # names where it could not write
    after = {p.name: p.read_bytes() for p in exp.iterdir() if p.is_file()}
    assert after == before  # nothing already written was lost or half-written


def test_a_killed_collects_temporary_files_are_removed_next_time(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    exp = paper_experiment(tmp_path, "paper")
    orphan = exp / ".cells.csv.abc123.tmp"
    orphan.write_text("half a table")
    old = time.time() - 3600
    os.utime(orphan, (old, old))
    young = exp / ".summary.csv.def456.tmp"  # a writer running right now: left alone
    young.write_text("being written")
    assert _collect(tmp_path) == 0
    assert not orphan.exists() and young.exists()


def test_a_full_disk_during_training_is_one_line_and_the_cell_records_it(synth_root, tmp_path, monkeypatch,
                                                                         capsys):
    from aslhpc import train
    from aslhpc.training import checkpoint

    real = checkpoint.atomic_write_bytes

    def full_disk(path, data):  # noqa: ANN001 - the first checkpoint meets a full disk
        if Path(path).name == "checkpoint.pt":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, data)

    monkeypatch.setattr(checkpoint, "atomic_write_bytes", full_disk)
    out = tmp_path / "cell"
    rc = train.main(["--data", str(synth_root), "--out", str(out), "--gpus", "0", "--batch-size", "32",
                     "--epochs", "1", "--cache-dir", str(tmp_path / "cache"), "--log-every", "0",
                     "--workers", "0", "--max-steps", "2"])
    err = capsys.readouterr().err
    assert rc == 2
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert "checkpoint.pt" in errors[0] and "No space left" in errors[0]
    assert "writable --out folder" in errors[0]  # the flag train was given, not submit's --results
    assert (out / "error.json").is_file() and not (out / "result.json").exists()
