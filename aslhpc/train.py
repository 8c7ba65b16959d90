"""``python -m aslhpc.train``: train one (GPU count, batch size) cell, resumably.

Defaults are the study's stated settings (SGD at lr 0.005, 25 epochs, dropout 0.2, 150 px
inputs, no early stopping) plus our assumptions where it is silent (no momentum, the split, the
normalisation: docs/reproducing-2020.md). Re-running the same command resumes after the last
finished epoch; a finished cell is not trained again.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import MISSING, fields

from aslhpc.cli import ArgumentParser, add_version, run_cli
from aslhpc.training.config import TrainConfig, cli_flag

_TYPES = {"int": int, "float": float, "str": str}


def build_parser() -> argparse.ArgumentParser:
    """One flag per TrainConfig field: its name, type, default, choices and help come from the field."""
    p = add_version(ArgumentParser(prog="aslhpc train",
                                            description=__doc__.splitlines()[0]))
    for f in fields(TrainConfig):
        kw: dict = {"dest": f.name, "help": f.metadata.get("help")}
        if f.default is MISSING:
            kw["required"] = True
        else:
            kw["default"] = f.default
            kw["help"] += f" (default: {f.default!r})" if f.default != "" else ""
        if str(f.type) == "bool":
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = _TYPES[str(f.type)]
            kw["choices"] = f.metadata.get("choices")
            kw["metavar"] = None if kw["choices"] else cli_flag(f)[2:].upper().replace("-", "_")
        p.add_argument(cli_flag(f), **kw)
    return p


def check_before_start(cfg: TrainConfig) -> None:
    """The user errors of a hand-run cell, before its directory, lock or error file exist: the data
    first, then the model (built and run once on the meta device), then the devices (a DDP rank's
    device is planned by the trainer, from its local rank)."""
    from aslhpc.data import scan_dataset
    from aslhpc.training.devices import plan_devices
    from aslhpc.training.models import model_info

    index = scan_dataset(cfg.data)
    model_info(cfg.model, len(index.classes), cfg.image_size, dropout=cfg.dropout)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        plan_devices(cfg.gpus, cfg.allow_cpu)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from aslhpc.training.trainer import run_cell

    def body() -> None:
        cfg = TrainConfig(**vars(args))
        check_before_start(cfg)
        run_cell(cfg)

    try:
        return run_cli(body, output_flag="--out")
    except KeyboardInterrupt:
        print("interrupted: re-run the same command to resume after the last finished epoch", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
