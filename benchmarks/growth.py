"""What growth costs: submit, status and collect wall time at 12, 1,000 and 10,000 cells.

SLURM is stubbed by scripts on PATH that replay output recorded on the mini cluster (the
formats of ``sbatch``, ``squeue -r``, ``sacct -X --parsable2`` and ``scontrol``, golden files
in tests/golden/), so the figures are aslhpc's own cost: building and checking the matrix,
pickling each cell's call, one sbatch per job array, manifest writes, reading every cell's
files, one sacct + one squeue call per status refresh. Every stub call is counted.

    python benchmarks/growth.py [--cells 12,1000,10000] [--no-array]

The 12-cell row is the 2020 matrix (4 GPU counts x 3 batch sizes); the larger ones are
4 GPU counts x 5 batch sizes x repeats. Completed cells get a realistic result.json first
(tests/experiment_builders.py, not timed), so status and collect read real files.
"""

from __future__ import annotations

import argparse
import io
import os
import stat
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from experiment_builders import result_json, write_cell  # noqa: E402

from aslhpc.data import CANONICAL_CLASSES  # noqa: E402

GOLDEN = ROOT / "tests" / "golden"
SACCT_HEADER = "JobID|JobIDRaw|State|NodeList|Elapsed|ExitCode|Start|End|Submit|Reason|JobName"
# each stub logs its name to calls.log, then replays its file
STUB = """#!/bin/bash
d=$(dirname "$0"); echo "$(basename "$0")" >> "$d/calls.log"
"""
STUBS = {
    "sbatch": STUB + 'n=$(cat "$d/next" 2>/dev/null || echo 1001); echo $((n + 1)) > "$d/next"\n'
                     'echo "Submitted batch job $n"\n',
    "squeue": STUB + 'cat "$d/squeue.txt" 2>/dev/null; exit 0\n',
    "sacct": STUB + f'echo "{SACCT_HEADER}"; cat "$d/sacct.txt" 2>/dev/null; exit 0\n',
    "sacctmgr": STUB + "exit 0\n",
    "srun": "#!/bin/bash\nexit 0\n",
    "scontrol": STUB + f"""case "$1 $2" in
  "ping "*) echo "Slurmctld(primary) at vm is UP" ;;
  "show partition") cat {GOLDEN}/scontrol_partition.txt ;;
  "show node") cat {GOLDEN}/scontrol_node.txt ;;
  "show reservation") cat {GOLDEN}/scontrol_reservation.txt ;;
  "show config") echo "MaxArraySize            = 1001" ;;
  *) exit 1 ;;
esac
""",
}


def install_stubs(bin_dir: Path) -> None:
    bin_dir.mkdir(parents=True)
    for name, text in STUBS.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755 | stat.S_IXUSR)
    os.environ["PATH"] = f"{bin_dir}:{os.environ['PATH']}"


def make_dataset(root: Path) -> Path:
    for cls in CANONICAL_CLASSES:
        d = root / "asl_alphabet_train" / "asl_alphabet_train" / cls
        d.mkdir(parents=True)
        (d / f"{cls}1.jpg").write_bytes(b"")
    return root


def calls(bin_dir: Path) -> dict[str, int]:
    log = bin_dir / "calls.log"
    names = log.read_text().split() if log.exists() else []
    log.write_text("")
    return {n: names.count(n) for n in sorted(set(names))}


def spec_for(n_cells: int, tmp: Path, data: Path):  # noqa: ANN201 - ExperimentSpec
    from aslhpc.orchestration.experiment import REPO_JOBS, Overrides, apply_overrides, load_spec

    spec = load_spec(REPO_JOBS / "lad2020.toml")
    if n_cells == 12:
        over = Overrides()
    else:
        over = Overrides(batch_sizes=(32, 64, 128, 256, 512), repeats=-(-n_cells // 20))
    # the mini cluster's nodes (golden scontrol output): 12 CPUs, 12000M
    over = replace(over, data=str(data), results=str(tmp / f"r{n_cells}"), allow_cpu=True, preamble="",
                   cpus_per_gpu=1, mem="1G")
    spec = apply_overrides(spec, over)
    return replace(spec, name=f"grow{n_cells}")


def finish_cells(manifest_path: Path, bin_dir: Path) -> None:
    """sacct says every job ended (recorded row format); every cell gets its result.json (not timed)."""
    from aslhpc.orchestration.manifest import load_manifest

    m = load_manifest(manifest_path)
    rows = []
    for i, (cid, e) in enumerate(m.cells.items()):
        a = e.last
        name = f"aslhpc-{m.experiment}-array" if a.array_id else f"aslhpc-{m.experiment}-{cid}"
        rows.append(f"{a.job_id}|{5000 + i}|COMPLETED|n1|00:00:17|0:0|2026-11-30T09:15:44|"
                    f"2026-11-30T09:16:01|2026-11-30T09:15:40|None|{name}")
        write_cell(manifest_path.parent, result_json(m.experiment, e.gpus, e.batch_size, e.repeat,
                                                     job_id=a.job_id))
    (bin_dir / "sacct.txt").write_text("\n".join(rows) + "\n")
    (bin_dir / "squeue.txt").write_text("")


def run_one(n_cells: int, tmp: Path, data: Path, bin_dir: Path, arrays: bool) -> dict[str, object]:
    from aslhpc import collect
    from aslhpc.orchestration.cellstate import experiment_status
    from aslhpc.orchestration.submission import SubmitOptions, submit_experiment

    spec = spec_for(n_cells, tmp, data)
    calls(bin_dir)
    t0 = time.perf_counter()
    result = submit_experiment(spec, SubmitOptions(cluster="slurm", arrays=arrays), out=lambda _: None)
    submit_s = time.perf_counter() - t0
    submit_calls = calls(bin_dir)
    finish_cells(result.manifest, bin_dir)
    calls(bin_dir)
    t0 = time.perf_counter()
    report = experiment_status(result.manifest)
    status_s = time.perf_counter() - t0
    status_calls = calls(bin_dir)
    assert report.counts() == {"COMPLETED": len(report.rows)}, report.counts()
    from rich.console import Console

    t0 = time.perf_counter()
    rc = collect.main(["--results", spec.results, "--experiment", spec.name, "--no-plots"],
                      console=Console(file=io.StringIO()))
    collect_s = time.perf_counter() - t0
    return {"cells": len(report.rows), "arrays": len(result.arrays), "submit_s": submit_s,
            "sbatch": submit_calls.get("sbatch", 0), "status_s": status_s, "status_calls": status_calls,
            "collect_s": collect_s, "collect_rc": rc}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", default="12,1000,10000", help="comma list of matrix sizes")
    p.add_argument("--no-array", dest="arrays", action="store_false", help="one sbatch per cell")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        bin_dir = tmp / "bin"
        install_stubs(bin_dir)
        data = make_dataset(tmp / "asl")
        print(f"{'cells':>6} {'arrays':>6} {'sbatch':>6} {'submit s':>9} {'status s':>9} "
              f"{'status calls':>22} {'collect s':>9}")
        for n in (int(x) for x in args.cells.split(",")):
            r = run_one(n, tmp, data, bin_dir, args.arrays)
            sc = ", ".join(f"{k} {v}" for k, v in r["status_calls"].items())  # type: ignore[union-attr]
            print(f"{r['cells']:>6} {r['arrays']:>6} {r['sbatch']:>6} {r['submit_s']:>9.2f} "
                  f"{r['status_s']:>9.2f} {sc:>22} {r['collect_s']:>9.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
