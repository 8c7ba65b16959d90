"""A generated stand-in for the Kaggle ASL Alphabet dataset, in exactly its layout.

    python -m aslhpc.data.synth OUT --per-class N [--seed S]

writes ``OUT/asl_alphabet_train/asl_alphabet_train/<CLASS>/<CLASS><n>.jpg`` (200x200 JPEG,
numbered from 1) for all 29 classes and the flat test folder
``OUT/asl_alphabet_test/asl_alphabet_test/<CLASS>_test.jpg`` (28 files, no ``del``, like
Kaggle's). Tests, demos and CI then exercise the real scanning, splitting and training code
without the 1 GB download.

Each class is a large high-contrast shape (8 kinds) in its own colour on one of 4
backgrounds, so a small CNN separates them within an epoch or two. Like the real video
frames, consecutive images are near-duplicates (fresh pixel noise only) while the pose drifts
steadily across a class's frames (position, size, brightness and tint follow a random walk of
their velocity, :class:`_Walk`): a random split leaks a neighbour of every test frame into
training, while a blocked split tests on the last frames, which lie beyond the training frames'
range. So the random split scores higher, as on the real data (issue 18: a mean-reverting walk of
the position alone, as before, left blocked and random within one test image of each other). The
size of the drift is our choice, tuned so that the gap shows on the demo's 30 frames per class.

    python -m aslhpc.data.synth OUT --per-class N --imagefolder K

writes a plain ImageFolder instead (:func:`write_imagefolder`): ``OUT/<class>/<image>.png`` for K
classes with non-ASL names and file names without frame numbers, the shape of a user's own data.
"""

from __future__ import annotations

import argparse
import colorsys
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from aslhpc.data.layout import CANONICAL_CLASSES, TEST_DIR, TRAIN_DIR
from aslhpc.errors import AslhpcError, DataError

_BACKGROUNDS = np.array([(20, 20, 30), (230, 228, 220), (30, 60, 150), (150, 50, 30)], dtype=np.float32)
_N_SHAPES = 8


