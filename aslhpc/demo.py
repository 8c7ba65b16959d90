"""``python -m aslhpc.demo``: the whole flow on this machine, no cluster needed.

1. generate a small dataset in the real Kaggle layout (``demo/asl``),
2. submit the smoke experiment (``jobs/smoke.toml``: 2 GPU counts x 2 batch sizes, a few epochs); with
   no SLURM here its cells run on this machine (CPU fallback), and the demo waits for them,
3. collect: the matrix in the 2020 study's shape, plots, hypothesis verdicts and a report,
   beside the published 2020 figures (labelled as reference data).

``--leakage`` trains every cell on both the random and the blocked split (the split as a matrix
axis), and the report adds the accuracy the random split's leakage adds: the generated frames drift
like a video, so the blocked split scores lower.

It demonstrates the flow; its accuracies and verdicts are not the study's result. Re-running it
skips what is already done: the data is kept and finished cells are not re-run.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.text import Text

from aslhpc import api
from aslhpc.analysis import default_reference_path, load_reference
from aslhpc.atomic import ensure_writable_dir
from aslhpc.cli import ArgumentParser, add_version, one_line, run_cli
from aslhpc.cli import console as cli_console
from aslhpc.errors import AslhpcError
from aslhpc.invocation import python_command
from aslhpc.orchestration.backend import runs_here
from aslhpc.orchestration.experiment import MAX_NAME, ExperimentSpec, find_job_file, load_spec

EXPERIMENT = "smoke"
#: classes of the generated ImageFolder that ``--model`` other than ladnet trains on
FOLDER_CLASSES = 5
#: how often the demo refreshes SLURM cells' table while it waits (a short demo: 2 s, not submit's 30 s)
WAIT_INTERVAL_S = 2.0


def build_parser() -> argparse.ArgumentParser:
    description = __doc__.splitlines()[0].replace("``", "")  # no reST markup in --help
    p = ArgumentParser(prog="aslhpc demo", description=description)
    add_version(p)
    p.add_argument("--dir", default="demo", help="where the data and results go (default ./demo)")
    p.add_argument("--per-class", type=int, default=30, help="generated images per class (default 30)")
    p.add_argument("--cluster", choices=("auto", "local", "slurm"), default="local",
                   help="local (default) = run the cells here, no cluster needed; slurm = submit them to the "
                        "SLURM this machine reaches (e.g. scripts/minislurm.sh); auto = SLURM if it answers")
    p.add_argument("--leakage", action="store_true",
                   help="train every cell on the random and the blocked split too, and report the "
                        "accuracy the random split's leakage adds (twice the cells)")
    p.add_argument("--model", default="ladnet",
                   help="the network: ladnet (the 2020 CNN, on generated ASL-layout data) or e.g. "
                        "torchvision:resnet18 (on a generated 5-class ImageFolder: a study of your own kind)")
    p.add_argument("--verbose", action="store_true",
                   help="print every table at the end, not just the summary")
    return p


def header(per_class: int, epochs: int, gpus: tuple[int, ...], sizes: tuple[int, ...], cluster: str,
           classes: int = 29, model: str = "ladnet") -> str:
    where = "on this machine's CPU unless it has GPUs" if runs_here(cluster) else "on SLURM"
    return (
        f"aslhpc demo: a {per_class}-images-per-class generated dataset ({classes} classes), model {model}, "
        f"the '{EXPERIMENT}' "
        f"experiment ({len(gpus)} GPU counts x {len(sizes)} batch sizes, {epochs} epochs each, {where}), "
        "then "
        "collect.\nIt shows how the tool works: its accuracies and verdicts are a demonstration of the flow, "
        "not the 2020 study's result."
    )


def footer(cluster: str = "local", command: str = "") -> list[str]:
    """What to run next, each command on a line of its own (copyable whole at any width), spelled the
    way this shell can run it (``command``: this interpreter's aslhpc, see submit.python_command)."""
    run = command or python_command()
    on_slurm = [] if not runs_here(cluster) else [
        "- the same flow on SLURM (no cluster at hand? as root, the clone's scripts/minislurm.sh up brings a "
        "real one up on this machine):", f"    {run} demo --cluster slurm"]
    return [
        "That was a demonstration on tiny generated data (few epochs, CPU), not the study's result. Next:",
        *on_slurm,
        "- the real study (Kaggle data, GPUs):", f"    {run} submit --data ~/data/asl",
        f"    {run} collect --reference",
        "- how much of the accuracy a random split of video frames owes to leakage (every cell on the random "
        "and the blocked split; the real study: jobs/lad2020-leakage.toml):", f"    {run} demo --leakage",
        "- the same study for your own kind of model:", f"    {run} demo --model torchvision:resnet18",
    ]


def _say(console: Console, lines: list[str] | str) -> None:
    """Word-wrapped to the terminal (plain print would cut words at its edge); an indented line is a
    command, printed as it is so that it is never broken across lines."""
    for line in [lines] if isinstance(lines, str) else lines:
        if line.startswith("    "):
            print(line, flush=True)
        else:
            console.print(Text(line))


def own_experiment_name(base: str, model: str) -> str:
    """``smoke-torchvision-resnet18``: the demo's experiment for another model, a safe folder name."""
    return f"{base}-{re.sub(r'[^A-Za-z0-9._]+', '-', model).strip('-.')}"[:MAX_NAME]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: _demo(args), output_flag="--dir")


