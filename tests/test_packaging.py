"""Packaging: ranges in pyproject.toml, exact pins in the constraints files, package data found from any
folder, console scripts, and the README's two set-up commands (the one .ci/run runs verbatim).

The non-editable install itself (a fresh venv, an empty folder outside the clone: demo, dry run, 2020
verdicts) is .ci/run's packaging job; these tests keep the files it relies on consistent."""

from __future__ import annotations

import importlib
import importlib.util
import re
import subprocess
import sys
import tomllib
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


def project() -> dict:
    """pyproject.toml's PEP 621 [project] table (and [tool.setuptools] beside it)."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def requirements(extra: str | None = None) -> dict[str, Requirement]:
    meta = project()["project"]
    lines = meta["optional-dependencies"][extra] if extra else meta["dependencies"]
    reqs = [Requirement(ln) for ln in lines]
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
        assert "==" not in str(spec), f"{name} is pinned in pyproject.toml: pins belong in constraints.txt"
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
    for req in [*requirements().values(), *requirements("video").values()]:
        key = re.sub(r"[-_.]+", "-", req.name).lower()
        assert key in pinned, f"{name} does not pin {req.name}"
        assert pinned[key] in req.specifier, f"{name}: {key}=={pinned[key]} is outside pyproject.toml's {req}"
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
    scripts = project()["project"]["scripts"]
    commands = ("submit", "status", "collect", "cancel", "train", "predict", "bench", "demo", "doctor")
    assert set(scripts) == {"aslhpc"} | {f"aslhpc-{c}" for c in commands}
    for name, target in scripts.items():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), name


def test_classifiers_name_only_the_python_ci_runs() -> None:
    meta = project()["project"]
    pythons = [c for c in meta["classifiers"] if re.search(r"Python :: 3\.\d+$", c)]
    versions = [c.rsplit("::", 1)[1].strip() for c in pythons]
    assert versions == ["3.11"] and meta["requires-python"] == ">=3.11"


def test_video_input_is_an_extra_and_the_test_suite_has_it() -> None:
    """OpenCV is only for video files and cameras: an extra, not a dependency; dev carries it so the
    README's test command covers video input."""
    assert "opencv-python-headless" not in requirements()
    assert requirements("video")["opencv-python-headless"].specifier == \
        requirements("dev")["opencv-python-headless"].specifier
    meta = project()["project"]
    assert meta["license"] == "MIT" and meta["license-files"] == ["LICENSE"] and (ROOT / "LICENSE").is_file()


def test_every_shipped_file_is_package_data() -> None:
    """A file in aslhpc/jobs, sbatch_templates or reference that no package_data glob names would be
    missing from the wheel (and the non-editable install) only."""
    globs = project()["tool"]["setuptools"]["package-data"]["aslhpc"]
    pkg = ROOT / "aslhpc"
    for folder in ("jobs", "sbatch_templates", "reference"):
        files = [p.relative_to(pkg) for p in (pkg / folder).iterdir() if p.is_file()]
        assert files, folder
        for f in files:
            assert any(f.match(g) for g in globs), f"{f} is not in pyproject.toml's package-data"
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
