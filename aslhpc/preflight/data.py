"""The dataset (``--data``): the layout scans, a Kaggle layout has the study's classes, a sample decodes."""

from __future__ import annotations

from aslhpc.data.layout import CANONICAL_CLASSES, KAGGLE, scan_dataset
from aslhpc.data.preprocess import CorruptImageError, load_image
from aslhpc.errors import DataError
from aslhpc.preflight.context import Context
from aslhpc.preflight.result import FAIL, PASS, SKIP, WARN, Check


def check_data(ctx: Context) -> list[Check]:
    if not ctx.data:
        return [Check("data layout", SKIP, "no --data given (nor an experiment's data)")]
    try:
        index = scan_dataset(ctx.data)
    except DataError as exc:
        return [Check("data layout", FAIL, str(exc), "fix the dataset folder, or pass the right --data")]
    ctx.n_images, ctx.index = len(index), index
    counts = index.counts()
    low = min(counts.values())
    found = (f"{len(index):,} images in {len(index.classes)} classes under {index.root}; "
             f"fewest: {low} per class")
    figures = {"images": len(index), "classes": len(index.classes)}
    missing = [c for c in CANONICAL_CLASSES if c not in counts] if index.layout == KAGGLE else []
    if index.layout != KAGGLE:
        more = ", ..." if len(counts) > 5 else ""
        found += f" (an ImageFolder: classes {', '.join(index.classes[:5])}{more})"
    if missing:
        rows = [Check("data layout", WARN, f"{found}; missing classes: {', '.join(missing)}",
                      "the study has 29 classes: restore the missing folders "
                      "(or accept a smaller model output)", figures)]
    else:
        rows = [Check("data layout", PASS, found, figures=figures)]
    return rows + [_decode_sample(ctx, index)]


def _decode_sample(ctx: Context, index) -> Check:  # noqa: ANN001 - DatasetIndex
    """Decode an evenly spread sample at the cell's size; a few bad files are skipped by the cells."""
    n = len(index)
    k = min(n, 10 if ctx.quick else 58)
    rows = sorted({round(i * (n - 1) / max(k - 1, 1)) for i in range(k)})
    bad = []
    for i in rows:
        try:
            load_image(index.path(i), ctx.image_size, ctx.interpolation)
        except CorruptImageError:
            bad.append(index.files[i])
    found = f"{len(rows) - len(bad)} of {len(rows)} sampled images decode at {ctx.image_size} px"
    if not bad:
        return Check("data decodes", PASS, found)
    shown = ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else "")
    if len(bad) * 10 > len(rows):
        return Check("data decodes", FAIL, f"{found}; bad: {shown}",
                     "re-extract the dataset: many images are damaged (cells would train on few)")
    return Check("data decodes", WARN, f"{found}; bad: {shown}",
                 "cells skip these files and name them; replace them to train on the whole set")
