"""Inference: a trained model on images, labelled folders, video files and cameras.

``classifier`` (model + the training preprocessing -> top-k), ``stream`` (per-frame
predictions -> text, pure), ``sources`` (what an INPUT is; OpenCV frames), ``folder_eval``
(accuracy / per-class hits / confusions). ``aslhpc.predict`` is the CLI over these.
"""

from aslhpc.recognize.classifier import (
    BestCell,
    Classifier,
    Prediction,
    Unreadable,
    best_cells_by_split,
    find_best_cell,
    frame_to_pil,
    fuse_batchnorm,
    resolve_device,
)
from aslhpc.recognize.folder_eval import FolderReport, evaluate_images, score
from aslhpc.recognize.sources import (
    Folder,
    FrameSource,
    ImageFile,
    VideoFile,
    classify_input,
    label_from_name,
    open_camera,
    open_video,
    scan_folder,
)
from aslhpc.recognize.stream import StreamEvent, TextSmoother

__all__ = [
    "BestCell", "Classifier", "Folder", "FolderReport", "FrameSource", "ImageFile", "Prediction",
    "StreamEvent", "TextSmoother", "Unreadable", "VideoFile", "best_cells_by_split", "classify_input",
    "evaluate_images", "find_best_cell", "frame_to_pil", "fuse_batchnorm", "label_from_name", "open_camera",
    "open_video", "resolve_device", "scan_folder", "score",
]
