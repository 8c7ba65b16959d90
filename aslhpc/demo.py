"""``python -m aslhpc.demo``: the whole flow on this machine, no cluster needed.

1. generate a small dataset in the real Kaggle layout (``demo/asl``),
2. submit the smoke experiment (``jobs/smoke.toml``: 2 GPU counts x 2 batch sizes); with no
   SLURM here its cells run on this machine (CPU fallback), and the demo waits for them,
3. collect: the matrix in the 2020 study's shape, plots, hypothesis verdicts and a report,
   beside the published 2020 figures (labelled as reference data).

Re-running it skips what is already done: the data is kept and finished cells are not re-run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aslhpc import collect, submit


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m aslhpc.demo", description=__doc__.splitlines()[0])
    p.add_argument("--dir", default="demo", help="where the data and results go (default ./demo)")
    p.add_argument("--per-class", type=int, default=30, help="generated images per class (default 30)")
    p.add_argument("--cluster", choices=("auto", "local", "slurm"), default="local",
                   help="local (default) = run the cells here, no cluster needed; slurm = submit them to the "
                        "SLURM this machine reaches (e.g. scripts/minislurm.sh); auto = SLURM if it answers")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    root = Path(args.dir)
    data, results = root / "asl", root / "results"
    if not (data / "asl_alphabet_train").is_dir():
        from aslhpc.data.synth import write_dataset

        print(f"[1/3] generating a {args.per_class}-per-class dataset in {data}", flush=True)
        write_dataset(data, per_class=args.per_class, seed=0)
    else:
        print(f"[1/3] using the dataset already in {data}", flush=True)
    print("[2/3] submitting the smoke experiment and waiting for its cells", flush=True)
    rc = submit.main(["--experiment", "smoke", "--data", str(data), "--results", str(results),
                      "--cluster", args.cluster, "--wait", "--interval", "2",
                      # one cell at a time here: cells sharing the cores would make their times incomparable
                      "--max-parallel", "1"])
    if rc != 0:
        print(f"submit failed (exit {rc}); see the messages above, then re-run the demo", file=sys.stderr)
        return rc
    print("[3/3] collecting the experiment matrix", flush=True)
    return collect.main(["--experiment", "smoke", "--results", str(results), "--reference"])


if __name__ == "__main__":
    sys.exit(main())
