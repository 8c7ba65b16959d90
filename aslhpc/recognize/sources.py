"""What the user points ``predict`` at: image files, folders (labelled or not), video files, cameras.

Inputs are sorted by kind up front so every mistake (missing path, unknown file type, empty
folder, unreadable video, absent camera) becomes a one-line :class:`AslhpcError` before any
work starts. Video and camera frames come from OpenCV as BGR arrays.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aslhpc.data.layout import IMAGE_SUFFIXES
from aslhpc.errors import AslhpcError

if TYPE_CHECKING:
    import cv2

def opencv() -> Any:
    """OpenCV, imported when a video or camera is first opened: only that input needs it (the [video]
    extra), so images and folders work without it."""
    try:
        import cv2
    except ImportError as exc:
        raise AslhpcError(f"video and camera input need OpenCV ({exc}); install it with: "
                          "pip install 'aslhpc[video]' (or opencv-python-headless)") from exc
    return cv2


VIDEO_SUFFIXES = frozenset({".avi", ".mp4", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"})
TEST_SUFFIX = "_test"  # the flat Kaggle test folder names its files <CLASS>_test.jpg


@dataclass(frozen=True)
class ImageFile:
    path: Path
    label: str | None = None  # the true class when the file name or folder says so


@dataclass(frozen=True)
class Folder:
    """The images of a folder: its own files, plus those in subfolders named after a class."""

    path: Path
    images: tuple[ImageFile, ...]

    @property
    def labelled(self) -> tuple[ImageFile, ...]:
        return tuple(im for im in self.images if im.label is not None)

    @property
    def unlabelled(self) -> tuple[ImageFile, ...]:
        return tuple(im for im in self.images if im.label is None)


@dataclass(frozen=True)
class VideoFile:
    path: Path


Input = ImageFile | Folder | VideoFile


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _class_lookup(classes: tuple[str, ...]) -> dict[str, str]:
    """Case-insensitive name -> class ("space" and "Space" both mean ``space``)."""
    return {c.lower(): c for c in classes}


def label_from_name(path: Path, classes: tuple[str, ...]) -> str | None:
    """``A_test.jpg`` -> ``A``, ``nothing_test.jpg`` -> ``nothing``; anything else -> None."""
    stem = path.stem
    if not stem.lower().endswith(TEST_SUFFIX):
        return None
    return _class_lookup(classes).get(stem[: -len(TEST_SUFFIX)].lower())


def _listing(folder: Path) -> list[Path]:
    """A folder's entries, sorted, hidden ones skipped; a folder that cannot be listed is a one-line error."""
    try:
        return sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        raise AslhpcError(f"cannot list folder {folder} ({exc.strerror or type(exc).__name__}); "
                          "check its permissions") from exc


def scan_folder(root: Path, classes: tuple[str, ...]) -> Folder:
    """List a folder's images with labels from ``<CLASS>_test`` names or ``<CLASS>/`` subfolders.

    Kaggle nests each folder in one of the same name (``asl_alphabet_test/asl_alphabet_test``);
    such a wrapper is looked through.
    """
    lookup = _class_lookup(classes)
    entries = _listing(root)
    images = [ImageFile(p, label_from_name(p, classes)) for p in entries if _is_image(p)]
    for sub in entries:
        if sub.is_dir() and sub.name.lower() in lookup:
            label = lookup[sub.name.lower()]
            images.extend(ImageFile(p, label) for p in _listing(sub) if _is_image(p))
    if not images:
        dirs = [p for p in entries if p.is_dir()]
        if len(dirs) == 1 and dirs[0].name == root.name:
            return scan_folder(dirs[0], classes)
        raise AslhpcError(f"folder {root} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}) "
                          "and no class subfolders; pass a folder of images")
    return Folder(root, tuple(images))


def classify_input(arg: str | os.PathLike, classes: tuple[str, ...]) -> Input:
    """Decide what one INPUT argument is, or raise a one-line error saying why it cannot be used."""
    path = Path(arg).expanduser()
    if path.is_dir():
        return scan_folder(path, classes)
    if not path.exists():
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        why = (f" ({blocker} is a file, not a folder)" if blocker is not None
               else " (a broken symbolic link)" if path.is_symlink() else "")
        raise AslhpcError(f"input {path} does not exist{why}; pass image files, folders or video files")
    if not path.is_file():
        raise AslhpcError(f"input {path} is neither a regular file nor a folder; pass image files, folders "
                          "or video files")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return ImageFile(path, label_from_name(path, classes))
    if suffix in VIDEO_SUFFIXES:
        return VideoFile(path)
    raise AslhpcError(f"input {path} is a file but not an image ({', '.join(sorted(IMAGE_SUFFIXES))}), a "
                      f"video ({', '.join(sorted(VIDEO_SUFFIXES))}) or a folder; pass one of those")


class FrameSource:
    """BGR frames from a ``cv2.VideoCapture``; a context manager that releases the capture.

    Opening reads the first frame, so a file OpenCV cannot decode fails here, not mid-stream.
    """

    def __init__(self, capture: cv2.VideoCapture, name: str, live: bool) -> None:
        self.capture = capture
        self.name = name
        self.live = live
        ok, frame = capture.read()
        if not ok or frame is None:
            capture.release()
            raise AslhpcError(f"no frame could be read from {name}; "
                              + ("check the camera is free and working" if live
                                 else "is it a video OpenCV can decode?"))
        self._first: np.ndarray | None = frame

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        while True:
            ok, frame = self.capture.read()
            if not ok or frame is None:
                return
            yield frame

    def close(self) -> None:
        self.capture.release()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _quiet_capture(target: str | int) -> cv2.VideoCapture:
    """Open a capture with OpenCV's own warnings silenced: our error says it in one line instead."""
    cv2 = opencv()
    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        return cv2.VideoCapture(target)
    finally:
        cv2.utils.logging.setLogLevel(previous)


def open_video(path: str | os.PathLike) -> FrameSource:
    path = Path(path)
    if not path.is_file():
        what = ("is a folder" if path.is_dir() else "is not a regular file" if path.exists()
                else "does not exist")
        raise AslhpcError(f"video {path} {what}; pass a video file such as .avi or .mp4")
    capture = _quiet_capture(str(path))
    if not capture.isOpened():
        capture.release()
        raise AslhpcError(f"cannot open video {path}: OpenCV cannot read it; pass a video such as .avi or "
                          ".mp4")
    return FrameSource(capture, str(path), live=False)


def open_camera(index: int) -> FrameSource:
    capture = _quiet_capture(index)
    if not capture.isOpened():
        capture.release()
        raise AslhpcError(f"camera {index} cannot be opened; check it is connected and the index "
                          "(ls /dev/video*), or pass a video file instead")
    return FrameSource(capture, f"camera {index}", live=True)
