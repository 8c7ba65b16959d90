"""The dataset: scan the Kaggle layout, split it, preprocess it once, cache the pixels.

See docs/design.md ("Data API") for the contract the pipelines, trainer and predictor rely on.
"""

from .cache import DecodedImages, open_cache
from .layout import CANONICAL_CLASSES, DatasetIndex, scan_dataset
from .preprocess import MEAN, STD, load_image, normalize, to_tensor
from .split import Split, make_split, split_sizes

__all__ = [
    "CANONICAL_CLASSES",
    "DatasetIndex",
    "scan_dataset",
    "Split",
    "make_split",
    "split_sizes",
    "load_image",
    "normalize",
    "to_tensor",
    "open_cache",
    "DecodedImages",
    "MEAN",
    "STD",
]
