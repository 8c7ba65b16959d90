"""``python -m aslhpc.predict``: classify images, score labelled folders, spell text from video or a camera.

The model is a cell's ``best_model.pt`` (``--model``) or the best cell of an experiment
(``--experiment``, highest val_acc; ``--split`` picks the best cell of that split). Preprocessing is
the training one, read from the model file. ``--per-split`` scores labelled folders once per split
with each split's best cell: on Kaggle's separately photographed 28-image test folder, the most
independent check of the random split's leakage there is.

Exit code: 0 when every input was processed. 2 on a user error (bad flag, missing or wrong-kind
path, not a model file, a video or camera OpenCV cannot open): one ``error: ...`` line on stderr,
and work stops there. 2 also when any image could not be decoded: each such image gets its own
``PATH: cannot read image (...)`` line on stderr while the other inputs are still processed (in
a folder it is left out of the score).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import torch

from aslhpc.cli import ArgumentParser, add_version, run_cli
from aslhpc.data.split import SPLIT_KINDS as SPLITS
from aslhpc.errors import AslhpcError
from aslhpc.recognize import (
    Classifier,
    FrameSource,
    ImageFile,
    TextSmoother,
    Unreadable,
    VideoFile,
    best_cells_by_split,
    classify_input,
    evaluate_images,
    find_best_cell,
    open_camera,
    open_video,
)


def build_parser() -> argparse.ArgumentParser:
    epilog = ("exit code: 0 all inputs done; 2 on a user error (one 'error: ...' line on stderr, work stops) "
              "or when some image could not be decoded (a 'PATH: cannot read image (...)' line each on "
              "stderr; the other inputs are still done)")
    p = ArgumentParser(prog="aslhpc predict", description=__doc__.splitlines()[0],
                                epilog=epilog)
    add_version(p)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", type=Path, help="a cell's best_model.pt")
    which.add_argument("--experiment", help="use the best cell (highest val_acc) of results/<NAME>/cells/")
    p.add_argument("--split", choices=SPLITS, help="with --experiment: the best cell trained on this split")
    p.add_argument("--per-split", action="store_true",
                   help="with --experiment: score the labelled folders with each split's best cell, side "
                        "by side")
    p.add_argument("--results", type=Path, default=Path("results"), help="results directory for --experiment")
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="image files, folders (<CLASS>_test.jpg names or <CLASS>/ subfolders are scored), "
                        "video files")
    p.add_argument("--camera", type=int, metavar="N", help="read frames from camera N (OpenCV index)")
    p.add_argument("--top-k", type=int, default=3, help="classes shown per image")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--hold", type=int, default=5,
                   help="frames a sign must stay the top class before it is written")
    p.add_argument("--threshold", type=float, default=0.8,
                   help="minimum top probability for a frame to count")
    p.add_argument("--batch-size", type=int, default=32,
                   help="images (or video-file frames) per forward pass")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for torch; 0 = auto: 1 for streams (steady batch-1 latency when other "
                        "work shares the CPU), torch's default for images and folders")
    p.add_argument("--max-frames", type=int, default=0,
                   help="stop a stream after N frames (0 = until it ends / Ctrl-C)")
    return p


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Use ``n`` intra-op threads (0: leave as is) inside the block, then restore the previous count.

    Restoring keeps an in-process caller (tests, notebooks) from inheriting our setting.
    """
    previous = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class LiveLine:
    """Shows the growing text: rewritten in place on a terminal, one plain line per change otherwise."""

    def __init__(self, out: TextIO, name: str) -> None:
        self.out = out
        self.name = name
        self.tty = out.isatty()
        self.shown = ""
        self.last_draw = 0.0

    def update(self, text: str, frames: int, fps: float, force: bool = False) -> None:
        now = time.perf_counter()
        if self.tty:
            if force or text != self.shown or now - self.last_draw > 0.25:
                self.out.write(f"\r\x1b[K{self.name}: {text}_  [{frames} frames, {fps:.1f} frames/s]")
                self.out.flush()
                self.last_draw = now
        elif text != self.shown:
            print(f"{self.name}: frame {frames}, {fps:.1f} frames/s: {text!r}", file=self.out, flush=True)
        self.shown = text

    def finish(self) -> None:
        if self.tty:
            self.out.write("\n")


def run_stream(classifier: Classifier, source: FrameSource, args: argparse.Namespace, out: TextIO) -> str:
    """Frames -> top class -> smoother -> text, printed as it grows; returns the final text."""
    smoother = TextSmoother(hold=args.hold, threshold=args.threshold)
    line = LiveLine(out, source.name)
    batch = 1 if source.live else args.batch_size  # a camera wants latency, a file throughput
    frames = iter(source)
    if args.max_frames:
        frames = (f for _, f in zip(range(args.max_frames), frames, strict=False))
    start = time.perf_counter()
    try:
        for pred in classifier.predict_frames(frames, k=1, batch_size=batch):
            smoother.update(pred.label, pred.prob)
            elapsed = time.perf_counter() - start
            line.update(smoother.text, smoother.frames, smoother.frames / elapsed if elapsed else 0.0)
    except KeyboardInterrupt:
        pass  # Ctrl-C ends a camera session; the text so far is the result
    elapsed = time.perf_counter() - start
    fps = smoother.frames / elapsed if elapsed else 0.0
    line.update(smoother.text, smoother.frames, fps, force=True)
    line.finish()
    print(f"{source.name}: {smoother.frames} frames in {elapsed:.2f} s ({fps:.1f} frames/s)", file=out)
    print(smoother.text, file=out, flush=True)
    return smoother.text


