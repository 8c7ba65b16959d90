"""Inference end to end: a model trained by ``run_cell`` on generated data, then images, the flat
test folder, class subfolders, a video that spells a word, ``--experiment`` and the one-line errors."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from aslhpc.data.layout import TEST_DIR, TRAIN_DIR
from aslhpc.errors import AslhpcError
from aslhpc.predict import main
from aslhpc.recognize import (
    Classifier,
    TextSmoother,
    classify_input,
    evaluate_images,
    frame_to_pil,
    open_camera,
    open_video,
    scan_folder,
    score,
)
from aslhpc.training.config import TrainConfig
from aslhpc.training.trainer import run_cell

# H E L, nothing (re-arms L), L O, space, A S K, del (removes the K), L.
WORD = ["H", "E", "L", "nothing", "L", "O", "space", "A", "S", "K", "del", "L"]
EXPECTED = "HELLO ASL"
RUN = 10  # frames per sign in the video
THRESHOLD = 0.6
HOLD = 4  # a burst of up to 3 wrong frames cannot write a letter; 4 right ones among 10 do


@pytest.fixture(scope="module")
def cell(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One CPU cell trained on the session's generated data (29 classes x 12 images).

    Small batches for enough steps: at batch 32 whole classes were still mixed up after a few
    epochs, depending on the seed; batch 8 x 8 epochs fits every class across data/init seeds.
    """
    out = tmp_path_factory.mktemp("results") / "demo" / "cells" / "g0-b8-r0"
    cfg = TrainConfig(data=str(synth_root), out=str(out), gpus=0, batch_size=8, epochs=8, lr=0.01,
                      momentum=0.9, cache_dir=str(out.parent.parent / "cache"), workers=0, log_every=0,
                      sample_interval_s=0.5)
    result = run_cell(cfg, log=lambda m: None)
    assert result["val_acc"] > 80, "the test model did not learn; every test below would be meaningless"
    return out


@pytest.fixture(scope="module")
def classifier(cell: Path) -> Classifier:
    return Classifier.from_file(cell / "best_model.pt", device="cpu")


def train_dir(root: Path) -> Path:
    return root / TRAIN_DIR / TRAIN_DIR


def flat_test_dir(root: Path) -> Path:
    return root / TEST_DIR / TEST_DIR


