"""The dataset: scan the Kaggle layout, split it, preprocess it once, cache the pixels.

See docs/design.md ("Data API") for the contract the pipelines, trainer and predictor rely on.
"""

from aslhpc.data.cache import DecodedImages, open_cache
from aslhpc.data.layout import CANONICAL_CLASSES, DatasetIndex, scan_dataset
from aslhpc.data.preprocess import MEAN, STD, load_image, normalize, to_tensor
from aslhpc.data.split import Split, make_split, split_sizes

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
