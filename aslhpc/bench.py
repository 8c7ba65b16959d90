"""``python -m aslhpc.bench``: the 2020 (paper) pipeline against the fast one, side by side.

Both run in this one invocation, on the same generated data, the same model, the
same batch size and the same number of training steps; each line gives training
images/s (data preparation, i.e. the one-time cache build, is reported apart) and
the last line is ``ratio <fast/paper>``. Each pipeline first runs one untimed warm-up epoch
of the same steps (lazy cuDNN/cuBLAS loading and ``cudnn.benchmark`` autotuning, which only the
fast pipeline does, would otherwise be charged to the timed steps); its figure is the second
epoch's. ``--full`` instead times complete 25-epoch cells on a 76,760-image training set, the
size of the paper's (warm-up included, as in a cell).

Each pipeline runs in a fresh process, as each cell does under SLURM: no allocator state,
warmed-up kernels or cached pages of one pipeline's run carry over into the other's figure.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from aslhpc.atomic import read_jsonl
from aslhpc.cli import ArgumentParser, add_version, run_cli
from aslhpc.training.config import AMP_MODES, TrainConfig


def build_parser() -> argparse.ArgumentParser:
    p = add_version(ArgumentParser(prog="aslhpc bench",
                                            description=__doc__.splitlines()[0]))
    p.add_argument("--data", help="dataset root; default: generate one in a temporary directory")
    p.add_argument("--per-class", type=int, default=100,
                   help="images per class when generating (default 100)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="training steps per pipeline (default 20)")
    p.add_argument("--gpus", type=int, default=None, help="default: 1 when CUDA is available, else 0 (CPU)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the paper pipeline")
    p.add_argument("--full", action="store_true",
                   help="time complete cells: 25 epochs on 76,760 training images "
                        "(3,001 generated per class: the size of the study's 87,029)")
    p.add_argument("--epochs", type=int, default=25, help="epochs with --full")
    p.add_argument("--pipelines", default="paper,fast", help="which pipelines to run, in order")
    p.add_argument("--amp", choices=AMP_MODES, default="auto",
                   help="precision of the fast pipeline (the paper pipeline is always fp32); "
                        "auto = by hardware")
    p.add_argument("--model", default="ladnet",
                   help="the network to time: ladnet (the 2020 CNN), torchvision:NAME or MODULE:CALLABLE / "
                        "file.py:CALLABLE, as in the experiment file's [train] model")
    p.add_argument("--image-size", type=int, default=150, help="input side in pixels (default 150)")
    p.add_argument("--no-reuse-host-memory", dest="reuse_host_memory", action="store_false",
                   help="fast pipeline on CPU: let glibc unmap freed activation memory every step "
                        "(what it costs)")
    return p


def run_pipeline(cfg: TrainConfig, start_method: str) -> dict:
    """One pipeline's cell; runs in a child process (module level so ``spawn`` can pickle it)."""
    from aslhpc.training.trainer import run_cell

    # A spawned child defaults to spawning its own children too: the paper pipeline's DataLoader
    # workers must start as they would in a cell (fork on Linux), or worker start-up is timed.
    multiprocessing.set_start_method(start_method, force=True)

    result = run_cell(cfg, experiment="bench", cell_id=cfg.pipeline, log=lambda m: None)
    return {**result, **timed_figures(result, read_jsonl(Path(cfg.out) / "epochs.jsonl"))}


def timed_figures(result: dict, epochs: list[dict]) -> dict:
    """``images_per_s`` / ``train_time_s`` to print: the last epoch's for a step benchmark (epoch 1 is the
    warm-up), the whole cell's for ``--full``."""
    if result["config"]["max_steps"] and len(epochs) > 1:
        last = epochs[-1]
        return {"images_per_s": last["images_per_s"], "train_time_s": last["train_s"],
                "warmup_epochs": len(epochs) - 1}
    return {"warmup_epochs": 0}


def pipeline_config(pipeline: str, data: Path, out: Path, cache: Path, args: argparse.Namespace,
                    gpus: int) -> TrainConfig:
    full = args.full
    return TrainConfig(data=str(data), out=str(out / pipeline), gpus=gpus, batch_size=args.batch_size,
                       epochs=args.epochs if full else 2, pipeline=pipeline, workers=args.workers,
                       # log_every left at the cell's default: bench times what a cell runs (issue 25.4)
                       cache_dir=str(cache), max_steps=0 if full else args.steps,
                       sample_interval_s=5.0, amp=args.amp, reuse_host_memory=args.reuse_host_memory,
                       model=args.model, image_size=args.image_size)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.steps < 1 and not args.full:
        parser.error(f"--steps {args.steps}: give at least 1 training step (or --full for whole cells)")
    gpus = args.gpus if args.gpus is not None else (1 if torch.cuda.is_available() else 0)
    pipelines = [p.strip() for p in args.pipelines.split(",") if p.strip()]
    from aslhpc.training.models import check_model_spec

    problem = check_model_spec(args.model, args.image_size)  # one line before any data is generated
    if problem:
        parser.error(f"--model {args.model}: {problem}")
    return run_cli(lambda: _bench(args, gpus, pipelines))


def _bench(args: argparse.Namespace, gpus: int, pipelines: list[str]) -> int:
    """Each pipeline in a fresh process on the same data; prints both figures and their ratio."""
    with tempfile.TemporaryDirectory(prefix="aslhpc-bench-") as tmp:
        tmp_path = Path(tmp)
        data = Path(args.data) if args.data else None
        if data is None:
            from aslhpc.data.synth import write_dataset

            per_class = 3001 if args.full else args.per_class  # 29 x 3001 = 87,029 -> 76,760 train images
            data = write_dataset(tmp_path / "data", per_class=per_class, seed=0, test_folder=False)
        device = torch.cuda.get_device_name(0) if gpus and torch.cuda.is_available() else "CPU"
        steps = f"{args.steps} steps after {args.steps} untimed warm-up steps"
        what = "full cells" if args.full else steps
        print(f"device: {device} x{max(gpus, 1) if gpus else 0} | torch {torch.__version__} | threads "
              f"{torch.get_num_threads()} | model {args.model} | batch {args.batch_size} | {what}",
              flush=True)
        figures: dict[str, float] = {}
        for pipeline in pipelines:
            cfg = pipeline_config(pipeline, data, tmp_path / "out", tmp_path / "cache", args, gpus)
            spawn = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
                r = pool.submit(run_pipeline, cfg, multiprocessing.get_start_method()).result()
            figures[pipeline] = r["images_per_s"]
            print(f"{pipeline:6s} {r['images_per_s']:10.1f} images/s  train {r['train_time_s']:.2f} s"
                  f"  exec {r['exec_time_s']:.2f} s  data prep {r['data_prep_s']:.2f} s"
                  f"  amp {r['amp']}  data on {r['data_location']}  host memory {r['host_memory']}"
                  f"  val acc {r['val_acc']:.1f}%", flush=True)
    if "paper" in figures and "fast" in figures:
        print(f"ratio {figures['fast'] / figures['paper']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