@pytest.fixture(scope="module")
def word_video(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MJPG .avi of consecutive generated frames, RUN per sign, spelling WORD."""
    path = tmp_path_factory.mktemp("video") / "hello_asl.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15, (200, 200))
    assert writer.isOpened()
    used: dict[str, int] = {}
    for sign in WORD:
        files = sorted((train_dir(synth_root) / sign).iterdir())
        start = used.get(sign, 0)  # a sign used again continues with its next frames (cycling)
        for n in range(start, start + RUN):
            frame = cv2.imread(str(files[n % len(files)]))
            assert frame is not None and frame.shape == (200, 200, 3)
            writer.write(frame)
        used[sign] = start + RUN
    writer.release()
    return path


# --------------------------------------------------------------------------- single images


def test_top_k_on_single_images(classifier: Classifier, synth_root: Path):
    paths = [flat_test_dir(synth_root) / f"{c}_test.jpg" for c in ("A", "space")]
    preds = classifier.predict(paths, k=3)
    assert len(preds) == 2
    for p in preds:
        assert len(p.top) == 3
        probs = [prob for _, prob in p.top]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert len({name for name, _ in p.top}) == 3 and all(n in classifier.classes for n, _ in p.top)
    assert len(classifier.predict(paths[:1], k=99)[0].top) == len(classifier.classes)


def test_cli_prints_one_top_k_line_per_image(cell: Path, synth_root: Path, capsys):
    paths = [str(flat_test_dir(synth_root) / f"{c}_test.jpg") for c in ("B", "nothing")]
    assert main(["--model", str(cell / "best_model.pt"), "--top-k", "2", "--device", "cpu", *paths]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for path, line, label in zip(paths, lines, ("B", "nothing"), strict=True):
        assert line.startswith(f"{path}: ") and line.endswith(f"(true {label})")
        assert len(line.split(": ", 1)[1].split("  (true")[0].split("  ")) == 2


def test_inference_tuning_does_not_change_the_probabilities(cell: Path, synth_root: Path):
    images = sorted(flat_test_dir(synth_root).iterdir())[:4]
    fused = Classifier.from_file(cell / "best_model.pt", device="cpu")
    plain = Classifier.from_file(cell / "best_model.pt", device="cpu", fuse=False, channels_last=False)
    pixels = [fused.pixels(p) for p in images]
    torch.testing.assert_close(fused.probabilities(pixels), plain.probabilities(pixels), atol=1e-5, rtol=1e-4)


# --------------------------------------------------------------------------- folders


def test_flat_test_folder_gives_its_accuracy_report(cell: Path, classifier: Classifier, synth_root: Path,
                                                    capsys):
    folder = classify_input(flat_test_dir(synth_root), classifier.classes)
    assert len(folder.labelled) == 28 and not folder.unlabelled  # Kaggle's: no del
    report = evaluate_images(classifier, folder.labelled)
    # Same model, same preprocessing: the trainer's own score on this folder must agree exactly.
    extra = json.loads((cell / "result.json").read_text())["extra_test"]
    assert report.n == extra["n"] == 28 and report.accuracy == pytest.approx(extra["acc"])
    assert len(report.per_class) == 28 and "del" not in report.per_class
    assert sum(report.confusion.values()) == report.n - report.correct
    assert all(t != p for t, p in report.confusion)

    # The Kaggle wrapper folder (asl_alphabet_test/asl_alphabet_test) is looked through.
    assert main(["--model", str(cell / "best_model.pt"), str(synth_root / TEST_DIR)]) == 0
    out = capsys.readouterr().out
    assert "28 images, 28 labelled" in out
    assert f"accuracy {report.accuracy:.2f}% ({report.correct}/28)" in out
    assert "per class: A " in out and ("confusions: none" in out or "confusions (true -> predicted): " in out)


def test_class_subfolders_are_labelled(classifier: Classifier, synth_root: Path, tmp_path: Path):
    for cls in ("A", "space"):
        (tmp_path / cls).mkdir()
        for n in (1, 2):
            shutil.copy(train_dir(synth_root) / cls / f"{cls}{n}.jpg", tmp_path / cls)
    shutil.copy(flat_test_dir(synth_root) / "B_test.jpg", tmp_path / "unnamed.jpg")
    folder = scan_folder(tmp_path, classifier.classes)
    assert [(im.path.name, im.label) for im in folder.labelled] == [
        ("A1.jpg", "A"), ("A2.jpg", "A"), ("space1.jpg", "space"), ("space2.jpg", "space")]
    assert [im.path.name for im in folder.unlabelled] == ["unnamed.jpg"]
    report = evaluate_images(classifier, folder.labelled, batch_size=3)
    assert report.n == 4 and set(report.per_class) == {"A", "space"}


def test_score_lists_only_the_confusions_that_happened():
    report = score(("A", "B", "C"), ["A", "A", "B", "C", "C"], ["A", "B", "B", "A", "A"])
    assert report.per_class == {"A": (1, 2), "B": (1, 1), "C": (0, 2)}
    assert report.confusion == {("A", "B"): 1, ("C", "A"): 2}
    assert report.accuracy == pytest.approx(40.0)
    assert report.format().splitlines()[-1] == "confusions (true -> predicted): C -> A x2, A -> B x1"


# --------------------------------------------------------------------------- video


def test_frames_are_cropped_square_and_converted_to_rgb():
    bgr = np.zeros((40, 60, 3), np.uint8)
    bgr[:, :, 0] = 255  # pure blue in OpenCV's BGR order
    bgr[:, :10] = 0  # the left margin the crop removes
    img = frame_to_pil(bgr)
    assert img.size == (40, 40) and img.getpixel((0, 0)) == (0, 0, 255)
    assert frame_to_pil(np.zeros((480, 640, 3), np.uint8)).size == (200, 200)


def test_a_video_spells_the_word(classifier: Classifier, word_video: Path):
    with open_video(word_video) as source:
        smoother = TextSmoother(hold=HOLD, threshold=THRESHOLD)
        text = smoother.feed((p.label, p.prob) for p in classifier.predict_frames(source, batch_size=8))
    assert smoother.frames == RUN * len(WORD)
    assert text == EXPECTED
    assert [e.label for e in smoother.events] == [w for w in WORD if w != "nothing"]


def test_cli_streams_a_video_to_text(cell: Path, word_video: Path, capsys):
    args = ["--model", str(cell / "best_model.pt"), "--hold", str(HOLD), "--threshold", str(THRESHOLD),
            str(word_video)]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == EXPECTED
    assert lines[-2].startswith(f"{word_video}: {RUN * len(WORD)} frames in ")
    assert lines[-2].endswith(" frames/s)")
    assert any(line.endswith("'HEL'") for line in lines)  # the text is shown as it grows


# --------------------------------------------------------------------------- --experiment


def test_experiment_picks_the_best_cell_with_a_model(cell: Path, synth_root: Path, tmp_path: Path, capsys):
    cells = tmp_path / "results" / "exp" / "cells"
    for name, val_acc, model in (("g1-b32-r0", 50.0, True), ("g2-b32-r0", 90.0, True),
                                 ("g4-b32-r0", 99.0, False)):
        (cells / name).mkdir(parents=True)
        (cells / name / "result.json").write_text(json.dumps({"val_acc": val_acc}))
        if model:
            shutil.copy(cell / "best_model.pt", cells / name)
    (cells / "g8-b32-r0").mkdir()  # still running: no result.json
    image = str(flat_test_dir(synth_root) / "A_test.jpg")
    assert main(["--experiment", "exp", "--results", str(tmp_path / "results"), image]) == 0
    lines = capsys.readouterr().out.splitlines()
    model = cells / "g2-b32-r0" / "best_model.pt"
    assert lines[0] == f"using cell g2-b32-r0 of exp (val_acc 90.00%): {model}"
    assert lines[1].startswith(f"{image}: ")


# --------------------------------------------------------------------------- one-line errors


def error_of(argv: list[str], capfd) -> str:
    assert main(argv) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err


def test_missing_model_is_a_one_line_error(tmp_path: Path, capfd):
    assert "does not exist" in error_of(["--model", str(tmp_path / "nope.pt"), str(tmp_path)], capfd)


def test_bad_inputs_are_one_line_errors(cell: Path, tmp_path: Path, capfd):
    model = ["--model", str(cell / "best_model.pt")]
    junk = tmp_path / "broken.avi"
    junk.write_bytes(b"not a video at all")
    assert "cannot open video" in error_of([*model, str(junk)], capfd)
    assert "camera 99 cannot be opened" in error_of([*model, "--camera", "99"], capfd)
    (tmp_path / "empty").mkdir()
    assert "holds no images" in error_of([*model, str(tmp_path / "empty")], capfd)
    (tmp_path / "notes.txt").write_text("hello")
    assert "is a file but not an image" in error_of([*model, str(tmp_path / "notes.txt")], capfd)
    assert "does not exist" in error_of([*model, str(tmp_path / "missing.jpg")], capfd)
    assert "nothing to predict" in error_of(model, capfd)
    assert "no experiment" in error_of(["--experiment", "nope", "--results", str(tmp_path), str(junk)], capfd)


def test_an_undecodable_image_is_reported_and_the_others_are_still_scored(cell: Path, synth_root: Path,
                                                                          tmp_path: Path, capfd):
    good = [str(flat_test_dir(synth_root) / f"{c}_test.jpg") for c in ("A", "B")]
    bad = tmp_path / "fake.jpg"
    bad.write_text("hello")
    assert main(["--model", str(cell / "best_model.pt"), good[0], str(bad), good[1]]) == 2
    captured = capfd.readouterr()
    assert [line.split(": ", 1)[0] for line in captured.out.splitlines()] == good
    assert captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith(f"{bad}: cannot read image ("), captured.err


def test_an_undecodable_image_in_a_labelled_folder_is_listed_not_scored(
        cell: Path, classifier: Classifier, synth_root: Path, tmp_path: Path, capfd):
    for cls in ("A", "B"):
        (tmp_path / cls).mkdir()
        shutil.copy(train_dir(synth_root) / cls / f"{cls}1.jpg", tmp_path / cls)
    broken = tmp_path / "A" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 truncated")
    report = evaluate_images(classifier, scan_folder(tmp_path, classifier.classes).labelled)
    assert report.n == 2 and [u.path for u in report.unreadable] == [broken]
    assert report.to_dict()["unreadable"][0]["path"] == str(broken)

    assert main(["--model", str(cell / "best_model.pt"), str(tmp_path)]) == 2
    captured = capfd.readouterr()
    assert f"/2), 1 unreadable not scored: {broken}" in captured.out and "per class: A " in captured.out
    assert captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith(f"{broken}: cannot read image ("), captured.err


def not_a_model_files(cell: Path, folder: Path) -> dict[str, Path]:
    """Files people pass as --model by mistake: ours but not a model, another program's .pt, junk."""
    torch.save({"weights": torch.zeros(3)}, folder / "foreign.pt")
    torch.save(torch.nn.Linear(2, 2), folder / "pickled_module.pt")
    (folder / "random.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    blob = torch.load(cell / "best_model.pt", weights_only=True)
    torch.save({**blob, "classes": ["A", "B"]}, folder / "wrong_classes.pt")  # weights for 29 classes
    return {"result.json": cell / "result.json", "checkpoint.pt": cell / "checkpoint.pt",
            **{p.stem: p for p in folder.glob("*.pt")}}


def test_a_file_that_is_not_a_model_is_a_one_line_error(cell: Path, synth_root: Path, tmp_path: Path, capfd):
    image = str(flat_test_dir(synth_root) / "A_test.jpg")
    files = not_a_model_files(cell, tmp_path)
    assert len(files) == 6
    for path in files.values():
        err = error_of(["--model", str(path), image], capfd)
        assert err.startswith(f"error: {path} is not an aslhpc model file (")
        assert "pass a cell's best_model.pt" in err
    assert "training checkpoint" in error_of(["--model", str(files["checkpoint.pt"]), image], capfd)
    err = error_of(["--model", str(cell), image], capfd)
    assert "is a folder" in err and str(cell / "best_model.pt") in err


def test_a_path_of_the_wrong_kind_says_what_it_is(cell: Path, synth_root: Path, tmp_path: Path, capfd):
    model = ["--model", str(cell / "best_model.pt")]
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    assert f"({notes} is a file, not a folder)" in error_of([*model, str(notes / "A_test.jpg")], capfd)
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    assert "is neither a regular file nor a folder" in error_of([*model, str(fifo)], capfd)
    err = error_of(["--experiment", "exp", "--results", str(notes), str(flat_test_dir(synth_root))], capfd)
    assert f"--results {notes} is a file, expected the results folder" in err
    with pytest.raises(AslhpcError, match="is a folder"):
        open_video(tmp_path)


def test_library_raises_aslhpc_errors(tmp_path: Path):
    with pytest.raises(AslhpcError, match="camera 99"):
        open_camera(99)
    with pytest.raises(AslhpcError, match="does not exist"):
        open_video(tmp_path / "missing.mp4")


# --------------------------------------------------------------------------- splits


def _split_cells(cell: Path, results: Path) -> Path:
    cells = results / "leak" / "cells"
    for name, kind, val_acc in (("g1-b8-r0", "random", 95.0), ("g2-b8-r0", "random", 97.0),
                                ("g1-b8-blocked-r0", "blocked", 80.0), ("g2-b8-blocked-r0", "blocked", 85.0)):
        (cells / name).mkdir(parents=True)
        (cells / name / "result.json").write_text(json.dumps({"val_acc": val_acc, "split": {"kind": kind}}))
        shutil.copy(cell / "best_model.pt", cells / name)
    return cells


def test_experiment_says_which_split_its_cell_came_from_and_split_picks_one(cell: Path, synth_root: Path,
                                                                           tmp_path: Path, capsys):
    cells = _split_cells(cell, tmp_path / "results")
    image = str(flat_test_dir(synth_root) / "A_test.jpg")
    assert main(["--experiment", "leak", "--results", str(tmp_path / "results"), image]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    model = cells / "g2-b8-r0" / "best_model.pt"
    assert first == f"using cell g2-b8-r0 of leak (random split, val_acc 97.00%): {model}"
    results = str(tmp_path / "results")
    assert main(["--experiment", "leak", "--split", "blocked", "--results", results, image]) == 0
    want = "using cell g2-b8-blocked-r0 of leak (blocked split, val_acc 85.00%)"
    assert capsys.readouterr().out.startswith(want)


def test_per_split_scores_the_flat_test_folder_with_each_splits_best_cell(cell: Path, synth_root: Path,
                                                                          tmp_path: Path, capsys):
    _split_cells(cell, tmp_path / "results")
    folder = flat_test_dir(synth_root)
    results = str(tmp_path / "results")
    assert main(["--experiment", "leak", "--per-split", "--results", results, str(folder)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("split random: using cell g2-b8-r0 of leak (random split")
    assert any(x.startswith("split blocked: using cell g2-b8-blocked-r0") for x in out)
    (summary,) = [x for x in out if x.startswith(f"{folder} per split: ")]
    # the same model file in both cells: the same score on each side, counted on all 28 images
    rnd, blk = summary.split(": ", 1)[1].split(", ")
    assert rnd.startswith("random ") and blk.startswith("blocked ") and rnd[7:] == blk[8:] and "/28)" in rnd


def test_split_flags_need_an_experiment_and_a_recorded_split(cell: Path, synth_root: Path, tmp_path: Path,
                                                             capfd):
    folder = str(flat_test_dir(synth_root))
    model = str(cell / "best_model.pt")
    assert "use them with --experiment" in error_of(["--model", model, "--split", "random", folder], capfd)
    results = str(tmp_path / "results")
    _split_cells(cell, tmp_path / "results")
    shutil.rmtree(tmp_path / "results" / "leak" / "cells" / "g1-b8-blocked-r0")
    shutil.rmtree(tmp_path / "results" / "leak" / "cells" / "g2-b8-blocked-r0")
    err = error_of(["--experiment", "leak", "--split", "blocked", "--results", results, folder], capfd)
    assert "no completed blocked-split cell" in err and "(it has random)" in err
    image = str(flat_test_dir(synth_root) / "A_test.jpg")
    err = error_of(["--experiment", "leak", "--per-split", "--results", results, image], capfd)
    assert "--per-split needs folders of labelled images" in err


def test_without_opencv_images_still_work_and_a_video_is_one_line_naming_the_extra() -> None:
    """OpenCV is the [video] extra: the predict modules import without it; opening a video says what to
    install."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['cv2'] = None\n"
            "import aslhpc.predict, aslhpc.recognize.classifier\n"
            "from aslhpc.recognize.sources import opencv\n"
            "from aslhpc.errors import AslhpcError\n"
            "try:\n    opencv()\nexcept AslhpcError as e:\n    print(e)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "pip install 'aslhpc[video]'" in proc.stdout and proc.stdout.count("\n") == 1