def print_images(classifier: Classifier, images: list[ImageFile], args: argparse.Namespace, out: TextIO,
                 err: TextIO) -> int:
    """One line per image: path, top-k with probabilities, and the true class when the name says it.

    An image that cannot be decoded gets a ``PATH: cannot read image (...)`` line on ``err``
    instead; returns how many did.
    """
    unreadable = 0
    for start in range(0, len(images), args.batch_size):
        chunk = images[start:start + args.batch_size]
        preds = classifier.predict_files([im.path for im in chunk], k=args.top_k)
        for im, pred in zip(chunk, preds, strict=True):
            if isinstance(pred, Unreadable):
                unreadable += 1
                print(pred.format(), file=err, flush=True)
                continue
            truth = f"  (true {im.label})" if im.label is not None else ""
            print(f"{im.path}: {pred.format()}{truth}", file=out)
    return unreadable


def run(args: argparse.Namespace, out: TextIO, err: TextIO | None = None) -> int:
    """Do what the arguments ask; returns how many images could not be decoded (reported on ``err``)."""
    err = err or sys.stderr
    if not args.inputs and args.camera is None:
        raise AslhpcError("nothing to predict; pass INPUT files/folders/videos or --camera N")
    if args.top_k < 1 or args.hold < 1 or args.batch_size < 1 or args.threads < 0 or args.max_frames < 0:
        raise AslhpcError("--top-k, --hold and --batch-size must be at least 1; --threads and --max-frames 0 "
                          "or more")
    if not 0.0 <= args.threshold <= 1.0:
        raise AslhpcError(f"--threshold {args.threshold} must be in [0, 1]")
    if (args.split or args.per_split) and not args.experiment:
        raise AslhpcError("--split and --per-split choose among an experiment's cells; use them with "
                          "--experiment NAME (or drop them with --model)")
    if args.per_split:
        return run_per_split(args, out, err)
    model_path = args.model
    if args.experiment:
        best = find_best_cell(args.results, args.experiment, args.split)
        model_path = best.model_path
        print(f"using {best.describe(args.experiment)}", file=out)
    classifier = Classifier.from_file(model_path, device=args.device)
    # a missing path or unknown type fails before any work
    inputs = [classify_input(arg, classifier.classes) for arg in args.inputs]
    stream_threads = args.threads or 1
    unreadable = 0
    singles = [i for i in inputs if isinstance(i, ImageFile)]
    if singles:
        with torch_threads(args.threads):
            unreadable += print_images(classifier, singles, args, out, err)
    for item in inputs:
        if isinstance(item, ImageFile):
            continue
        if isinstance(item, VideoFile):
            with open_video(item.path) as source, torch_threads(stream_threads):
                run_stream(classifier, source, args, out)
            continue
        print(f"{item.path}: {len(item.images)} images, {len(item.labelled)} labelled", file=out)
        with torch_threads(args.threads):
            if item.unlabelled:
                unreadable += print_images(classifier, list(item.unlabelled), args, out, err)
            if item.labelled:
                report = evaluate_images(classifier, item.labelled, args.batch_size)
                for bad in report.unreadable:
                    print(bad.format(), file=err, flush=True)
                unreadable += len(report.unreadable)
                print(report.format(), file=out)
    if args.camera is not None:
        with open_camera(args.camera) as source, torch_threads(stream_threads):
            run_stream(classifier, source, args, out)
    return unreadable


def run_per_split(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Score each labelled folder with every split's best cell, then one line per folder comparing them."""
    best = best_cells_by_split(args.results, args.experiment)
    best.pop("", None)  # cells that do not record their split cannot be put on either side
    if args.split:
        best = {k: v for k, v in best.items() if k == args.split}
    if not best:
        raise AslhpcError(f"no completed cell of {args.experiment} records its split with a model; run "
                          "predict without --per-split, or wait for the cells to finish")
    if args.camera is not None or not args.inputs:
        raise AslhpcError("--per-split scores labelled folders (e.g. asl_alphabet_test); pass folders, "
                          "no --camera")
    classes = Classifier.from_file(next(iter(best.values())).model_path, device="cpu").classes
    folders = [classify_input(arg, classes) for arg in args.inputs]
    bad = [str(f.path) for f in folders if isinstance(f, ImageFile | VideoFile) or not f.labelled]
    if bad:
        raise AslhpcError(f"--per-split needs folders of labelled images; {bad[0]} is not one (a "
                          "<CLASS>_test.jpg folder or <CLASS>/ subfolders)")
    unreadable = 0
    scores: dict[str, list[str]] = {str(f.path): [] for f in folders}
    for kind in sorted(best, key=lambda k: (k != "random", k)):
        cell = best[kind]
        print(f"split {kind}: using {cell.describe(args.experiment)}", file=out)
        classifier = Classifier.from_file(cell.model_path, device=args.device)
        with torch_threads(args.threads):
            for folder in folders:
                report = evaluate_images(classifier, folder.labelled, args.batch_size)
                for u in report.unreadable:
                    print(u.format(), file=err, flush=True)
                unreadable += len(report.unreadable)
                print(f"{folder.path} ({kind} split): {report.format()}", file=out)
                score = f"{kind} {report.accuracy:.2f}% ({report.correct}/{report.n})"
                scores[str(folder.path)].append(score)
    for path, parts in scores.items():
        print(f"{path} per split: {', '.join(parts)}", file=out)
    return unreadable


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        return 2 if run(args, sys.stdout, sys.stderr) else 0  # 2: some image could not be decoded

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
