"""``aslhpc COMMAND``: one entry point, each command's own help, the generated CLI reference in step."""

from __future__ import annotations

import subprocess
import sys

import pytest

from aslhpc import __main__ as entry
from aslhpc import clidocs


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aslhpc", *args], capture_output=True, text=True,
                          timeout=120)


def test_aslhpc_help_lists_every_command() -> None:
    proc = run("--help")
    assert proc.returncode == 0, proc.stderr
    for name in ("demo", "submit", "status", "collect", "cancel", "doctor", "train", "predict", "bench"):
        assert f"  {name} " in proc.stdout, name


@pytest.mark.parametrize("name", ["status", "submit", "collect", "cancel"])
def test_a_commands_help_is_its_own(name: str) -> None:
    proc = run(name, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: aslhpc {name} ")


def test_an_unknown_command_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert entry.main(["stauts"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown command 'stauts'")


def test_a_usage_error_in_any_command_is_one_line_naming_the_flag() -> None:
    proc = run("train", "--data", "d", "--out", "o", "--epochs", "2.5")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == ["error: --epochs: invalid int value: '2.5' (see aslhpc train --help)"]


def test_the_cli_reference_page_is_what_the_helps_say() -> None:
    assert clidocs.PAGE.read_text(encoding="utf-8") == clidocs.render(), "run python -m aslhpc.clidocs"


@pytest.mark.parametrize("columns", [60, 80, 120])
def test_the_command_list_wraps_at_words_to_the_terminal(columns: int) -> None:
    text = entry.usage(columns)
    assert all(len(line) < columns for line in text.splitlines())
    for name, what in entry.COMMANDS:
        assert f"  {name} " in text and " ".join(what.split()) in " ".join(text.split())  # whole words


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "0", "soon"])
@pytest.mark.parametrize("command", [("submit", "--wait", "--interval"), ("status", "--watch")])
def test_a_bad_refresh_period_is_one_usage_line_before_anything_runs(command: tuple[str, ...], value: str,
                                                                      tmp_path) -> None:  # noqa: ANN001
    """Issue 27.8: ``--interval``/``--watch`` are checked by the parser, so submit refuses them before a job
    is submitted (and writes nothing), not with a traceback after."""
    proc = subprocess.run([sys.executable, "-m", "aslhpc", *command, value, "--results", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: {command[-1]}: ") and "see aslhpc" in line
    assert list(tmp_path.iterdir()) == []


def test_a_short_refresh_period_is_floored_at_the_polite_minimum() -> None:
    from aslhpc.cli import MIN_INTERVAL_S, interval

    assert interval("--interval")("0.5") == MIN_INTERVAL_S and interval("--interval")("60") == 60.0
