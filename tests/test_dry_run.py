"""--dry-run: the sbatch scripts submitit would submit, runnable by hand, checked against golden files.

Like submitit's own test of ``_make_sbatch_string``, the scripts are compared as text after
replacing machine-specific paths (results dir, interpreter, cache dir). Regenerate with
``UPDATE_GOLDEN=1 pytest tests/test_dry_run.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import submitit

from aslhpc import submit
from aslhpc.data import CANONICAL_CLASSES
from aslhpc.errors import ConfigError
from aslhpc.orchestration.experiment import REPO_JOBS, Overrides, apply_overrides, job_request, load_spec
from aslhpc.slurm.executor import local_executor, render_sbatch, slurm_executor, slurm_parameters

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "data" / "asl"
    for cls in CANONICAL_CLASSES:
        d = root / "asl_alphabet_train" / "asl_alphabet_train" / cls
        d.mkdir(parents=True)
        (d / f"{cls}1.jpg").write_bytes(b"")
    return root


def normalise(text: str, root: Path, cache: Path) -> str:
    return (text.replace(str(root.resolve()), "<ROOT>").replace(str(cache), "<CACHE>")
            .replace(sys.executable, "<PYTHON>").replace(sys.prefix, "<VENV>"))


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"missing golden file {path}; run with UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} differs from the golden file (UPDATE_GOLDEN=1 to accept)"


def test_dry_run_writes_runnable_scripts_matching_golden(tmp_path: Path, dataset: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("ASLHPC_CACHE_DIR", str(cache))
    monkeypatch.chdir(tmp_path)
    rc = submit.main([str(REPO_JOBS / "lad2020.toml"), "--data", "data/asl", "--results", "results",
                      "--dry-run",
                      "--cluster", "local", "--strategy", "dp,ddp"])
    out = capsys.readouterr().out
    assert rc == 0 and "nothing submitted" in out
    exp = tmp_path / "results" / "lad2020"
    files = sorted(p.name for p in (exp / "dry-run").iterdir())
    assert len(files) == 24 and "g4-b512-ddp-r0.sbatch" in files
    assert not (exp / "manifest.json").exists()  # the manifest is untouched (here: never created)
    # SLURM does not create log folders: the scripts log into dry-run/, which exists; jobs/ is not created
    text = (exp / "dry-run" / "g2-b256-r0.sbatch").read_text()
    assert f"#SBATCH --output={(exp / 'dry-run').resolve()}/%j_0_log.out" in text
    assert not (exp / "jobs").exists()
    spec = apply_overrides(load_spec(REPO_JOBS / "lad2020.toml"),
                           Overrides(data=str(dataset), results=str(tmp_path / "results"),
                                     strategies=("dp", "ddp")))
    cells = {c.cell_id: c for c in spec.cells()}
    for cell in ("g2-b256-r0", "g4-b128-ddp-r0"):
        text = (exp / "dry-run" / f"{cell}.sbatch").read_text()
        # the cell's full TrainConfig rides along as JSON; compared exactly here, kept out of the golden
        # text so that a new TrainConfig field does not churn the golden files
        head, sep, config = text.rstrip("\n").rpartition(" --config ")
        assert sep and json.loads(shlex.split(config)[0]) == spec.train_config(cells[cell]).to_dict()
        check_golden(f"dry_run_lad2020_{cell}.sbatch", normalise(f"{head} --config "
                                                                 "<CONFIG>\n", tmp_path, cache))


def test_dry_run_uses_the_real_submission_parameters(tmp_path: Path, dataset: Path) -> None:
    """Same executor class and parameters as a real submission; only the command and folder differ."""
    spec = apply_overrides(load_spec(REPO_JOBS / "lad2020.toml"), Overrides(data=str(dataset)))
    cell = spec.cells()[5]
    req = job_request(spec, cell)
    folder = tmp_path / "jobs" / cell.cell_id / "%j"
    text = render_sbatch(folder, req, "CMD", python="PY")
    expected = submitit.slurm.slurm._make_sbatch_string(command="CMD", folder=folder,
                                                        **slurm_parameters(req, "PY"))
    assert text == expected
    assert "gpus-per-node" not in text and "#SBATCH --gres=gpu:v100-sxm2:2" in text


def test_render_only_equals_a_real_slurm_executor(tmp_path: Path, dataset: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """With srun on PATH (a fake one here), submitit's own SlurmExecutor renders the identical script."""
    b = tmp_path / "bin"
    b.mkdir()
    (b / "srun").write_text("#!/bin/sh\n")
    (b / "srun").chmod(0o755 | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{b}:{os.environ['PATH']}")
    spec = apply_overrides(load_spec(REPO_JOBS / "smoke.toml"),
                           Overrides(data=str(dataset), strategies=("ddp",)))
    for cell in spec.cells():
        req = job_request(spec, cell)
        real = slurm_executor(tmp_path / cell.cell_id, req)
        assert isinstance(real, submitit.SlurmExecutor)
        assert real.max_num_timeout == spec.cluster.max_requeues
        rendered = render_sbatch(tmp_path / cell.cell_id, req, "CMD")
        assert real._make_submission_file_text("CMD", "u") == rendered


def test_dry_run_of_a_two_node_ddp_cell_matches_golden(tmp_path: Path, dataset: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture) -> None:
    """--gpus-per-node 2: the 4-GPU ddp cell asks 2 nodes x 2 tasks, gres per node; the 2-GPU one stays on
    one node."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("ASLHPC_CACHE_DIR", str(cache))
    monkeypatch.chdir(tmp_path)
    rc = submit.main([str(REPO_JOBS / "lad2020.toml"), "--data", "data/asl", "--results", "results",
                      "--dry-run",
                      "--cluster", "local", "--strategy", "ddp", "--gpus", "2,4", "--gpus-per-node", "2"])
    assert rc == 0, capsys.readouterr().err
    dry = tmp_path / "results" / "lad2020" / "dry-run"
    two = (dry / "g2-b128-ddp-r0.sbatch").read_text()
    assert "#SBATCH --nodes=1\n" in two and "#SBATCH --ntasks-per-node=2\n" in two
    text = (dry / "g4-b128-ddp-r0.sbatch").read_text()
    head, sep, _ = text.rstrip("\n").rpartition(" --config ")
    assert sep
    check_golden("dry_run_lad2020_gpn2_g4-b128-ddp-r0.sbatch", normalise(f"{head} --config "
                                                                         "<CONFIG>\n", tmp_path, cache))
    for line in ("--nodes=2", "--ntasks-per-node=2", "--gres=gpu:v100-sxm2:2", "--cpus-per-task=6"):
        assert f"#SBATCH {line}\n" in text, line


def test_a_local_run_of_a_multi_node_cell_starts_every_task_here(dataset: Path, tmp_path: Path) -> None:
    spec = apply_overrides(load_spec(REPO_JOBS / "smoke.toml"),
                           Overrides(data=str(dataset), gpus=(4,), strategies=("ddp",), gpus_per_node=2))
    req = job_request(spec, spec.cells()[0])
    assert (req.nodes, req.tasks_per_node, req.gres, req.gpus) == (2, 2, "gpu:v100-sxm2:2", 4)
    assert slurm_parameters(req)["nodes"] == 2
    ex = local_executor(tmp_path / "%j", req)  # no GPUs here: every task, an empty CUDA_VISIBLE_DEVICES
    assert ex.parameters["tasks_per_node"] == 4 and ex.parameters["gpus_per_node"] == 0
    ex = local_executor(tmp_path / "%j", req, gpus=("2", "3", "5", "7"))
    assert ex.parameters["gpus_per_node"] == 4 and ex.parameters["visible_gpus"] == (2, 3, 5, 7)


SITE_TOML = """
[experiment]
name = "site"
[matrix]
gpus = [2]
batch_sizes = [128]
[cluster]
partition = "gpu"
reservation = ""
preamble = "minislurm"
mail_type = "END,FAIL"
mail_user = "student@example.edu"
comment = "csye7374 lab 3"
additional_parameters = { gpu-bind = "closest", requeue = true }
"""


def test_dry_run_shows_site_options_and_no_wckey(tmp_path: Path, dataset: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture) -> None:
    """A site's constraint, exclude, account, qos, mail and extra sbatch options reach the script; submitit's
    default ``--wckey=submitit`` (refused by some sites) does not."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("ASLHPC_CACHE_DIR", str(cache))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "site.toml").write_text(SITE_TOML)
    rc = submit.main(["site.toml", "--data", "data/asl", "--results", "results", "--dry-run", "--cluster",
                      "local", "--constraint", "v100&ib", "--exclude", "node[01-02]", "--account", "csye7374",
                      "--qos", "normal"])
    assert rc == 0, capsys.readouterr().err
    text = (tmp_path / "results" / "site" / "dry-run" / "g2-b128-r0.sbatch").read_text()
    head, sep, _ = text.rstrip("\n").rpartition(" --config ")
    assert sep
    check_golden("dry_run_site_options_g2-b128-r0.sbatch", normalise(f"{head} --config "
                                                                     "<CONFIG>\n", tmp_path, cache))
    for line in ("--constraint='v100&ib'", "--exclude='node[01-02]'", "--account=csye7374", "--qos=normal",
                 "--mail-type=END,FAIL", "--mail-user=student@example.edu", "--comment='csye7374 lab 3'",
                 "--gpu-bind=closest"):
        assert f"#SBATCH {line}\n" in text, line
    assert "#SBATCH --requeue\n" in text and "--wckey" not in text and "--reservation" not in text
    for golden in GOLDEN.glob("dry_run_*.sbatch"):
        assert "--wckey" not in golden.read_text(), golden


def test_a_wckey_is_written_only_when_the_site_sets_one(dataset: Path, tmp_path: Path) -> None:
    spec = apply_overrides(load_spec(REPO_JOBS / "smoke.toml"), Overrides(data=str(dataset)))
    cell = spec.cells()[0]
    assert "--wckey" not in render_sbatch(tmp_path, job_request(spec, cell), "CMD")
    spec = replace(spec, cluster=replace(spec.cluster, wckey="proj42"))
    assert "#SBATCH --wckey=proj42\n" in render_sbatch(tmp_path, job_request(spec, cell), "CMD")


@pytest.mark.parametrize("key, value", [("constraint", "a100\n#SBATCH --partition=x"), ("comment", "$(id)"),
                                        ("exclude", "n1;reboot"), ("mail_type", "SOMETIMES"),
                                        ("wckey", "w k"), ("mail_user", "a`id`@b")])
def test_a_bad_site_value_is_one_line_before_any_script(tmp_path: Path, dataset: Path, key: str, value: str,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    toml = SITE_TOML.replace("[cluster]\n", f"[cluster]\n{key} = {json.dumps(value)}\n")
    toml = "\n".join(ln for ln in toml.splitlines() if not ln.startswith(f"{key} "
                                                                         "=") or json.dumps(value) in ln)
    (tmp_path / "site.toml").write_text(toml)
    rc = submit.main(["site.toml", "--data", str(dataset), "--results", "results", "--dry-run", "--cluster",
                      "local"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: site.toml: "
                                                           f"cluster.{key}=") and "use " in err[0]
    assert not (tmp_path / "results" / "site" / "dry-run").exists()


@pytest.mark.parametrize("table, says", [('{ partition = "x" }', "use cluster.partition instead"),
                                         ('{ output = "/tmp/x" }', "set by aslhpc"),
                                         ('{ begin = "now;id" }', "not a safe value"),
                                         ('{ "--begin" = "now" }', "not an sbatch option name")])
def test_additional_parameters_cannot_override_or_inject(tmp_path: Path, table: str, says: str) -> None:
    path = tmp_path / "site.toml"
    path.write_text(SITE_TOML.replace('{ gpu-bind = "closest", requeue = true }', table))
    with pytest.raises(ConfigError, match=f"cluster.additional_parameters.*{re.escape(says)}"):
        load_spec(path)
