"""Every ``python -m aslhpc.X``: ``--version``, and a user error is one ``error:`` line, exit 2."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from aslhpc import __version__
from aslhpc.cli import run_cli
from aslhpc.errors import ConfigError

CLIS = ["submit", "status", "collect", "train", "predict", "bench", "demo", "doctor"]


def test_the_dataset_generator_says_its_version_too(capsys: pytest.CaptureFixture[str]) -> None:
    from aslhpc.data.synth import main

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and __version__ in capsys.readouterr().out


@pytest.mark.parametrize("name", CLIS)
def test_every_cli_says_its_version(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    main = importlib.import_module(f"aslhpc.{name}").main
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_a_user_error_is_one_line_on_stderr_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    def body() -> int:
        raise ConfigError("jobs/x.toml: gpus must be\n  a list; write gpus = [1, 2]")

    assert run_cli(body) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == "error: jobs/x.toml: gpus must be a list; write gpus = [1, 2]\n"
    assert run_cli(lambda: 1) == 1 and run_cli(lambda: None) == 0


def test_status_error_from_a_real_process_is_one_line(tmp_path) -> None:  # noqa: ANN001
    proc = subprocess.run([sys.executable, "-m", "aslhpc.status", "--results", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1


def test_python_m_aslhpc_without_a_command_lists_every_command() -> None:
    proc = subprocess.run([sys.executable, "-m", "aslhpc"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2  # a usage error, as argparse's missing argument is; --help exits 0
    for name in CLIS:
        assert f"  {name} " in proc.stdout, name


def test_piped_output_has_no_padded_lines(tmp_path) -> None:  # noqa: ANN001
    """Issue 26.7: rich pads table cells to their column; piped into a log or grep, no line ends in spaces."""
    proc = subprocess.run([sys.executable, "-m", "aslhpc.collect", "--reference-only", "--out", str(tmp_path),
                           "--no-plots"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("H1 ") for line in lines)  # the verdict table is there
    assert [line for line in lines if line != line.rstrip()] == []
