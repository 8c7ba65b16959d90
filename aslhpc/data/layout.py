"""Scan a dataset folder into a :class:`DatasetIndex`: the Kaggle ASL Alphabet layout or any ImageFolder.

Accepted layouts (``root`` is what the user passes)::

    root/asl_alphabet_train/asl_alphabet_train/<CLASS>/<CLASS><n>.jpg   (the unzipped Kaggle archive)
    root/asl_alphabet_train/<CLASS>/...
    root/<CLASS>/...
    root/asl_alphabet_test/asl_alphabet_test/<CLASS>_test.jpg           (optional flat test folder)
    root/asl_alphabet_test/<CLASS>_test.jpg
    root/<class>/<image>                                                 (any ImageFolder, >= 2 classes)

Kaggle layout (the asl_alphabet_* folders, or class folders that all carry ASL names): class order
is the canonical A..Z, del, nothing, space (what the labels mean), never ``sorted()`` order, so a
model's output unit i means the same letter on every machine, and a folder in asl_alphabet_train that
is no ASL class is an error (a stray folder would silently become a class). Any other folder of class
folders is an ImageFolder: classes are the folder names in ``sorted()`` order, as torchvision's (one
warning line when half or more of them are ASL names: the ASL set with a misspelt folder?).
Files are ordered by the number at the end of their stem (A2 before A10; Kaggle's images are
consecutive video frames and the blocked split relies on that order), unnumbered ones by name.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from aslhpc.errors import DataError

CANONICAL_CLASSES: tuple[str, ...] = tuple(chr(c) for c in range(ord("A"), ord("Z") + 1)) + (
    "del",
    "nothing",
    "space",
)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
TRAIN_DIR = "asl_alphabet_train"
TEST_DIR = "asl_alphabet_test"
# Folders that may sit beside the class folders without being classes.
_NOT_CLASSES = frozenset({TRAIN_DIR, TEST_DIR, "__MACOSX"})
_EXPECTED = (f"<root>/{TRAIN_DIR}/{TRAIN_DIR}/<CLASS>/<CLASS><n>.jpg, or <root>/<class>/<image> "
             "(an ImageFolder)")
_NUMBER = re.compile(r"(\d+)$")
KAGGLE = "kaggle"
IMAGEFOLDER = "imagefolder"


@dataclass(frozen=True)
class DatasetIndex:
    """Every training file, its label, and the optional flat test folder."""

    root: Path  # the directory that directly holds the class folders
    classes: tuple[str, ...]  # canonical order, filtered to those present
    files: tuple[str, ...]  # relative to root, "A/A12.jpg"; grouped by class, by file number
    labels: tuple[int, ...]  # index into classes
    test_files: tuple[tuple[str, int], ...] = ()  # (absolute path, label); () when absent
    layout: str = KAGGLE  # KAGGLE (canonical class order) or IMAGEFOLDER (sorted folder names)

    def __len__(self) -> int:
        return len(self.files)

    def path(self, i: int) -> Path:
        return self.root / self.files[i]

    def counts(self) -> dict[str, int]:
        """Images per class, in class order."""
        out = dict.fromkeys(self.classes, 0)
        for label in self.labels:
            out[self.classes[label]] += 1
        return out

    @cached_property
    def _fingerprint(self) -> str:
        blob = json.dumps([list(self.classes), list(self.files)], separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def fingerprint(self) -> str:
        """sha256 of (classes, files): the same dataset copied elsewhere keeps its key."""
        return self._fingerprint


def file_number(name: str) -> int | None:
    """The frame number at the end of a file's stem ("A12.jpg" -> 12), or None."""
    m = _NUMBER.search(Path(name).stem)
    return int(m.group(1)) if m else None


def file_sort_key(name: str) -> tuple[int, int, str]:
    """Numbered files by number, then any unnumbered ones by name."""
    n = file_number(name)
    return (0, n, name) if n is not None else (1, 0, name)


def _visible(entry: os.DirEntry) -> bool:
    return not entry.name.startswith(".")