def class_style(k: int, hue_shift: float = 0.0) -> tuple[int, np.ndarray, np.ndarray]:
    """(shape id, foreground RGB, background RGB) of class number ``k``; unique per class at hue_shift 0
    (a frame's tint drifts by ``hue_shift`` of the colour circle)."""
    # Hue steps of 7/29 of the circle: neighbouring classes get clearly different colours.
    hue = ((k * 7 % len(CANONICAL_CLASSES)) / len(CANONICAL_CLASSES) + hue_shift) % 1.0
    fg = np.array(colorsys.hsv_to_rgb(hue, 0.9, 1.0), dtype=np.float32) * 255
    return k % _N_SHAPES, fg, _BACKGROUNDS[k // _N_SHAPES % len(_BACKGROUNDS)]


def _mask(shape: int, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    adx, ady = np.abs(dx), np.abs(dy)
    box = np.maximum(adx, ady)
    if shape == 0:  # disc
        return dx * dx + dy * dy <= r * r
    if shape == 1:  # square
        return box <= 0.85 * r
    if shape == 2:  # triangle, apex up
        return (dy <= 0.8 * r) & (adx <= (dy + r) * 0.6)
    if shape == 3:  # ring
        d2 = dx * dx + dy * dy
        return (d2 <= r * r) & (d2 >= (0.55 * r) ** 2)
    if shape == 4:  # plus
        return ((adx <= 0.3 * r) & (ady <= r)) | ((ady <= 0.3 * r) & (adx <= r))
    if shape == 5:  # diamond
        return adx + ady <= r
    bars = dy if shape == 6 else dx  # 6: horizontal bars, 7: vertical bars
    return (box <= r) & (np.floor((bars + r) / (0.4 * r)) % 2 == 0)


class _Walk:
    """The drifting pose of one class's "camera", like one recording session.

    The pose (x, y, scale, light, hue shift) has a velocity that itself changes slowly (an integrated
    random walk, bounced back at the edges): consecutive frames are near-identical, while over a few
    dozen frames the hand moves, grows, dims and changes tint in one direction. The last frames of a
    class therefore lie beyond the earlier ones, out of the training frames' range under a blocked
    split, as the late frames of a video do; a random split still sees a neighbour of every test frame.
    """

    _LIMITS = ((-0.2, 0.2), (-0.2, 0.2), (0.75, 1.25), (0.7, 1.2), (-0.035, 0.035))  # x, y (x size), ...
    _ACCEL = (0.0025, 0.0025, 0.006, 0.005, 0.0012)  # per-frame change of each velocity
    _VMAX = (0.012, 0.012, 0.03, 0.025, 0.006)  # the fastest drift per frame

    def __init__(self, rng: np.random.Generator, size: int) -> None:
        self.rng, self.size = rng, size
        lo, hi = np.array(self._LIMITS).T
        self.pose = lo + (hi - lo) * rng.uniform(0.35, 0.65, len(lo))
        self.vel = rng.uniform(-1, 1, len(lo)) * np.array(self._VMAX) * 0.5
        self.lo, self.hi = lo, hi

    def step(self) -> tuple[float, float, float, float, float]:
        vmax = np.array(self._VMAX)
        self.vel = np.clip(self.vel + self.rng.normal(0, self._ACCEL), -vmax, vmax)
        self.pose = self.pose + self.vel
        for i in range(len(self.pose)):  # bounce off the edges, so a long video stays in range
            if not self.lo[i] <= self.pose[i] <= self.hi[i]:
                self.pose[i] = float(np.clip(self.pose[i], self.lo[i], self.hi[i]))
                self.vel[i] = -self.vel[i]
        x, y, scale, light, hue = (float(v) for v in self.pose)
        return x * self.size, y * self.size, scale, light, hue


def render(k: int, pose: tuple[float, ...], rng: np.random.Generator, size: int = 200) -> np.ndarray:
    """One uint8 (size, size, 3) frame of class ``k`` at ``pose`` = (x, y, scale, light[, hue shift])."""
    shape, fg, bg = class_style(k, pose[4] if len(pose) > 4 else 0.0)
    x, y, scale, light = pose[:4]
    c = (size - 1) / 2
    yy, xx = np.ogrid[:size, :size]
    dx = (xx - c - x).astype(np.float32)
    dy = (yy - c - y).astype(np.float32)
    mask = _mask(shape, dx, dy, 0.32 * size * scale)
    img = np.where(mask[..., None], fg, bg) * light
    img += rng.integers(-10, 11, size=img.shape, dtype=np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


def _save(img: np.ndarray, path: Path) -> None:
    Image.fromarray(img, mode="RGB").save(path, format="JPEG", quality=90)


def write_dataset(
    out: str | Path,
    per_class: int,
    seed: int = 0,
    image_size: int = 200,
    test_folder: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write ``per_class`` frames of each of the 29 classes (and the test folder) under ``out``.

    Refuses to write over an existing non-empty train folder unless ``overwrite`` (which then
    deletes only the two Kaggle folders), so leftovers of a bigger earlier run cannot mix in.
    """
    out = Path(out)
    if per_class < 1:
        raise DataError(f"per_class={per_class} must be at least 1")
    if image_size < 8:
        raise DataError(f"image_size={image_size} must be at least 8")
    train = out / TRAIN_DIR / TRAIN_DIR
    test = out / TEST_DIR / TEST_DIR
    if (out / TRAIN_DIR).exists() and any((out / TRAIN_DIR).iterdir()):
        if not overwrite:
            raise DataError(f"{out / TRAIN_DIR} already exists; choose another OUT or pass --force to "
                            "replace it")
        shutil.rmtree(out / TRAIN_DIR)
        shutil.rmtree(out / TEST_DIR, ignore_errors=True)
    for k, cls in enumerate(CANONICAL_CLASSES):
        rng = np.random.default_rng([seed, k])
        walk = _Walk(rng, image_size)
        d = train / cls
        d.mkdir(parents=True, exist_ok=True)
        for n in range(1, per_class + 1):
            _save(render(k, walk.step(), rng, image_size), d / f"{cls}{n}.jpg")
        if test_folder and cls != "del":
            test.mkdir(parents=True, exist_ok=True)
            # Kaggle's test images come from the same sessions: the next frame after the last.
            _save(render(k, walk.step(), rng, image_size), test / f"{cls}_test.jpg")
    return out


_WORDS = ("apple", "bridge", "cloud", "desert", "engine", "forest", "glacier", "harbor", "island", "jungle")


def imagefolder_classes(n: int) -> tuple[str, ...]:
    """``n`` class names that are no ASL class (sorted order = class order): words, then ``kind_NNN``."""
    if n <= len(_WORDS):
        return _WORDS[:n]
    return tuple(f"kind_{k:03d}" for k in range(n))


def _letters(n: int) -> str:
    """``n`` as a base-26 letter string (aaa, aab, ...): a file name that sorts in order and has no number."""
    out = ""
    for _ in range(3):
        n, r = divmod(n, 26)
        out = chr(ord("a") + r) + out
    return out


def write_imagefolder(out: str | Path, num_classes: int, per_class: int, seed: int = 0,
                      image_size: int = 64) -> Path:
    """A generic ImageFolder: ``out/<class>/shot-<letters>.png``, ``num_classes`` >= 2 non-ASL classes.

    The same learnable, drifting classes as :func:`write_dataset` (class k looks like ASL class k mod 29,
    with its own shape/background beyond that), saved as PNG, named without frame numbers."""
    out = Path(out)
    if num_classes < 2 or per_class < 1 or image_size < 8:
        raise DataError(f"num_classes={num_classes} (>= 2), per_class={per_class} (>= 1), "
                        f"image_size={image_size} (>= 8): one of them is out of range")
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out} already exists and is not empty; choose another OUT")
    for k, cls in enumerate(imagefolder_classes(num_classes)):
        rng = np.random.default_rng([seed, k, 1])
        walk = _Walk(rng, image_size)
        d = out / cls
        d.mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            img = render(k, walk.step(), rng, image_size)
            Image.fromarray(img, mode="RGB").save(d / f"shot-{_letters(n)}.png", format="PNG")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from aslhpc.cli import add_version

    p = add_version(argparse.ArgumentParser(prog="python -m aslhpc.data.synth",
                                            description=__doc__.split("\n\n")[0]))
    p.add_argument("out", type=Path, help="directory to create (the dataset root to pass as --data)")
    p.add_argument("--per-class", type=int, required=True, help="images per class (Kaggle has 3000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=200, help="side in pixels (Kaggle: 200)")
    p.add_argument("--no-test", action="store_true", help="skip the flat asl_alphabet_test folder")
    p.add_argument("--force", action="store_true", help="replace an existing generated dataset in OUT")
    p.add_argument("--imagefolder", type=int, default=0, metavar="K",
                   help="write a plain ImageFolder of K non-ASL classes (PNG, no frame numbers) instead")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    if args.imagefolder:
        try:
            write_imagefolder(args.out, args.imagefolder, args.per_class, args.seed, args.image_size)
        except AslhpcError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"wrote {args.imagefolder * args.per_class} images ({args.imagefolder} classes x "
              f"{args.per_class}, {args.image_size}px PNG) as an ImageFolder to {args.out} in "
              f"{time.perf_counter() - t0:.1f} s")
        return 0
    try:
        write_dataset(args.out, args.per_class, args.seed, args.image_size, not args.no_test, args.force)
    except AslhpcError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n = len(CANONICAL_CLASSES)
    n_test = 0 if args.no_test else n - 1
    print(f"wrote {n * args.per_class} images ({n} classes x {args.per_class}, {args.image_size}px) "
          f"+ {n_test} test images in Kaggle layout to {args.out} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
