"""THE preprocessing, shared by the decode cache, the paper pipeline and inference.

Training on cached pixels and predicting on a camera frame must see the same numbers, so
there is exactly one decode/resize (:func:`load_image`) and one normalisation
(:func:`normalize`). Resizing uses PIL with the same resample filter torchvision's
``Resize`` applies to PIL images, so the paper-style pipeline matches the cache bit for bit.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

from aslhpc.errors import DataError

if TYPE_CHECKING:  # torch is imported lazily: scanning and caching need no torch
    import torch

MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
STD: tuple[float, float, float] = (0.5, 0.5, 0.5)

RESAMPLE: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


def describe(image_size: int, interpolation: str) -> dict[str, object]:
    """What is done to every image, spelled out: recorded in best_model.pt and result.json."""
    return {"resize": [image_size, image_size], "interpolation": interpolation, "channels": "RGB",
            "scale": "1/255", "mean": list(MEAN), "std": list(STD)}


class CorruptImageError(DataError):
    """An image file that cannot be decoded (truncated, not an image, unreadable)."""


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # 16-bit / float greyscale: stretch to 8 bits instead of clipping to white.
        a = np.asarray(img, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
        img = Image.fromarray(a.round().astype(np.uint8), mode="L")
    return img.convert("RGB")


def load_image(
    path_or_pil: str | os.PathLike | Image.Image, size: int = 150, interpolation: str = "bilinear"
) -> np.ndarray:
    """Decode, honour EXIF rotation, convert to RGB and resize to uint8 (size, size, 3).

    Raises :class:`CorruptImageError` naming the file when it cannot be decoded.
    """
    try:
        resample = RESAMPLE[interpolation]
    except KeyError:
        raise ValueError(f"interpolation={interpolation!r}; use one of {', '.join(RESAMPLE)}") from None
    if isinstance(path_or_pil, Image.Image):
        img = _prepare(path_or_pil, size, resample)
    else:
        path = Path(path_or_pil)
        try:
            with Image.open(path) as opened:
                opened.load()  # force the full decode here, so truncation raises now
                img = _prepare(opened, size, resample)
        except Exception as exc:  # PIL raises OSError, SyntaxError, struct.error, ... on bad files
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CorruptImageError(f"cannot decode image {path}: {reason}") from exc
    out = np.asarray(img, dtype=np.uint8)
    if out.shape != (size, size, 3):  # defensive: a plugin handing back an odd shape
        raise CorruptImageError(f"image {path_or_pil} decoded to shape {out.shape}, "
                                f"expected {(size, size, 3)}")
    return np.ascontiguousarray(out)


def _prepare(img: Image.Image, size: int, resample: Image.Resampling) -> Image.Image:
    img = _to_rgb(ImageOps.exif_transpose(img))
    if img.size != (size, size):
        img = img.resize((size, size), resample=resample)
    return img


def to_tensor(hwc_uint8: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) array -> uint8 (3, H, W) tensor; normalisation happens later, on device."""
    import torch

    a = np.asarray(hwc_uint8)
    if a.dtype != np.uint8 or a.ndim != 3:
        raise TypeError(f"expected a uint8 (H, W, C) array, got {a.dtype} {a.shape}")
    # the one copy; it also makes read-only input (a memmap) writable
    chw = np.ascontiguousarray(a.transpose(2, 0, 1))
    if not chw.flags.writeable or np.shares_memory(chw, a):
        chw = chw.copy()
    return torch.from_numpy(chw)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) or (3, H, W) on any device -> float32 ``(x/255 - MEAN)/STD``.

    Keeps the memory format, so a channels_last batch stays channels_last (no extra copy).
    """
    import torch

    if x.dtype != torch.uint8:
        raise TypeError(f"normalize expects uint8 pixels, got {x.dtype}")
    if x.dim() not in (3, 4) or x.shape[-3] != len(MEAN):
        raise ValueError(f"normalize expects (N, 3, H, W) or (3, H, W), got {tuple(x.shape)}")
    out = x.to(torch.float32, memory_format=torch.preserve_format)
    if len(set(MEAN)) == 1 and len(set(STD)) == 1:
        # Python scalars, not device tensors: building a tensor from MEAN/STD on a GPU is a blocking
        # host-to-device copy, which would stall the CPU once per batch and defeat the overlap.
        return out.mul_(1.0 / (255.0 * STD[0])).sub_(MEAN[0] / STD[0])
    mean = torch.tensor(MEAN, dtype=torch.float32).view(-1, 1, 1).to(x.device, non_blocking=True)
    std = torch.tensor(STD, dtype=torch.float32).view(-1, 1, 1).to(x.device, non_blocking=True)
    return out.div_(255.0).sub_(mean).div_(std)
