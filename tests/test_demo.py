"""The demo says what it is: a header before the run and a footer with the next commands after it."""

from __future__ import annotations

from aslhpc import collect, demo, submit


def test_demo_frames_its_output_and_names_the_next_commands(tmp_path, monkeypatch, capsys):
    calls = []
    (tmp_path / "asl" / "asl_alphabet_train").mkdir(parents=True)  # data present: nothing generated
    monkeypatch.setattr(submit, "main", lambda argv: calls.append(("submit", argv)) or 0)

    def fake_collect(argv):
        calls.append(("collect", argv))
        print("report: somewhere/report.md")
        return 0

    monkeypatch.setattr(collect, "main", fake_collect)
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
    assert [c for c, _ in calls] == ["submit", "collect"]
    assert "--max-parallel" in calls[0][1] and "--reference" in calls[1][1]


def test_demo_stops_with_submits_exit_status(tmp_path, monkeypatch, capsys):
    (tmp_path / "asl" / "asl_alphabet_train").mkdir(parents=True)
    monkeypatch.setattr(submit, "main", lambda argv: 2)
    assert demo.main(["--dir", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert "submit failed (exit 2)" in captured.err and "Next:" not in captured.out


def test_demo_leakage_trains_on_both_splits(tmp_path, monkeypatch, capsys):
    calls = []
    (tmp_path / "asl" / "asl_alphabet_train").mkdir(parents=True)
    monkeypatch.setattr(submit, "main", lambda argv: calls.append(argv) or 0)
    monkeypatch.setattr(collect, "main", lambda argv: 0)
    assert demo.main(["--dir", str(tmp_path), "--leakage"]) == 0
    assert calls[0][calls[0].index("--splits") + 1] == "random,blocked"
    assert demo.main(["--dir", str(tmp_path)]) == 0 and "--splits" not in calls[1]
    assert " demo --leakage" in " ".join(capsys.readouterr().out.split())