def _fs_error(exc: OSError, path: str | os.PathLike, doing: str) -> DataError:
    """One line naming the path and what failed, for every filesystem error of the scan."""
    where = exc.filename or path
    if exc.errno == errno.ELOOP:
        return DataError(f"symlink loop at {where} while {doing}; remove or fix the link")
    if exc.errno == errno.EACCES:
        return DataError(f"permission denied reading {where} while {doing}; "
                         f"fix its permissions (chmod -R u+rX, or g+rX for a shared dataset)")
    return DataError(f"cannot read {where} while {doing}: {exc.strerror or exc}; check the filesystem")


def _list(path: str | os.PathLike, doing: str) -> list[os.DirEntry]:
    """The directory's visible entries; a DataError naming the path when it cannot be read."""
    try:
        with os.scandir(path) as it:
            return [e for e in it if _visible(e)]
    except OSError as exc:
        raise _fs_error(exc, path, doing) from exc


def _kind(entry: os.DirEntry, doing: str) -> str:
    """"dir", "file", "dangling" (a symlink to nothing) or "other", following symlinks."""
    try:
        if entry.is_dir():
            return "dir"
        if entry.is_file():
            return "file"
        if entry.is_symlink() and not os.path.exists(entry.path):
            os.stat(entry.path)  # raises ELOOP for a loop (named), ENOENT for a dangling link
        return "other"
    except FileNotFoundError:
        return "dangling"
    except OSError as exc:
        raise _fs_error(exc, entry.path, doing) from exc


def _is_image(entry: os.DirEntry, doing: str = "scanning") -> bool:
    return Path(entry.name).suffix.lower() in IMAGE_SUFFIXES and _kind(entry, doing) == "file"


def _warn(msg: str) -> None:
    print(f"aslhpc: warning: {msg}", file=sys.stderr, flush=True)


def _train_root(root: Path) -> Path:
    """The directory holding the class folders, for each accepted layout."""
    for candidate in (root / TRAIN_DIR / TRAIN_DIR, root / TRAIN_DIR):
        if candidate.is_dir():
            return candidate
    return root


def _test_dir(root: Path) -> Path | None:
    """The flat test folder beside the train folder; ``root`` may be a train folder itself."""
    bases = [root]
    while bases[-1].name == TRAIN_DIR and len(bases) < 3:
        bases.append(bases[-1].parent)
    for base in bases:
        for candidate in (base / TEST_DIR / TEST_DIR, base / TEST_DIR):
            if candidate.is_dir():
                return candidate
    return None


def _class_folders(train_root: Path) -> list[os.DirEntry]:
    """The class folders beside each other; a canonical class name that is no folder is an error."""
    folders = []
    for entry in _list(train_root, "listing the class folders"):
        if entry.name in _NOT_CLASSES:
            continue
        kind = _kind(entry, "listing the class folders")
        if kind != "dir":
            if entry.name in CANONICAL_CLASSES:  # a class name that is not a folder: never skipped silently
                what = "a symlink to nothing" if kind == "dangling" else "not a directory"
                raise DataError(f"class folder {entry.path} is {what}; make it a folder of images "
                                f"(or remove it)")
            continue
        folders.append(entry)
    return folders


def _scan_classes(train_root: Path, kaggle_dirs: bool) -> tuple[str, dict[str, list[str]]]:
    """``(layout, {class: image names})``: Kaggle when its folders say so (``asl_alphabet_train/``, a test
    folder) or every class is an ASL one; any other folder of classes is a plain ImageFolder."""
    folders = _class_folders(train_root)
    other = [e.name for e in folders if e.name not in CANONICAL_CLASSES]
    if kaggle_dirs and other:
        raise DataError(
            f"unknown class folder {other[0]!r} in the Kaggle layout's {train_root}; expected only "
            f"{', '.join(CANONICAL_CLASSES)} (move it away, or put your own classes in a plain "
            "<root>/<class>/<image> folder)")
    layout = KAGGLE if folders and not other else IMAGEFOLDER
    if layout == IMAGEFOLDER and 2 * len(other) <= len(folders):
        # half or more of the names are ASL ones: the ASL set with a stray or misspelt folder? say so
        _warn(f"{train_root}: read as a plain ImageFolder of {len(folders)} classes in sorted order, not as "
              f"the ASL Alphabet, because {', '.join(repr(n) for n in other[:3])} "
              f"{'is not an ASL class' if len(other) == 1 else 'are not ASL classes'}; rename or move "
              f"{'it' if len(other) == 1 else 'them'} if this is the ASL set")
    if layout == IMAGEFOLDER and len(folders) == 1:
        raise DataError(f"only one class folder ({folders[0].name}) in {train_root}; a classifier needs at "
                        "least 2: add a folder per class (<root>/<class>/<image>)")
    return layout, {entry.name: _scan_class(entry) for entry in folders}