def _demo(args: argparse.Namespace) -> int:
    root = Path(args.dir)
    own = args.model != "ladnet"  # a model of the user's kind: on a generic ImageFolder, not ASL
    data, results = root / ("folder" if own else "asl"), root / "results"
    ensure_writable_dir(root, "--dir")  # before the header or any work: a read-only folder is one line
    spec = load_spec(find_job_file(EXPERIMENT))
    console = cli_console(highlight=False)  # piped: lines unpadded, as every command's
    intro = header(args.per_class, spec.train.epochs, spec.gpus, spec.batch_sizes, args.cluster,
                   classes=FOLDER_CLASSES if own else 29, model=args.model)
    _say(console, intro.split("\n"))
    if own and not data.is_dir():
        from aslhpc.data.synth import write_imagefolder

        print(f"[1/3] generating a {FOLDER_CLASSES}-class, {args.per_class}-per-class ImageFolder in {data}",
              flush=True)
        write_imagefolder(data, FOLDER_CLASSES, args.per_class, image_size=64)
    elif own:
        print(f"[1/3] using the ImageFolder already in {data}", flush=True)
    elif not (data / "asl_alphabet_train").is_dir():
        from aslhpc.data.synth import write_dataset

        print(f"[1/3] generating a {args.per_class}-per-class dataset in {data}", flush=True)
        write_dataset(data, per_class=args.per_class, seed=0)
    else:
        print(f"[1/3] using the dataset already in {data}", flush=True)
    print(f"[2/3] submitting the {EXPERIMENT} experiment and waiting for its cells", flush=True)
    spec = api.load_experiment(EXPERIMENT, data=str(data), results=str(results),
                               splits=("random", "blocked") if args.leakage else None,
                               train={"model": args.model} if own else None)
    if own:  # its own experiment folder: the ladnet demo's in the same --dir holds other settings
        spec = replace(spec, name=own_experiment_name(spec.name, args.model))
    rc = _submit_and_wait(spec, args.cluster, console)
    if rc != 0:
        print(f"submit failed (exit {rc}); see the messages above, then re-run the demo", file=sys.stderr)
        return rc
    print("[3/3] collecting the experiment matrix", flush=True)
    out = api.collect(spec.experiment_dir, reference=load_reference(default_reference_path(results)),
                      console=console, verbose=args.verbose)
    console.print(f"report: {out.report_path}", soft_wrap=True)
    _say(console, footer(args.cluster))
    return 0


def _submit_and_wait(spec: ExperimentSpec, cluster: str, console: Console) -> int:
    """Submit (one cell at a time here: cells sharing the cores would make their times incomparable), wait
    for the cells and show their table. 0, 1 (a cell failed) or 2 (submit refused, the reason printed)."""
    from aslhpc.status import render_table, watch

    options = api.SubmitOptions(cluster=cluster, max_parallel=1)
    try:
        result = api.submit(spec, options, out=lambda line: console.print(Text(line)))
    except AslhpcError as exc:
        for problem in getattr(exc, "problems", None) or [exc]:
            print(f"error: {one_line(problem)}", file=sys.stderr, flush=True)
        return 2
    if result.backend.runs_here:
        report = api.status(result.manifest.parent)
        console.print(render_table(report))
    else:
        report = watch(lambda: api.status(result.manifest.parent), WAIT_INTERVAL_S, console)
    return 1 if report.any_failed else 0

if __name__ == "__main__":
    sys.exit(main())
