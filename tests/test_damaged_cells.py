"""One damaged cell never takes down status or collect; nothing is unpickled; manifest paths stay inside.

Each variant garbles one file of one cell of a 4-cell experiment whose other cells completed:
status must show that cell DAMAGED with the file and what is wrong, the three others as usual, and
collect must list it as a hole with the same reason while the rest of the matrix is collected.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
from experiment_builders import result_json, write_cell, write_json, write_manifest
from rich.console import Console

from aslhpc import collect
from aslhpc import status as status_cli
from aslhpc.orchestration.cellstate import experiment_status
from aslhpc.slurm.accounting import JobState, StateQuery
from aslhpc.slurm.executor import job_name
from aslhpc.snapshot import load_matrix
from aslhpc.status import render_table

CELLS = [(1, 128, 0, "dp"), (2, 128, 0, "dp"), (1, 256, 0, "dp"), (2, 256, 0, "dp")]
VICTIM = "g2-b256-r0"


def sacct(exp: str, restarts: int = 0):  # noqa: ANN201 - a query function
    """Every job of the experiment COMPLETED (job ids 1000.. as write_manifest records them)."""

    def query(ids: list[str], starttime: str = "") -> StateQuery:
        cids = [f"g{g}-b{b}-r{r}" for g, b, r, _ in CELLS]
        jobs = {
            str(1000 + n): JobState(
                str(1000 + n),
                "COMPLETED",
                "COMPLETED",
                node="n1",
                elapsed="00:40:00",
                restarts=restarts,
                name=job_name(exp, cid),
            )
            for n, cid in enumerate(cids)
        }
        return StateQuery({k: v for k, v in jobs.items() if k in ids}, "sacct")

    return query


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    exp = tmp_path / "results" / "e"
    write_manifest(exp, "e", CELLS)
    for g, b, r, s in CELLS:
        write_cell(exp, result_json("e", g, b, r, strategy=s))
    return exp


def _edit_result(exp: Path, edit) -> None:  # noqa: ANN001
    path = exp / "cells" / VICTIM / "result.json"
    path.write_text(edit(path.read_text()))


def _garble(exp: Path, variant: str) -> None:
    cell = exp / "cells" / VICTIM
    if variant == "epochs.jsonl: epoch is a word":
        (cell / "result.json").unlink()
        (cell / "epochs.jsonl").write_text('{"epoch": "two"}\n')
    elif variant == "epochs.jsonl: a bad line in the middle":
        (cell / "result.json").unlink()
        (cell / "epochs.jsonl").write_text('{"epoch": 1}\n{"epo\n{"epoch": 3}\n')
    elif variant == "result.json: epochs is a word":
        _edit_result(exp, lambda t: t.replace('"epochs": 25', '"epochs": "four"'))
    elif variant == "result.json: truncated":
        _edit_result(exp, lambda t: t[: len(t) // 2])
    elif variant == "result.json: empty":
        _edit_result(exp, lambda t: "")
    elif variant == "result.json: a list":
        _edit_result(exp, lambda t: "[1, 2]")
    elif variant == "result.json: not UTF-8":
        (cell / "result.json").write_bytes(b"\xff\xfe\x00garbage")
    elif variant == "result.json: telemetry.gpus is a string":
        _edit_result(exp, lambda t: t.replace('"gpus": [{', '"gpus": "lots", "x": [{', 1))
    elif variant == "progress.json: garbage":
        (cell / "result.json").unlink()
        (cell / "progress.json").write_text("\x00\x01 not json at all")
    elif variant == "progress.json: epoch is a float":
        (cell / "result.json").unlink()
        write_json(cell / "progress.json", {"epoch": 2.5, "epochs": 25, "phase": "train"})
    elif variant == "error.json: error is an object":
        (cell / "result.json").unlink()
        write_json(cell / "error.json", {"error": {"nested": True}, "time": ""})
    elif variant == "config.json: batch_size is a list":
        (cell / "result.json").unlink()
        write_json(cell / "config.json", {"batch_size": [1]})
    else:
        raise AssertionError(variant)


VARIANTS = {
    "epochs.jsonl: epoch is a word": 'epochs.jsonl: line 1: epoch is str "two", expected int',
    "epochs.jsonl: a bad line in the middle": "epochs.jsonl: line 2 is not valid JSON",
    "result.json: epochs is a word": 'result.json: epochs is str "four", expected int',
    "result.json: truncated": "result.json: not valid JSON",
    "result.json: empty": "result.json: empty",
    "result.json: a list": "result.json: the file is a list, expected an object",
    "result.json: not UTF-8": "result.json: unreadable (UnicodeDecodeError",
    "result.json: telemetry.gpus is a string": 'result.json: telemetry.gpus is str "lots", expected a list',
    "progress.json: garbage": "progress.json: not valid JSON",
    "progress.json: epoch is a float": "progress.json: epoch is float 2.5, expected int",
    "error.json: error is an object": "error.json: error is an object, expected scalar",
    "config.json: batch_size is a list": "config.json: batch_size is a list, expected int",
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_damaged_file_is_one_damaged_cell_in_status(experiment: Path, variant: str) -> None:
    _garble(experiment, variant)
    report = experiment_status(experiment / "manifest.json", query=sacct("e"))
    rows = {r.cell_id: r for r in report.rows}
    assert rows[VICTIM].state == "DAMAGED" and rows[VICTIM].error.startswith(VARIANTS[variant])
    assert {cid: r.state for cid, r in rows.items() if cid != VICTIM} == dict.fromkeys(
        ["g1-b128-r0", "g2-b128-r0", "g1-b256-r0"], "COMPLETED"
    )
    assert report.all_ended and report.any_failed
    console = Console(record=True, width=120)
    console.print(render_table(report))
    text = console.export_text()
    assert "DAMAGED" in text and VARIANTS[variant].split(":")[0] in text


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_damaged_file_is_a_hole_in_collect_with_the_reason(experiment: Path, variant: str) -> None:
    _garble(experiment, variant)
    frame = load_matrix(experiment).set_index("cell_id")
    assert frame.loc[VICTIM, "state"] == "DAMAGED" and frame.loc[VICTIM, "reason"].startswith(
        VARIANTS[variant]
    )
    assert (frame.loc[VICTIM, "gpus"], frame.loc[VICTIM, "batch_size"]) == (
        2,
        256,
    )  # placed from the manifest
    assert (frame.drop(VICTIM)["state"] == "COMPLETED").all() and len(frame) == 4


def test_status_and_collect_clis_survive_a_damaged_cell(
    experiment: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    _garble(experiment, "result.json: epochs is a word")
    monkeypatch.setattr("aslhpc.orchestration.cellstate.query_states", sacct("e"))
    results = experiment.parent
    assert status_cli.main(["--results", str(results), "--experiment", "e"]) == 1
    out = capsys.readouterr().out
    assert "DAMAGED" in out and 'result.json: epochs is str "four", expected int' in out
    assert collect.main(["--results", str(results), "--experiment", "e", "--no-plots"]) == 0
    holes = [
        ln for ln in (experiment / "report.md").read_text().splitlines() if ln.startswith(f"| {VICTIM} |")
    ]
    assert any('| DAMAGED | result.json: epochs is str "four", expected int |' in ln for ln in holes)


def test_a_torn_last_epoch_line_is_a_crash_mid_append_not_damage(experiment: Path) -> None:
    cell = experiment / "cells" / VICTIM
    (cell / "result.json").unlink()
    (cell / "epochs.jsonl").write_text('{"epoch": 1, "val_acc": 50.0}\n{"epoch": 2, "val_')
    row = {r.cell_id: r for r in experiment_status(experiment / "manifest.json", query=sacct("e")).rows}[
        VICTIM
    ]
    assert row.state == "FAILED" and row.epoch == 1 and row.val_acc == 50.0  # sacct COMPLETED, no result.json


class _Plant:
    """Unpickling this creates a file: the proof that something unpickled it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # noqa: ANN204
        return (open, (self.path, "w"))