def _scan_class(folder: os.DirEntry) -> list[str]:
    """Image names of one class folder in frame order; dangling links are named in a warning."""
    doing = f"scanning class folder {folder.name}"
    names, dangling = [], []
    for f in _list(folder.path, doing):
        if Path(f.name).suffix.lower() not in IMAGE_SUFFIXES:
            continue
        kind = _kind(f, doing)
        if kind == "file":
            names.append(f.name)
        elif kind == "dangling":
            dangling.append(f.name)
    if dangling:
        shown = ", ".join(sorted(dangling)[:3]) + (", ..." if len(dangling) > 3 else "")
        _warn(f"{len(dangling)} image link(s) in {folder.path} point to nothing and are skipped ({shown})")
    if not names:
        raise DataError(f"class folder {folder.path} holds no images; delete it or restore its files")
    return sorted(names, key=file_sort_key)


def _scan_test(test_dir: Path, classes: tuple[str, ...]) -> tuple[tuple[str, int], ...]:
    """(absolute path, label) of each ``<CLASS>_test.jpg``, in class order.

    A canonical class that is absent from the training folders is skipped (it has no label).
    """
    out: list[tuple[str, int]] = []
    doing = "scanning the test folder"
    entries = [e for e in _list(test_dir, doing) if _is_image(e, doing)]
    for entry in entries:
        stem = Path(entry.name).stem
        name = stem[: -len("_test")] if stem.endswith("_test") else stem
        if name not in CANONICAL_CLASSES:
            raise DataError(
                f"unexpected file {entry.name!r} in test folder {test_dir}; expected <CLASS>_test.jpg "
                f"with CLASS one of {', '.join(CANONICAL_CLASSES)}"
            )
        if name in classes:
            out.append((str(Path(entry.path).resolve()), classes.index(name)))
    out.sort(key=lambda item: (item[1], item[0]))
    return tuple(out)


def scan_dataset(root: str | os.PathLike) -> DatasetIndex:
    """Index a Kaggle-layout dataset or an ImageFolder; a one-line :class:`DataError` if it is neither.

    Every filesystem error (permissions, symlink loops, I/O errors) is a DataError naming the path.
    """
    try:
        return _scan(Path(root).expanduser())
    except OSError as exc:
        raise _fs_error(exc, root, "scanning the dataset") from exc
    except RuntimeError as exc:  # Path.resolve() on a symlink loop (Python < 3.13)
        raise DataError(f"cannot resolve {root}: {exc}; fix the symlinks") from exc


def _scan(root: Path) -> DatasetIndex:
    if not root.exists():
        raise DataError(f"dataset directory {root} does not exist; expected {_EXPECTED}")
    if not root.is_dir():
        raise DataError(f"dataset path {root} is not a directory; expected {_EXPECTED}")
    root = root.resolve()
    train_root = _train_root(root)
    kaggle_dirs = train_root != root or _test_dir(root) is not None
    layout, found = _scan_classes(train_root, kaggle_dirs)
    if not found:
        raise DataError(f"no class folders found in {train_root}; expected {_EXPECTED}")
    if layout == KAGGLE:
        classes = tuple(c for c in CANONICAL_CLASSES if c in found)
    else:
        classes = tuple(sorted(found))
    files: list[str] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        files.extend(f"{cls}/{name}" for name in found[cls])
        labels.extend([label] * len(found[cls]))
    test_dir = _test_dir(root) if layout == KAGGLE else None
    test_files = _scan_test(test_dir, classes) if test_dir is not None else ()
    return DatasetIndex(train_root, classes, tuple(files), tuple(labels), test_files, layout)
