"""Packaging: ranges in setup.cfg, exact pins in the constraints files, package data found from any folder,
console scripts, and the README's two set-up commands (the one .ci/run runs verbatim).

The non-editable install itself (a fresh venv, an empty folder outside the clone: demo, dry run, 2020
verdicts) is .ci/run's packaging job; these tests keep the files it relies on consistent."""

from __future__ import annotations

import configparser
import importlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from aslhpc import packaged
from aslhpc.analysis.reference import default_reference_path
from aslhpc.orchestration import torchfix
from aslhpc.orchestration.experiment import find_job_file
from aslhpc.slurm.executor import read_preamble

ROOT = Path(__file__).resolve().parents[1]


def setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg


def requirements() -> dict[str, Requirement]:
    lines = setup_cfg().get("options", "install_requires").splitlines()
    reqs = [Requirement(ln) for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    return {r.name.lower(): r for r in reqs}


def pins(name: str) -> dict[str, Version]:
    out = {}
    for line in (ROOT / name).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            pkg, _, version = line.partition("==")
            out[re.sub(r"[-_.]+", "-", pkg).lower()] = Version(version.strip())
    return out


def ci_value(key: str) -> str:
    m = re.search(rf"^{key}=(\S+)$", (ROOT / ".ci" / "run").read_text(), re.MULTILINE)
    assert m, key
    return m.group(1)


def test_torch_is_a_range_that_admits_the_v100_torch_and_the_pinned_one() -> None:
    reqs = requirements()
    for name, pinned, oldest in (("torch", "2.14.1", ci_value("OLDEST_TORCH")),
                                 ("torchvision", "0.29.1", ci_value("OLDEST_TORCHVISION"))):
        spec = reqs[name].specifier
        assert "==" not in str(spec), f"{name} is pinned in setup.cfg: pins belong in constraints.txt"
        assert Version(pinned) in spec and Version(oldest) in spec
        # the lower bound is the oldest release CI tests: nothing older is admitted untested
        lower = Version(next(s.version for s in spec if s.operator == ">="))
        assert (lower.major, lower.minor) == (Version(oldest).major, Version(oldest).minor)
    assert (torchfix.V100_TORCH, torchfix.V100_TORCHVISION) == (ci_value("OLDEST_TORCH"),
                                                                ci_value("OLDEST_TORCHVISION"))
    assert "psutil" in reqs


@pytest.mark.parametrize("name", ["constraints.txt", "constraints-v100.txt"])
def test_every_pin_satisfies_the_ranges(name: str) -> None:
    pinned = pins(name)
    for req in requirements().values():
        key = re.sub(r"[-_.]+", "-", req.name).lower()
        assert key in pinned, f"{name} does not pin {req.name}"
        assert pinned[key] in req.specifier, f"{name}: {key}=={pinned[key]} is outside setup.cfg's {req}"
    for dev in ("pytest", "ruff"):
        assert dev in pinned


def test_the_v100_constraints_hold_the_oldest_pair_ci_tests() -> None:
    pinned = pins("constraints-v100.txt")
    assert str(pinned["torch"]) == ci_value("OLDEST_TORCH") == torchfix.V100_TORCH
    assert str(pinned["torchvision"]) == ci_value("OLDEST_TORCHVISION")
    assert str(pins("constraints.txt")["torch"]) == "2.14.1"


def test_the_readme_has_exactly_two_set_up_commands_and_ci_runs_the_test_one_verbatim() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^    (python3 -m venv .*)$", readme, re.MULTILINE)
    assert len(commands) == 2, commands
    demo, tests = commands
    assert "-c constraints.txt" in demo and demo.endswith("-m aslhpc.demo") and " -e " not in demo
    assert "-c constraints.txt" in tests and tests.endswith("-m pytest -q")
    assert any(line.strip() == tests for line in (ROOT / ".ci" / "run").read_text().splitlines())


def test_console_scripts_point_at_real_mains() -> None:
    text = setup_cfg().get("options.entry_points", "console_scripts")
    scripts = dict(line.split(" = ") for line in text.strip().splitlines())
    commands = ("submit", "status", "collect", "cancel", "train", "predict", "bench", "demo", "doctor")
    assert set(scripts) == {"aslhpc"} | {f"aslhpc-{c}" for c in commands}
    for name, target in scripts.items():
        module, func = target.split(":")
        if module == "aslhpc.doctor" and importlib.util.find_spec(module) is None:
            continue  # engineer "doctor" adds it; the entry point is ready for it
        assert callable(getattr(importlib.import_module(module), func)), name


def test_classifiers_name_only_the_python_ci_runs() -> None:
    classifiers = setup_cfg().get("metadata", "classifiers").strip().splitlines()
    versions = [c.rsplit("::", 1)[1].strip() for c in classifiers if re.search(r"Python :: 3\.\d+$", c)]
    assert versions == ["3.11"] and setup_cfg().get("options", "python_requires") == ">=3.11"


def test_every_shipped_file_is_package_data() -> None:
    """A file in aslhpc/jobs, sbatch_templates or reference that no package_data glob names would be
    missing from the wheel (and the non-editable install) only."""
    globs = setup_cfg().get("options.package_data", "aslhpc").split()
    pkg = ROOT / "aslhpc"
    for folder in ("jobs", "sbatch_templates", "reference"):
        files = [p.relative_to(pkg) for p in (pkg / folder).iterdir() if p.is_file()]
        assert files, folder
        for f in files:
            assert any(f.match(g) for g in globs), f"{f} is not in setup.cfg's package_data"
    for link, target in (("jobs", "aslhpc/jobs"), ("sbatch_templates", "aslhpc/sbatch_templates"),
                         ("results/reference", "aslhpc/reference")):
        assert (ROOT / link).resolve() == (ROOT / target).resolve(), f"{link} should link to {target}"


def test_shipped_files_are_found_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no jobs/, sbatch_templates/ or results/ here
    assert find_job_file("lad2020") == packaged.shipped_dir("jobs") / "lad2020.toml"
    assert "export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}" in read_preamble("minislurm")
    assert default_reference_path("results") == packaged.reference_table()
    assert packaged.reference_table().is_file()


def test_your_own_files_win_and_list_says_where_each_came_from(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "jobs").mkdir()
    (tmp_path / "sbatch_templates").mkdir()
    (tmp_path / "jobs" / "smoke.toml").write_text("[matrix]\ngpus = [1]\nbatch_sizes = [8]\n")
    (tmp_path / "jobs" / "mine.toml").write_text("[matrix]\ngpus = [1]\nbatch_sizes = [8]\n")
    (tmp_path / "sbatch_templates" / "minislurm.sh").write_text("# ours\nmodule load x\n")
    (tmp_path / "site.sh").write_text("echo hi\n")
    assert find_job_file("smoke") == tmp_path / "jobs" / "smoke.toml"
    assert read_preamble("minislurm") == ("module load x",)
    assert read_preamble("site.sh") == ("echo hi",)  # a path
    (tmp_path / "results" / "reference").mkdir(parents=True)
    (tmp_path / "results" / "reference" / "lad2020.csv").write_text("x\n")
    assert default_reference_path("results") == Path("results") / "reference" / "lad2020.csv"
    out = subprocess.run([sys.executable, "-m", "aslhpc.submit", "--list"], capture_output=True, text=True,
                         check=True, cwd=tmp_path).stdout
    rows = {tuple(line.split()[:2]) for line in out.splitlines() if line.startswith("  ")}
    assert {("smoke", "yours"), ("mine", "yours"), ("lad2020", "shipped"), ("minislurm", "yours"),
            ("discovery", "shipped")} <= rows
    assert str(tmp_path / "jobs" / "smoke.toml") in out


def test_the_v100_fix_names_exact_commands() -> None:
    line = torchfix.v100_fix("/opt/venv/bin/python")
    assert "\n" not in line
    assert "`/opt/venv/bin/python -m pip install torch==2.7.1 torchvision==0.22.1`" in line
    assert "constraints-v100.txt" in line and "_cuda_getArchFlags()" in line