@pytest.mark.parametrize(
    "key,value",
    [("out_dir", "../../elsewhere"), ("out_dir", "/etc"), ("folder", "../../planted"), ("folder", "/tmp")],
)
def test_manifest_paths_that_leave_the_experiment_are_damaged(
    experiment: Path, tmp_path: Path, key: str, value: str
) -> None:
    data = json.loads((experiment / "manifest.json").read_text())
    entry = data["cells"][VICTIM]
    (entry["attempts"][-1] if key == "folder" else entry)[key] = value
    entry["attempts"][-1]["cluster"] = "local"
    write_json(experiment / "manifest.json", data)
    row = {r.cell_id: r for r in experiment_status(experiment / "manifest.json", query=sacct("e")).rows}[
        VICTIM
    ]
    assert row.state == "DAMAGED"
    assert row.error.startswith(f"manifest.json: {key} {value!r} leaves the experiment directory")
    frame = load_matrix(experiment).set_index("cell_id")
    assert (
        frame.loc[VICTIM, "state"] == "DAMAGED" and f"{key} {value!r} leaves" in frame.loc[VICTIM, "reason"]
    )


def test_status_and_collect_unpickle_nothing(
    experiment: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """A planted submitit result pickle, inside the experiment, for a finished local attempt: never opened."""
    data = json.loads((experiment / "manifest.json").read_text())
    attempt = data["cells"][VICTIM]["attempts"][-1]
    attempt.update(cluster="local", job_id="999999999", folder="jobs/victim")
    write_json(experiment / "manifest.json", data)
    (experiment / "cells" / VICTIM / "result.json").unlink()
    planted = tmp_path / "pwned"
    folder = experiment / "jobs" / "victim"
    folder.mkdir(parents=True)
    (folder / "999999999_0_result.pkl").write_bytes(pickle.dumps(_Plant(str(planted))))
    monkeypatch.setattr("aslhpc.orchestration.cellstate.query_states", sacct("e"))
    assert status_cli.main(["--results", str(experiment.parent), "--experiment", "e"]) == 1
    assert "FAILED" in capsys.readouterr().out  # the job ended and left no result.json
    assert collect.main(["--results", str(experiment.parent), "--experiment", "e", "--no-plots"]) == 0
    assert not planted.exists()


def test_a_requeued_cell_shows_its_requeue_from_result_json(experiment: Path) -> None:
    """NODE_FAIL, then SLURM requeued the job: sacct's last incarnation says 0 restarts, result.json 1."""
    path = experiment / "cells" / VICTIM / "result.json"
    result = json.loads(path.read_text())
    result["slurm"]["restarts"] = 1
    write_json(path, result)
    report = experiment_status(experiment / "manifest.json", query=sacct("e", restarts=0))
    rows = {r.cell_id: r for r in report.rows}
    assert rows[VICTIM].restarts == 1 and rows["g1-b128-r0"].restarts == 0
    console = Console(record=True, width=120)
    console.print(render_table(report))
    assert "COMPLETED (1 requeue)" in console.export_text()


def test_status_error_lines_do_not_split_words_at_80_columns(experiment: Path) -> None:
    error = (
        "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 31.74 GiB total capacity; "
        "29.12 GiB already allocated); lower --batch-size or use more GPUs"
    )
    cell = experiment / "cells" / VICTIM
    (cell / "result.json").unlink()
    write_json(cell / "error.json", {"error": error, "traceback": "...", "time": ""})
    report = experiment_status(experiment / "manifest.json", query=sacct("e"))
    console = Console(record=True, width=80)
    console.print(render_table(report))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    words = [w for line in text.splitlines() for w in line.split()]
    for word in error.split():
        assert word in words, word  # every word whole on one line


def test_a_cells_directory_linked_to_scratch_is_not_leaving_the_experiment(
    experiment: Path, tmp_path: Path
) -> None:
    """Paths are checked as written: a site that links cells/ to scratch space keeps working."""
    scratch = tmp_path / "scratch"
    (experiment / "cells").rename(scratch)
    (experiment / "cells").symlink_to(scratch)
    report = experiment_status(experiment / "manifest.json", query=sacct("e"))
    assert {r.state for r in report.rows} == {"COMPLETED"}
    assert (load_matrix(experiment)["state"] == "COMPLETED").all()


def test_a_checked_result_is_not_hidden_by_damage_in_the_files_of_a_running_cell(experiment: Path) -> None:
    cell = experiment / "cells" / VICTIM
    (cell / "progress.json").write_text("garbage")
    (cell / "epochs.jsonl").write_text('{"epoch": "two"}\n')
    row = {r.cell_id: r for r in experiment_status(experiment / "manifest.json", query=sacct("e")).rows}[
        VICTIM
    ]
    assert (row.state, row.epoch, row.error) == ("COMPLETED", 25, "")
    assert load_matrix(experiment).set_index("cell_id").loc[VICTIM, "state"] == "COMPLETED"


# ------------------------------------------------------------------- issue 27 items 4-6: hostile files


def _result(exp: Path) -> dict:
    return json.loads((exp / "cells" / VICTIM / "result.json").read_text())


def _set_result(exp: Path, **changes: object) -> None:
    result = _result(exp)
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        target = result
        for parent in parents:
            target = target[int(parent) if parent.isdigit() else parent]
        target[key] = value
    write_json(exp / "cells" / VICTIM / "result.json", result)


def _hostile(exp: Path, variant: str) -> None:  # noqa: C901 - one small setup per variant
    cell = exp / "cells" / VICTIM
    result = cell / "result.json"
    deep = "[" * 3000 + "]" * 3000
    if variant == "result.json nested 3000 deep":
        result.write_text('{"a": ' + deep + "}")
    elif variant == "result.json nested 100 deep":  # parses, but no file aslhpc writes nests like that
        result.write_text('{"a": ' + "[" * 100 + "]" * 100 + "}")
    elif variant == "epochs.jsonl nested 3000 deep":
        result.unlink()
        (cell / "epochs.jsonl").write_text('{"epoch": 1}\n' + deep + "\n" + '{"epoch": 2}\n')
    elif variant == "result.json links to /dev/zero":
        result.unlink()
        result.symlink_to("/dev/zero")
    elif variant == "result.json is a FIFO":
        result.unlink()
        os.mkfifo(result)
    elif variant == "progress.json is a FIFO":
        result.unlink()
        os.mkfifo(cell / "progress.json")
    elif variant == "result.json is a directory":
        result.unlink()
        result.mkdir()
    elif variant == "result.json is 17 MiB":
        with result.open("r+b") as fh:  # sparse: no disk used
            fh.truncate(17 << 20)
    elif variant == "test_acc = 150":
        _set_result(exp, test_acc=150)
    elif variant == "exec_time_s = NaN":
        _set_result(exp, exec_time_s=float("nan"))
    elif variant == "exec_time_s = -1":
        _set_result(exp, exec_time_s=-1.0)
    elif variant == "exec_time_s = 1e308":
        _set_result(exp, exec_time_s=1e308)
    elif variant == "images_per_s = Infinity":
        _set_result(exp, images_per_s=float("inf"))
    elif variant == "a GPU's memory is negative":
        _set_result(exp, telemetry__gpus__0__mem_peak_gb=-3.0)
    elif variant == "result.json is {}":
        write_json(result, {})
    elif variant == "a forged minimal result":
        write_json(result, {"status": "completed", "epochs": 2})
    elif variant == "another cell's result":
        write_json(result, result_json("e", 1, 128))
    elif variant == "a forged result with an empty config":  # right id, figures in range, no config keys
        _set_result(exp, config={})
    elif variant == "a result of another batch size under this id":
        _set_result(exp, config__batch_size=64)
    elif variant == "the split recorded disagrees with the config":
        _set_result(exp, split__kind="blocked")
    elif variant == "a split other than the one submit made":  # collect once refused the whole matrix
        manifest = json.loads((exp / "manifest.json").read_text())
        for entry in manifest["cells"].values():  # what submit records: the split it made of the data
            entry["split_hash"] = _result(exp)["split"]["hash"]
        write_json(exp / "manifest.json", manifest)
        _set_result(exp, split__hash="deadbeef" * 8)
    else:
        raise AssertionError(variant)


HOSTILE = {
    "result.json nested 3000 deep": "result.json: nested more than 64 levels deep",
    "result.json nested 100 deep": "result.json: nested more than 64 levels deep",
    "epochs.jsonl nested 3000 deep": "epochs.jsonl: line 2 is nested more than 64 levels deep",
    "result.json links to /dev/zero": "result.json: is a symbolic link",
    "result.json is a FIFO": "result.json: is not a regular file",
    "progress.json is a FIFO": "progress.json: is not a regular file",
    "result.json is a directory": "result.json: is not a regular file",
    "result.json is 17 MiB": "result.json: is 17825792 bytes, more than the 16 MiB",
    "test_acc = 150": "result.json: test_acc is 150, must be <= 100",
    "exec_time_s = NaN": "result.json: exec_time_s is nan, must be a finite number",
    "exec_time_s = -1": "result.json: exec_time_s is -1.0, must be >= 0",
    "exec_time_s = 1e308": "result.json: exec_time_s is 1e+308, must be <= 1000000000",
    "images_per_s = Infinity": "result.json: images_per_s is inf, must be a finite number",
    "a GPU's memory is negative": "result.json: telemetry.gpus[0].mem_peak_gb is -3.0, must be >= 0",
    "result.json is {}": "result.json: status, cell_id, config, epochs, train_acc, val_acc, test_acc, "
                         "exec_time_s are missing; not a complete result",
    "a forged minimal result": "result.json: cell_id, config, train_acc, val_acc, test_acc, exec_time_s are "
                               "missing",
    "another cell's result": "result.json: cell_id is 'g1-b128-r0', not this cell's 'g2-b256-r0'",
    "a forged result with an empty config": "result.json: config.gpus is missing; not a complete result",
    "a result of another batch size under this id": "result.json: config.batch_size is 64, but the "
                                                    "experiment's cell has 256",
    "the split recorded disagrees with the config": "result.json: split.kind is 'blocked', but config.split "
                                                    "is 'random'",
    "a split other than the one submit made": "result.json: split.hash 'deadbeefdead' is not the split "
                                              "submit made of the data for this cell",
}


@pytest.mark.parametrize("variant", list(HOSTILE))
def test_a_hostile_file_is_one_damaged_cell_in_status_and_collect(experiment: Path, variant: str) -> None:
    """Each is one DAMAGED row with a one-line reason, never a hang, a traceback or a forged COMPLETED; the
    rest of the matrix is still read (issue 27 items 4 and 5)."""
    _hostile(experiment, variant)
    rows = {r.cell_id: r for r in experiment_status(experiment / "manifest.json", query=sacct("e")).rows}
    assert rows[VICTIM].state == "DAMAGED", rows[VICTIM]
    assert rows[VICTIM].error.startswith(HOSTILE[variant]) and "\n" not in rows[VICTIM].error
    assert {cid: r.state for cid, r in rows.items() if cid != VICTIM} == dict.fromkeys(
        ["g1-b128-r0", "g2-b128-r0", "g1-b256-r0"], "COMPLETED")
    frame = load_matrix(experiment).set_index("cell_id")
    assert frame.loc[VICTIM, "state"] == "DAMAGED"
    assert frame.loc[VICTIM, "reason"].startswith(HOSTILE[variant])
    assert (frame.drop(VICTIM)["state"] == "COMPLETED").all()


def test_an_unreadable_cell_folder_is_one_damaged_cell(experiment: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """chmod 000 on cells/<cell> (simulated: root reads through any mode): DAMAGED, not a PermissionError."""
    real_open = os.open

    def deny(path, *args, **kwargs):  # noqa: ANN001, ANN202
        if VICTIM in str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny)
    rows = {r.cell_id: r for r in experiment_status(experiment / "manifest.json", query=sacct("e")).rows}
    assert rows[VICTIM].state == "DAMAGED" and "permission denied" in rows[VICTIM].error
    assert sum(r.state == "COMPLETED" for r in rows.values()) == 3


def test_terminal_escapes_and_huge_text_are_cleaned_at_read_time(experiment: Path) -> None:
    """ESC[2J in a host, an error or a folder name never reaches the terminal; a 100 kB host is cut."""
    from aslhpc.orchestration.cellrecord import load_cells
    from aslhpc.orchestration.manifest import load_manifest
    from aslhpc.schema import clean_text

    _set_result(experiment, host="\x1b[2Jevil" + "h" * 100_000, slurm__nodelist="n1\x1b]0;title\x07")
    other = experiment / "cells" / "g1-b128-r0"
    (other / "result.json").unlink()
    write_json(other / "error.json", {"error": "boom\x1b[31m red\nsecond line", "time": ""})
    (experiment / "cells" / "x\x1b[2Jy").mkdir()
    records = load_cells(experiment, load_manifest(experiment / "manifest.json"))
    host = records[VICTIM].result["host"]
    assert "\x1b" not in host and host.startswith("evil") and len(host) <= 200
    assert records[VICTIM].result["slurm"]["nodelist"] == "n1"
    assert records["g1-b128-r0"].error.error == "boom red second line"
    planted = [r for cid, r in records.items() if cid.startswith("x")]
    assert [r.cell_id for r in planted] == ["xy"] and "never writes" in planted[0].damaged
    report = experiment_status(experiment / "manifest.json", query=sacct("e"))
    console = Console(record=True, width=120)
    console.print(render_table(report))
    assert "\x1b" not in console.export_text()
    assert clean_text("a\x1b[2Jb\tc\u202ed" + "x" * 500) == "ab c d" + "x" * 193 + "…"


@pytest.mark.parametrize("damage, says", [
    (lambda d: d["spec"].update(train={"epochs": "x"}), "spec.train.epochs='x' must be an integer >= 1"),
    (lambda d: d["spec"].update(cluster={"mem": "lots"}), "spec.cluster.mem='lots' is not a SLURM memory"),
    (lambda d: d["spec"].update(gpus=[[1]]), "spec.matrix.gpus has [[1]]"),
    (lambda d: d["cells"][VICTIM].update(cell_id="g2\x1b[2J"), "cells.g2-b256-r0.cell_id is 'g2\\x1b[2J'"),
    (lambda d: d["cells"][VICTIM]["attempts"][0].update(job_id="1\x1b[2J"), "holds control characters"),
    (lambda d: d["cells"][VICTIM]["attempts"][0].update(request={"mem": [1]}), "attempts[0].request.mem"),
])
def test_the_whole_manifest_is_schema_checked(experiment: Path, damage, says: str) -> None:  # noqa: ANN001
    from aslhpc.errors import ConfigError
    from aslhpc.orchestration.manifest import load_manifest

    data = json.loads((experiment / "manifest.json").read_text())
    damage(data)
    write_json(experiment / "manifest.json", data)
    with pytest.raises(ConfigError) as info:
        load_manifest(experiment / "manifest.json")
    msg = str(info.value)
    assert says in msg and "\n" not in msg and "\x1b" not in msg, msg


@pytest.mark.parametrize("plant", ["deep", "fifo", "zero"])
def test_a_hostile_manifest_is_one_error_line(tmp_path: Path, plant: str) -> None:
    from aslhpc.errors import ConfigError
    from aslhpc.orchestration.manifest import load_manifest

    path = tmp_path / "manifest.json"
    if plant == "deep":
        path.write_text("[" * 5000 + "]" * 5000)
    elif plant == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    with pytest.raises(ConfigError, match="is not a valid aslhpc manifest"):
        load_manifest(path)


def test_a_manifest_attempt_records_what_it_asked_for(experiment: Path) -> None:
    """``request`` is optional: absent in older manifests, kept when set, left out again when empty."""
    from aslhpc.orchestration.manifest import load_manifest

    m = load_manifest(experiment / "manifest.json")
    assert m.cells[VICTIM].last.request == {}
    assert "request" not in m.to_dict()["cells"][VICTIM]["attempts"][0]
    m.cells[VICTIM].last.request.update(mem="16G", time_min=120, gpus=2, cpus=8)
    m.save(experiment / "manifest.json")
    back = load_manifest(experiment / "manifest.json")
    assert back.cells[VICTIM].last.request == {"mem": "16G", "time_min": 120, "gpus": 2, "cpus": 8}


def test_status_logs_prints_a_planted_log_without_escapes_and_only_its_tail(
    experiment: Path, capsys: pytest.CaptureFixture
) -> None:
    """``status --logs CELL`` shows files others could write (issue 27.6): no terminal escapes reach the
    screen, a huge log costs its tail only, and a FIFO planted as a log is skipped (no hang) and a
    symbolic link is named, not followed."""
    cell = experiment / "cells" / VICTIM
    planted = "start\n" + "x" * (1 << 20) + "\n\x1b[2Jcleared\x1b]0;title\x07\n  last line\n"
    (cell / "evil.log").write_text(planted)
    os.mkfifo(cell / "pipe.log")
    assert status_cli.main(["--results", str(experiment.parent), "--experiment", "e", "--logs", VICTIM]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "cleared" in out and "  last line" in out  # the text stays, indentation too
    assert "start" not in out and len(out) < 40_000  # the tail of a 1 MiB log, lines capped
    assert "pipe.log" not in out  # not a file: skipped, never opened
    (cell / "link.log").symlink_to(cell / "evil.log")
    assert status_cli.main(["--results", str(experiment.parent), "--experiment", "e", "--logs", VICTIM]) == 0
    assert "link.log <==\n(not shown: is a symbolic link" in capsys.readouterr().out


def test_status_logs_into_a_pipe_closed_early_is_no_traceback(experiment: Path) -> None:
    """``aslhpc status --logs CELL | head -1``: the reader leaves early; status stops quietly (exit 141, as
    a command killed by SIGPIPE), never a BrokenPipeError traceback."""
    import subprocess
    import sys

    for k in range(100):  # ~1.8 MB to print: far more than a pipe holds, so status is still writing
        (experiment / "cells" / VICTIM / f"t{k}.log").write_text(f"{'x' * 900}\n" * 20)
    proc = subprocess.Popen([sys.executable, "-m", "aslhpc", "status", "--results", str(experiment.parent),
                             "--experiment", "e", "--logs", VICTIM], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().startswith("==> ")
    proc.stdout.close()  # what head does after its line
    _, err = proc.communicate(timeout=120)
    assert "Traceback" not in err and proc.returncode == 141, err
