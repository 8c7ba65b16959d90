"""``python -m aslhpc.train``: train one (GPU count, batch size) cell, resumably.

Defaults follow the 2020 paper: SGD at lr 0.005, no momentum, 25 epochs, dropout 0.2,
150 px inputs, no early stopping. Re-running the same command resumes after the last
finished epoch; a finished cell is not trained again.
"""

from __future__ import annotations

import argparse
import sys

from aslhpc.errors import run_cli
from aslhpc.training.config import AMP_MODES, INTERPOLATIONS, PIPELINES, SPLITS, STRATEGIES, TrainConfig


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m aslhpc.train", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="dataset root (Kaggle ASL Alphabet layout)")
    p.add_argument("--out", required=True, help="cell directory for result.json, epochs.jsonl, checkpoints")
    p.add_argument("--gpus", type=int, default=1, help="0 = CPU, 1 = one GPU, N > 1 = DataParallel (or DDP) over N")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--lr", type=float, default=0.005)
    p.add_argument("--momentum", type=float, default=0.0)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--image-size", type=int, default=150)
    p.add_argument("--interpolation", choices=INTERPOLATIONS, default="bilinear")
    p.add_argument("--split", choices=SPLITS, default="random",
                   help="random = the paper's split; blocked = contiguous frame blocks per class (no near-duplicate leak)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the split (keep it fixed across repeats)")
    p.add_argument("--seed", type=int, default=0, help="seed of init, shuffling and dropout")
    p.add_argument("--pipeline", choices=PIPELINES, default="fast",
                   help="paper = ImageFolder+DataLoader, fp32, decode every epoch (2020); fast = cached data on the device")
    p.add_argument("--strategy", choices=STRATEGIES, default="dp", help="dp = nn.DataParallel, ddp = one process per GPU")
    p.add_argument("--amp", choices=AMP_MODES, default="auto", help="auto = bf16 on Ampere+, fp16 on V100, fp32 on CPU")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (not with DataParallel)")
    p.add_argument("--no-reuse-host-memory", dest="reuse_host_memory", action="store_false",
                   help="fast pipeline on CPU: let glibc return freed activation memory to the OS every step")
    p.add_argument("--allow-cpu", action="store_true", help="fall back to the CPU when fewer GPUs are visible than requested")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers (paper pipeline)")
    p.add_argument("--cache-dir", default="", help="decoded-image cache (default $ASLHPC_CACHE_DIR or ~/.cache/aslhpc)")
    p.add_argument("--log-every", type=int, default=50, help="print a batch line every N batches")
    p.add_argument("--sample-interval", dest="sample_interval_s", type=float, default=1.0, help="telemetry interval, s")
    p.add_argument("--max-steps", type=int, default=0, help="stop each epoch after N batches (smoke runs)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from aslhpc.training.trainer import run_cell

    try:
        return run_cli(lambda: run_cell(TrainConfig(**vars(args))))
    except KeyboardInterrupt:
        print("interrupted: re-run the same command to resume after the last finished epoch", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
