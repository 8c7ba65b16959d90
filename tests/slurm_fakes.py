"""Fake SLURM commands that replay text recorded on the mini cluster (tests/golden/), and the helpers the
submit and cluster-check tests share. A test module wraps install_fake_slurm / make_dataset in its own
fixtures (fake_slurm, dataset)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from aslhpc import submit
from aslhpc.data import CANONICAL_CLASSES
from aslhpc.orchestration.experiment import REPO_JOBS

GOLDEN = Path(__file__).parent / "golden"

SACCT_HEADER = "JobID|JobIDRaw|State|NodeList|Elapsed|ExitCode|Start|End|Submit|Reason\n"


FAKE_SBATCH = """#!/bin/bash
d=$(dirname "$0"); n=$(cat "$d/next" 2>/dev/null || echo 101)
if [ -e "$d/fail_at" ] && [ "$n" = "$(cat "$d/fail_at")" ]; then
  echo "sbatch: error: Batch job submission failed: Requested node configuration is not available" >&2; exit 1
fi
out=$(sed -n 's/^#SBATCH --output=//p' "$1" | head -1)
[ -z "$out" ] || [ -d "$(dirname "$out")" ] || echo "$out" > "$d/log_folder_missing_$n"  # a job starting now
echo $((n + 1)) > "$d/next"; cp "$1" "$d/script_$n.sh"; echo "Submitted batch job $n"
"""


FAKE_SCONTROL = f"""#!/bin/bash
case "$1 $2" in
  "ping "*) echo "Slurmctld(primary) at vm is UP" ;;
  "show partition") cat {GOLDEN}/scontrol_partition.txt ;;
  "show node") cat {GOLDEN}/scontrol_node.txt ;;
  "show reservation") cat {GOLDEN}/scontrol_reservation.txt ;;
  *) echo "fake scontrol: $*" >&2; exit 1 ;;
esac
"""


FAKE_SACCT = """#!/bin/bash
d=$(dirname "$0"); printf '%s' "$(cat "$d/sacct_header")"; echo; cat "$d/sacct.txt" 2>/dev/null; exit 0
"""


FAKE_SQUEUE = """#!/bin/bash
cat "$(dirname "$0")/squeue.txt" 2>/dev/null; exit 0
"""


def install_fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A bin dir first on PATH with sbatch/scontrol/sacct/squeue/srun fakes; returns the dir."""
    b = tmp_path / "fakebin"
    b.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("scontrol", FAKE_SCONTROL), ("sacct", FAKE_SACCT),
                       ("squeue", FAKE_SQUEUE), ("srun", "#!/bin/bash\nexit 0\n"),
                       ("sacctmgr", "#!/bin/bash\nexit 0\n")):
        (b / name).write_text(text)
        (b / name).chmod(0o755 | stat.S_IXUSR)
    (b / "sacct_header").write_text(SACCT_HEADER.strip())
    monkeypatch.setenv("PATH", f"{b}:/usr/bin:/bin")
    return b


def make_dataset(tmp_path: Path) -> Path:
    """The Kaggle layout with empty image files: enough for scan_dataset, nothing is trained here."""
    root = tmp_path / "asl"
    for cls in CANONICAL_CLASSES:
        d = root / "asl_alphabet_train" / "asl_alphabet_train" / cls
        d.mkdir(parents=True)
        (d / f"{cls}1.jpg").write_bytes(b"")
    return root


def run_submit(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    rc = submit.main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def smoke_args(dataset: Path, results: Path, *extra: str) -> list[str]:
    """smoke.toml, one sbatch script per cell (--no-array): these tests read each cell's own script."""
    return [str(REPO_JOBS / "smoke.toml"), "--data", str(dataset), "--results", str(results), "--no-array",
            *extra]


def scripts(bin_dir: Path) -> list[Path]:
    return sorted(bin_dir.glob("script_*.sh"))
