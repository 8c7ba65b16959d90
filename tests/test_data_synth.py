"""The generated dataset: exact Kaggle layout, learnable classes, video-like drift, CLI."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aslhpc.data import CANONICAL_CLASSES, load_image, scan_dataset
from aslhpc.data.synth import main, write_dataset

TRAIN = Path("asl_alphabet_train") / "asl_alphabet_train"
TEST = Path("asl_alphabet_test") / "asl_alphabet_test"


def test_exact_kaggle_layout(synth_root: Path) -> None:
    assert sorted(p.name for p in synth_root.iterdir()) == ["asl_alphabet_test", "asl_alphabet_train"]
    class_dirs = sorted(p.name for p in (synth_root / TRAIN).iterdir())
    assert class_dirs == sorted(CANONICAL_CLASSES) and len(class_dirs) == 29
    for cls in CANONICAL_CLASSES:
        names = {p.name for p in (synth_root / TRAIN / cls).iterdir()}
        assert names == {f"{cls}{n}.jpg" for n in range(1, 13)}, cls
    tests = sorted(p.name for p in (synth_root / TEST).iterdir())
    assert len(tests) == 28 and "del_test.jpg" not in tests
    assert set(tests) == {f"{c}_test.jpg" for c in CANONICAL_CLASSES if c != "del"}
    for path in [*(synth_root / TRAIN).glob("*/*.jpg"), *(synth_root / TEST).iterdir()]:
        with Image.open(path) as img:
            assert (img.format, img.size, img.mode) == ("JPEG", (200, 200), "RGB"), path


def test_classes_are_learnable(synth_root: Path) -> None:
    """Nearest class centroid on 24px thumbnails already names every held-out test image."""
    idx = scan_dataset(synth_root)
    x = np.stack([load_image(idx.path(i), 24) for i in range(len(idx))]).astype(np.float32)
    labels = np.asarray(idx.labels)
    centroids = np.stack([x[labels == k].mean(0) for k in range(29)]).reshape(29, -1)
    hits = 0
    for path, label in idx.test_files:
        v = load_image(path, 24).astype(np.float32).reshape(1, -1)
        hits += int(np.argmin(((centroids - v) ** 2).sum(1)) == label)
    assert hits == len(idx.test_files) == 28


def test_frames_drift_slowly_like_video(synth_root: Path) -> None:
    """Neighbouring frames are closer than distant ones, so a random split leaks near-duplicates."""
    near, far = [], []
    for cls in ("A", "D", "H", "space"):
        f = [load_image(synth_root / TRAIN / cls / f"{cls}{n}.jpg", 64).astype(np.float32)
             for n in range(1, 13)]
        near += [np.abs(f[i] - f[i + 1]).mean() for i in range(11)]
        far.append(np.abs(f[0] - f[11]).mean())
    assert np.mean(far) > 1.5 * np.mean(near)


def test_seeded_and_fast(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    a = write_dataset(tmp_path / "a", per_class=12, seed=1)
    elapsed = time.perf_counter() - t0
    assert elapsed < 5.0, f"29x12 images took {elapsed:.1f} s"
    b = write_dataset(tmp_path / "b", per_class=2, seed=1, test_folder=False)
    c = write_dataset(tmp_path / "c", per_class=2, seed=2, image_size=64, test_folder=False)
    same = (a / TRAIN / "B" / "B2.jpg").read_bytes() == (b / TRAIN / "B" / "B2.jpg").read_bytes()
    assert same  # per-class streams: the first frames do not depend on per_class
    assert (b / TRAIN / "B" / "B2.jpg").read_bytes() != (c / TRAIN / "B" / "B2.jpg").read_bytes()
    assert not (b / "asl_alphabet_test").exists()
    with Image.open(c / TRAIN / "B" / "B1.jpg") as img:
        assert img.size == (64, 64)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "ds"
    assert main([str(out), "--per-class", "2", "--seed", "3"]) == 0
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and "58 images" in line and "28 test images" in line and str(out) in line
    assert len(scan_dataset(out)) == 58
    # a second run would mix with the first; it must refuse unless --force
    assert main([str(out), "--per-class", "1"]) == 2
    assert "error:" in capsys.readouterr().err and len(scan_dataset(out)) == 58
    assert main([str(out), "--per-class", "1", "--force"]) == 0
    assert len(scan_dataset(out)) == 29
    assert main([str(tmp_path / "x"), "--per-class", "0"]) == 2


def test_imagefolder_option_writes_non_asl_pngs_without_frame_numbers(tmp_path: Path, capsys) -> None:
    from aslhpc.data.layout import IMAGEFOLDER, file_number

    assert main([str(tmp_path / "f"), "--per-class", "3", "--imagefolder", "4", "--image-size", "16"]) == 0
    assert "as an ImageFolder" in capsys.readouterr().out
    idx = scan_dataset(tmp_path / "f")
    assert idx.layout == IMAGEFOLDER and len(idx.classes) == 4 and len(idx) == 12
    assert not set(idx.classes) & set(CANONICAL_CLASSES)
    for name in idx.files:
        assert name.endswith(".png") and file_number(name) is None, name
        with Image.open(tmp_path / "f" / name) as img:
            assert (img.format, img.size) == ("PNG", (16, 16))
    assert main([str(tmp_path / "f"), "--per-class", "3", "--imagefolder", "4"]) == 2  # not over a dataset
    assert capsys.readouterr().err.startswith("error: ")
