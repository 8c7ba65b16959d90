"""scan_dataset: the accepted layouts, canonical class order, frame-number order, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aslhpc.data import (
    CANONICAL_CLASSES,
    MEAN,
    STD,
    DatasetIndex,
    load_image,
    normalize,
    scan_dataset,
    to_tensor,
)
from aslhpc.data.layout import IMAGEFOLDER, file_number
from aslhpc.data.preprocess import CorruptImageError
from aslhpc.errors import DataError


def touch_classes(root: Path, spec: dict[str, list[int]]) -> Path:
    """Empty placeholder files are enough: scanning never opens images."""
    for cls, numbers in spec.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for n in numbers:
            (root / cls / f"{cls}{n}.jpg").write_bytes(b"")
    return root


def test_canonical_classes() -> None:
    assert len(CANONICAL_CLASSES) == 29
    assert CANONICAL_CLASSES[:3] == ("A", "B", "C")
    assert CANONICAL_CLASSES[25:] == ("Z", "del", "nothing", "space")


def test_kaggle_layout(synth_root: Path) -> None:
    idx = scan_dataset(synth_root)
    assert idx.root == (synth_root / "asl_alphabet_train" / "asl_alphabet_train").resolve()
    assert idx.classes == CANONICAL_CLASSES
    # Not the case-insensitive order of `ls` / file browsers (A, B, C, D, del, E, ...).
    assert idx.classes != tuple(sorted(CANONICAL_CLASSES, key=str.lower))
    assert len(idx) == len(idx.labels) == 29 * 12
    # grouped by class, by frame number: A9 then A10, never A1, A10, A11, A12, A2
    assert idx.files[:12] == tuple(f"A/A{n}.jpg" for n in range(1, 13))
    assert idx.files[-1] == "space/space12.jpg"
    assert idx.labels[:12] == (0,) * 12 and idx.labels[-1] == 28
    assert all(idx.files[i].split("/")[0] == idx.classes[lab] for i, lab in enumerate(idx.labels))
    assert idx.path(0).is_file()
    assert set(idx.counts().values()) == {12}


def test_flat_test_folder(synth_root: Path) -> None:
    idx = scan_dataset(synth_root)
    assert len(idx.test_files) == 28
    names = [Path(p).name for p, _ in idx.test_files]
    assert "del_test.jpg" not in names
    for path, label in idx.test_files:
        assert Path(path).is_absolute() and Path(path).is_file()
        assert Path(path).name == f"{idx.classes[label]}_test.jpg"
    assert [lab for _, lab in idx.test_files] == [i for i, c in enumerate(CANONICAL_CLASSES) if c != "del"]


def test_inner_train_folder_still_finds_test_folder(synth_root: Path) -> None:
    inner = synth_root / "asl_alphabet_train" / "asl_alphabet_train"
    a, b = scan_dataset(inner), scan_dataset(synth_root / "asl_alphabet_train")
    full = scan_dataset(synth_root)
    assert a.files == b.files == full.files
    assert a.test_files == full.test_files


def test_direct_layout_subset_order_and_numbers(tmp_path: Path) -> None:
    touch_classes(tmp_path, {"space": [1], "nothing": [2, 1], "del": [1], "Z": [1], "B": [1],
                             "A": [10, 2, 100, 1]})
    (tmp_path / "A" / "notes.txt").write_text("not an image")
    (tmp_path / "A" / ".hidden.jpg").write_bytes(b"")
    (tmp_path / ".aslhpc-cache").mkdir()
    (tmp_path / ".aslhpc-cache" / "x.npy").write_bytes(b"")
    (tmp_path / "README.md").write_text("readme")
    idx = scan_dataset(tmp_path)
    assert idx.classes == ("A", "B", "Z", "del", "nothing", "space")  # del after Z, nothing before space
    assert idx.files[:4] == ("A/A1.jpg", "A/A2.jpg", "A/A10.jpg", "A/A100.jpg")
    assert idx.files[4:] == ("B/B1.jpg", "Z/Z1.jpg", "del/del1.jpg", "nothing/nothing1.jpg",
                             "nothing/nothing2.jpg", "space/space1.jpg")
    assert idx.labels == (0, 0, 0, 0, 1, 2, 3, 4, 4, 5)
    assert idx.test_files == ()


def test_one_level_train_layout_and_flat_test_without_inner_folder(tmp_path: Path) -> None:
    touch_classes(tmp_path / "asl_alphabet_train", {"A": [1, 2], "space": [1]})
    test = tmp_path / "asl_alphabet_test"
    test.mkdir()
    for name in ("A_test.jpg", "space_test.jpg", "B_test.jpg"):  # B has no training folder: skipped
        (test / name).write_bytes(b"")
    idx = scan_dataset(tmp_path)
    assert idx.classes == ("A", "space")
    assert [(Path(p).name, lab) for p, lab in idx.test_files] == [("A_test.jpg", 0), ("space_test.jpg", 1)]


def test_a_folder_not_named_like_an_asl_class_is_named(tmp_path: Path, capsys) -> None:
    """Beside ASL class folders (a misspelt 'del'?) it makes the tree a plain ImageFolder, said once."""
    touch_classes(tmp_path, {"A": [1], "Delete": [1]})
    assert scan_dataset(tmp_path).layout == IMAGEFOLDER
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and "'Delete' is not an ASL class" in warning[0], warning


def test_unknown_test_file_is_named(tmp_path: Path) -> None:
    touch_classes(tmp_path, {"A": [1]})
    (tmp_path / "asl_alphabet_test").mkdir()
    (tmp_path / "asl_alphabet_test" / "hello.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="hello.jpg"):
        scan_dataset(tmp_path)


def test_missing_and_empty_directories(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match="does not exist") as err:
        scan_dataset(missing)
    assert str(missing) in str(err.value) and "asl_alphabet_train" in str(err.value)
    empty = tmp_path / "empty"
    (empty / ".aslhpc-cache").mkdir(parents=True)  # hidden folders do not count
    with pytest.raises(DataError, match="no class folders") as err:
        scan_dataset(empty)
    assert str(empty) in str(err.value) and "\n" not in str(err.value)
    touch_classes(tmp_path / "hollow", {"A": []})
    with pytest.raises(DataError, match="holds no images"):
        scan_dataset(tmp_path / "hollow")
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    with pytest.raises(DataError, match="not a directory"):
        scan_dataset(afile)


def test_fingerprint_names_not_location(tmp_path: Path) -> None:
    a = scan_dataset(touch_classes(tmp_path / "a", {"A": [1, 2], "B": [1]}))
    b = scan_dataset(touch_classes(tmp_path / "b", {"A": [1, 2], "B": [1]}))
    c = scan_dataset(touch_classes(tmp_path / "c", {"A": [1, 2, 3], "B": [1]}))
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert len(a.fingerprint()) == 64
    assert isinstance(a, DatasetIndex)


def test_file_number() -> None:
    assert file_number("A12.jpg") == 12 and file_number("nothing3.jpg") == 3 and file_number("x.jpg") is None


# -- preprocess: the single decode/resize and normalisation ---------------------------------


def test_load_image_any_mode_to_rgb(tmp_path: Path) -> None:
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[:, :30] = (255, 0, 0)
    cases = {
        "rgb.png": Image.fromarray(rgb),
        "grey.png": Image.new("L", (50, 50), 128),
        "rgba.png": Image.new("RGBA", (50, 50), (0, 255, 0, 10)),
        "pal.gif": Image.new("P", (50, 50), 3),
        "deep.png": Image.fromarray(np.arange(2500, dtype=np.uint16).reshape(50, 50) * 20),
    }
    for name, img in cases.items():
        img.save(tmp_path / name)
        out = load_image(tmp_path / name, size=32)
        assert out.dtype == np.uint8 and out.shape == (32, 32, 3), name
    assert (load_image(tmp_path / "grey.png", 16) == 128).all()
    assert tuple(load_image(tmp_path / "rgba.png", 16)[0, 0]) == (0, 255, 0)
    red = load_image(Image.fromarray(rgb), size=20)  # a PIL image in memory works too
    assert tuple(red[10, 2]) == (255, 0, 0) and tuple(red[10, 17]) == (0, 0, 0)
    rgb = tmp_path / "rgb.png"
    assert not np.array_equal(load_image(rgb, 20, "nearest"), load_image(rgb, 20, "bicubic"))
    with pytest.raises(ValueError, match="interpolation"):
        load_image(tmp_path / "rgb.png", 20, "fancy")


def test_load_image_corrupt_raises_naming_file(tmp_path: Path) -> None:
    good = tmp_path / "good.jpg"
    Image.new("RGB", (64, 64), (9, 9, 9)).save(good)
    trunc = tmp_path / "trunc.jpg"
    trunc.write_bytes(good.read_bytes()[:200])
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"this is not a jpeg")
    for bad in (trunc, junk, tmp_path / "missing.jpg"):
        with pytest.raises(CorruptImageError, match=bad.name):
            load_image(bad, 32)
    assert issubclass(CorruptImageError, DataError)


def test_normalize_range_and_memory_format() -> None:
    x = torch.zeros(2, 3, 5, 4, dtype=torch.uint8)
    x[0] = 255
    x[1, :, 0, 0] = 51
    y = normalize(x)
    assert y.dtype == torch.float32 and y.shape == x.shape
    assert torch.all(y[0] == 1.0) and y[1, 0, 1, 1] == -1.0
    assert torch.allclose(y[1, :, 0, 0], torch.full((3,), (51 / 255 - MEAN[0]) / STD[0]))
    assert y.is_contiguous()
    cl = x.contiguous(memory_format=torch.channels_last)
    ycl = normalize(cl)
    assert ycl.is_contiguous(memory_format=torch.channels_last) and not ycl.is_contiguous()
    assert torch.equal(ycl, y)
    nhwc = torch.zeros(2, 5, 4, 3, dtype=torch.uint8).permute(0, 3, 1, 2)  # NHWC storage, NCHW view
    assert normalize(nhwc).is_contiguous(memory_format=torch.channels_last)
    assert normalize(x[0]).shape == (3, 5, 4)
    with pytest.raises(TypeError):
        normalize(x.float())
    with pytest.raises(ValueError):
        normalize(torch.zeros(1, 5, 4, 3, dtype=torch.uint8))


def test_to_tensor_chw() -> None:
    a = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    t = to_tensor(a)
    assert t.dtype == torch.uint8 and t.shape == (3, 2, 3) and t.is_contiguous()
    assert t[1, 0, 2].item() == a[0, 2, 1]
    ro = a.copy()
    ro.flags.writeable = False  # a memmap row or np.asarray(PIL image)
    t = to_tensor(ro)
    t[0, 0, 0] = 99  # an independent, writable copy
    assert ro[0, 0, 0] == 0 and torch.equal(to_tensor(ro), to_tensor(a))
    with pytest.raises(TypeError):
        to_tensor(a.astype(np.float32))


# ---- issue 16 medium 3: every filesystem problem is one line naming the path -------------------


def test_symlink_loop_in_a_class_folder_is_named(tmp_path: Path) -> None:
    touch_classes(tmp_path, {"A": [1, 2]})
    (tmp_path / "A" / "A9.jpg").symlink_to(tmp_path / "A" / "A9.jpg")  # points at itself
    with pytest.raises(DataError, match=r"symlink loop at .*A9\.jpg") as err:
        scan_dataset(tmp_path)
    assert "\n" not in str(err.value)


def test_class_folder_symlink_loop_is_named(tmp_path: Path) -> None:
    touch_classes(tmp_path, {"A": [1]})
    (tmp_path / "B").symlink_to(tmp_path / "B")
    with pytest.raises(DataError, match=r"symlink loop at .*/B while listing the class folders"):
        scan_dataset(tmp_path)


def test_unreadable_class_directory_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import os

    from aslhpc.data import layout

    touch_classes(tmp_path, {"A": [1], "B": [1]})
    real = os.scandir

    def scandir(path):  # noqa: ANN001, ANN202 - what a non-root user meets on a chmod 700 folder
        if str(path).endswith("/B"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(layout.os, "scandir", scandir)
    with pytest.raises(DataError, match=r"permission denied reading .*/B while scanning class folder B; fix"):
        scan_dataset(tmp_path)


def test_io_error_in_the_scan_is_a_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from aslhpc.data import layout

    touch_classes(tmp_path, {"A": [1]})

    def broken(path):  # noqa: ANN001, ANN202
        raise OSError(errno.EIO, "Input/output error", str(path))

    monkeypatch.setattr(layout.os, "scandir", broken)
    with pytest.raises(DataError, match=r"cannot read .* Input/output error"):
        scan_dataset(tmp_path)


def test_class_name_that_is_a_file_or_dangling_link_is_reported(tmp_path: Path) -> None:
    touch_classes(tmp_path, {"A": [1]})
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "C").symlink_to(tmp_path / "notes.txt")  # a symlinked "class folder" that is a file
    with pytest.raises(DataError, match=r"class folder .*/C is not a directory"):
        scan_dataset(tmp_path)
    (tmp_path / "C").unlink()
    (tmp_path / "D").symlink_to(tmp_path / "gone")
    with pytest.raises(DataError, match=r"class folder .*/D is a symlink to nothing"):
        scan_dataset(tmp_path)


def test_dangling_image_links_are_named_and_skipped(tmp_path: Path, capsys) -> None:
    touch_classes(tmp_path, {"A": [1, 2]})
    (tmp_path / "A" / "A3.jpg").symlink_to(tmp_path / "elsewhere" / "A3.jpg")
    idx = scan_dataset(tmp_path)
    assert idx.files == ("A/A1.jpg", "A/A2.jpg")
    err = capsys.readouterr().err
    assert "warning: 1 image link(s) in" in err and "A3.jpg" in err
