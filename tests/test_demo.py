"""The demo says what it is: a header before the run and a footer with the next commands after it.

It drives the library (api.submit, api.status, api.collect), not the CLIs: the fakes stand in for those.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from aslhpc import api, demo
from aslhpc.errors import ConfigError
from aslhpc.orchestration.cellstate import StatusReport
from aslhpc.orchestration.submission import SubmitResult


def _fake_library(monkeypatch, calls: list) -> None:
    """api.submit records (spec, options); status has no failed cell; collect prints nothing itself."""

    def submit(spec, options, out=print, on_local_tick=None):
        calls.append(("submit", spec, options))
        return SubmitResult(spec.name, spec.experiment_dir / "manifest.json", "local")

    def collect(exp_dir, **kw):
        calls.append(("collect", exp_dir, kw))
        return SimpleNamespace(report_path="somewhere/report.md")

    monkeypatch.setattr(api, "submit", submit)
    monkeypatch.setattr(api, "status", lambda d: StatusReport("smoke", Path(d) / "manifest.json", [], "x"))
    monkeypatch.setattr(api, "collect", collect)


def test_demo_frames_its_output_and_names_the_next_commands(tmp_path, monkeypatch, capsys):
    calls: list = []
    (tmp_path / "asl" / "asl_alphabet_train").mkdir(parents=True)  # data present: nothing generated
    _fake_library(monkeypatch, calls)
    assert demo.main(["--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    head, tail = out.split("report: somewhere/report.md")
    assert "2 epochs each" in " ".join(head.split())  # from jobs/smoke.toml, not typed in
    assert "demonstration of the flow, not the 2020 study's result" in " ".join(head.split())
    # each next command whole, on a line of its own, as this shell can run it
    commands = [ln.strip() for ln in tail.splitlines() if ln.startswith("    ")]
    assert any(c.endswith(" demo --cluster slurm") for c in commands), commands
    assert any(c.endswith(" submit --data ~/data/asl") for c in commands), commands
    assert all("aslhpc" in c for c in commands), commands
    assert [c[0] for c in calls] == ["submit", "collect"]
    _, spec, options = calls[0]
    assert options.max_parallel == 1 and options.cluster == "local"
    assert spec.data == str(tmp_path / "asl") and spec.results == str(tmp_path / "results")
    assert calls[1][1] == spec.experiment_dir and calls[1][2]["reference"] is not None


def test_demo_stops_with_submits_exit_status(tmp_path, monkeypatch, capsys):
    (tmp_path / "asl" / "asl_alphabet_train").mkdir(parents=True)

    def refused(spec, options, out=print, on_local_tick=None):
        raise ConfigError("partition gpu does not exist; pass --partition")

    monkeypatch.setattr(api, "submit", refused)
    assert demo.main(["--dir", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert "error: partition gpu does not exist" in captured.err
    assert "submit failed (exit 2)" in captured.err and "Next:" not in captured.out


def test_demo_leakage_trains_on_both_splits(tmp_path, monkeypatch, capsys):
    calls: list = []
    (tmp_path / "asl" / "asl_alphabet_train").mkdir(parents=True)
    _fake_library(monkeypatch, calls)
    assert demo.main(["--dir", str(tmp_path), "--leakage"]) == 0
    assert calls[0][1].splits == ("random", "blocked")
    assert demo.main(["--dir", str(tmp_path)]) == 0 and calls[2][1].splits == ()
    assert " demo --leakage" in " ".join(capsys.readouterr().out.split())


def test_a_folder_the_demo_cannot_write_is_one_line_before_anything(tmp_path, monkeypatch, capsys):
    """Issue 26.4: no header, no generated data, no traceback: one line naming --dir and the folder."""
    calls: list = []
    _fake_library(monkeypatch, calls)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert demo.main(["--dir", str(blocker / "demo")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and calls == []
    [line] = err.strip().splitlines()
    assert line.startswith(f"error: --dir {blocker / 'demo'} cannot be created: {blocker} is a file")


def test_demo_model_runs_its_own_experiment_beside_the_ladnet_one(tmp_path, monkeypatch, capsys):
    """The footer's `demo --model torchvision:resnet18` after a plain demo in the same --dir: another
    experiment folder (the ladnet one holds other settings, which submit would refuse), on an ImageFolder."""
    calls: list = []
    (tmp_path / "asl" / "asl_alphabet_train").mkdir(parents=True)
    _fake_library(monkeypatch, calls)
    assert demo.main(["--dir", str(tmp_path)]) == 0
    assert demo.main(["--dir", str(tmp_path), "--model", "torchvision:resnet18", "--per-class", "4"]) == 0
    ladnet, resnet = calls[0][1], calls[2][1]
    assert resnet.train.model == "torchvision:resnet18" and resnet.data == str(tmp_path / "folder")
    assert resnet.name == "smoke-torchvision-resnet18" and resnet.experiment_dir != ladnet.experiment_dir
    assert resnet.results == ladnet.results
    assert demo.own_experiment_name("smoke", "my nets/net.py:make") == "smoke-my-nets-net.py-make"
