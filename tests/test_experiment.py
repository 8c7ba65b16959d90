"""jobs/*.toml -> ExperimentSpec -> cells: the study's matrix, overrides, one-line validation errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from aslhpc.errors import ConfigError
from aslhpc.orchestration.experiment import (
    REPO_JOBS,
    ExperimentSpec,
    Overrides,
    SpecErrors,
    apply_overrides,
    find_job_file,
    load_spec,
    node_layout,
    parse_int_list,
    parse_mem_mb,
    parse_time_min,
    sbatch_mem,
    validate_spec,
)
from aslhpc.training.config import TrainConfig


def write(tmp_path: Path, text: str, name: str = "exp.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_lad2020_is_the_2020_study() -> None:
    spec = load_spec(REPO_JOBS / "lad2020.toml")
    assert spec.name == "lad2020"
    assert spec.gpus == (1, 2, 3, 4) and spec.batch_sizes == (128, 256, 512) and spec.strategies == ("dp",)
    t = spec.train
    assert (t.epochs, t.lr, t.momentum, t.dropout, t.image_size) == (25, 0.005, 0.0, 0.2, 150)
    assert (t.optimizer, t.split, t.pipeline) == ("sgd", "random", "paper")
    c = spec.cluster
    assert (c.partition, c.reservation, c.gpu_type) == ("reservation", "CSYE7374_GPU", "v100-sxm2")
    assert c.preamble == "discovery" and parse_time_min(c.time) == 120 and parse_mem_mb(c.mem) == 90 * 1024
    cells = spec.cells()
    assert len(cells) == 12
    assert [c.cell_id for c in cells[:3]] == ["g1-b128-r0", "g1-b256-r0", "g1-b512-r0"]
    assert len({c.cell_id for c in cells}) == 12


def test_smoke_is_small_and_cpu_friendly() -> None:
    spec = load_spec(find_job_file("smoke"))
    assert len(spec.cells()) == 4
    assert spec.train.allow_cpu and spec.train.pipeline == "fast" and spec.train.epochs <= 2
    assert parse_time_min(spec.cluster.time) > 10  # see docs pitfall 11: <= 10 turns preemption into timeout


def test_strategy_list_is_a_third_axis_and_repeats_get_distinct_seeds(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, """
[matrix]
gpus = [1, 2]
batch_sizes = [64]
strategy = ["dp", "ddp"]
repeats = 3
[train]
seed = 10
"""))
    cells = spec.cells()
    assert len(cells) == 2 * 1 * 2 * 3
    ids = [c.cell_id for c in cells]
    assert "g2-b64-ddp-r2" in ids and "g1-b64-r0" in ids and len(set(ids)) == len(ids)
    seeds = {c.repeat: c.seed for c in cells if c.gpus == 1 and c.strategy == "dp"}
    assert seeds == {0: 10, 1: 11, 2: 12}


def test_train_config_mirrors_the_spec_with_absolute_paths(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = apply_overrides(load_spec(REPO_JOBS / "lad2020.toml"), Overrides(data="data/x", results="res"))
    cell = spec.cells()[4]  # g2-b256-r0
    cfg = spec.train_config(cell)
    assert isinstance(cfg, TrainConfig)
    assert cfg.data == str(tmp_path / "data" / "x")
    assert cfg.out == str(tmp_path / "res" / "lad2020" / "cells" / "g2-b256-r0")
    assert (cfg.gpus, cfg.batch_size, cfg.strategy, cfg.epochs, cfg.pipeline) == (2, 256, "dp", 25, "paper")


def test_flags_override_the_file() -> None:
    spec = load_spec(REPO_JOBS / "lad2020.toml")
    o = Overrides(data="/d", epochs=1, gpus=(1, 2), batch_sizes=(128, 256), repeats=2, allow_cpu=True,
                  pipeline="fast", reservation="", partition="gpu", time="30", mem="2G", results="/r",
                  strategies=("ddp",), cpus_per_gpu=1, preamble="minislurm", max_steps=3, gpus_per_node=2)
    s = apply_overrides(spec, o)
    top = (s.data, s.results, s.gpus, s.batch_sizes, s.repeats, s.strategies)
    assert top == ("/d", "/r", (1, 2), (128, 256), 2, ("ddp",))
    assert (s.train.epochs, s.train.allow_cpu, s.train.pipeline, s.train.max_steps) == (1, True, "fast", 3)
    c = s.cluster
    assert (c.reservation, c.partition, c.time, c.mem) == ("", "gpu", "30", "2G")
    assert (s.cluster.cpus_per_gpu, s.cluster.preamble, s.cluster.gpus_per_node) == (1, "minislurm", 2)
    assert len(s.cells()) == 2 * 2 * 2
    assert apply_overrides(spec, Overrides()) == spec


def test_unknown_keys_and_bad_values_are_all_reported_one_line_each(tmp_path: Path) -> None:
    path = write(tmp_path, """
[matrix]
gpus = [1, 0]
batch_sizes = [128]
strategy = "horovod"
[train]
pipeline = "turbo"
optimizer = "adam"
image_size = 16
[cluster]
mem = "lots"
time = "1:99"
reservation = "a;rm -rf /"
""")
    with pytest.raises(SpecErrors) as err:
        load_spec(path)
    problems = err.value.problems
    text = "\n".join(problems)
    assert all("\n" not in p for p in problems)
    assert "matrix.gpus" in text and "matrix.strategy='horovod'" in text and "dp, ddp" in text
    assert "train.pipeline='turbo'" in text and "paper, fast" in text
    assert "train.optimizer='adam'" in text and "sgd" in text
    assert "train.image_size=16 must be an integer >= 30" in text
    assert "cluster.mem='lots'" in text and "cluster.time='1:99'" in text and "cluster.reservation" in text
    assert len(problems) >= 8


def test_unknown_table_or_key_names_the_allowed_ones(tmp_path: Path) -> None:
    with pytest.raises(SpecErrors) as err:
        load_spec(write(tmp_path, "[matrix]\ngpus=[1]\nbatch_sizes=[8]\nbatchsize=3\n[slurm]\nx=1\n"))
    text = str(err.value)
    assert "unknown key matrix.batchsize; allowed: gpus, batch_sizes, strategy, repeats" in text
    assert "unknown table [slurm]" in text


def test_bad_toml_and_missing_file_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_spec(write(tmp_path, "[matrix\n"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_spec(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="no experiment named 'nope' in .*; use one of: .*lad2020"):
        find_job_file("nope")


@pytest.mark.parametrize(("text", "minutes"), [("90", 90), ("1:30:00", 90), ("2-00:00:00", 2880),
                                               ("10:30", 11), ("1-2", 1560), ("0:0:59", 1)])
def test_parse_time(text: str, minutes: int) -> None:
    assert parse_time_min(text) == minutes


@pytest.mark.parametrize("text", ["", "abc", "1:60:00", "0", "-5", "1h"])
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="cluster.time"):
        parse_time_min(text)


@pytest.mark.parametrize(("text", "mb", "flag"), [("16G", 16384, "16G"), ("95000", 95000, "95000"),
                                                  ("500M", 500, "500M"), ("1GB", 1024, "1G"),
                                                  ("2t", 2 * 1024 * 1024, "2T")])
def test_parse_mem(text: str, mb: int, flag: str) -> None:
    assert parse_mem_mb(text) == mb
    assert sbatch_mem(text) == flag


@pytest.mark.parametrize("text", ["", "0", "16X", "1.5G", "G"])
def test_parse_mem_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="cluster.mem"):
        parse_mem_mb(text)


def test_parse_int_list() -> None:
    assert parse_int_list("1,2, 4") == (1, 2, 4)
    with pytest.raises(ConfigError, match="comma-separated"):
        parse_int_list("1,two")


def test_spec_round_trips_through_the_manifest_dict() -> None:
    spec = load_spec(REPO_JOBS / "lad2020.toml")
    spec = replace(spec, cluster=replace(spec.cluster, setup=("echo hi",)))
    assert ExperimentSpec.from_dict(spec.to_dict()) == spec


def test_validate_spec_is_clean_for_the_shipped_files() -> None:
    for path in sorted(REPO_JOBS.glob("*.toml")):
        assert validate_spec(load_spec(path)) == [], path


# --------------------------------------------------------------------------- node layout


@pytest.mark.parametrize(("gpus", "strategy", "per_node", "layout"), [
    (4, "ddp", 0, (1, 4, 4)),  # 0 = the 2020 layout: the whole cell on one node
    (4, "dp", 0, (1, 4, 1)),  # DataParallel: one task drives every GPU
    (2, "ddp", 1, (2, 1, 1)),
    (4, "ddp", 2, (2, 2, 2)),
    (8, "ddp", 4, (2, 4, 4)),
    (2, "ddp", 4, (1, 2, 2)),  # fits on one node: stays there, one task per GPU it uses
    (2, "dp", 2, (1, 2, 1)),
])
def test_node_layout(gpus: int, strategy: str, per_node: int, layout: tuple[int, int, int]) -> None:
    got = node_layout(gpus, strategy, per_node)
    assert (got.nodes, got.gpus_per_node, got.tasks_per_node) == layout


def test_node_layout_refuses_dp_across_nodes_and_uneven_nodes() -> None:
    with pytest.raises(ConfigError) as err:
        node_layout(2, "dp", 1, "cell g2-b32-r0")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("cell g2-b32-r0: strategy dp")
    assert "cluster.gpus_per_node=1" in msg and "--strategy ddp" in msg and "at most 1 GPUs" in msg
    with pytest.raises(ConfigError) as err:
        node_layout(3, "ddp", 2, "cell g3-b32-ddp-r0")
    msg = str(err.value)
    assert "\n" not in msg and "cluster.gpus_per_node=2 does not divide its 3 GPUs" in msg
    assert "--gpus-per-node 1 or 3" in msg and "--gpus-per-node 0" in msg


def test_gpus_per_node_from_toml_and_flag_and_its_validation(tmp_path: Path) -> None:
    path = write(tmp_path, """
[matrix]
gpus = [1, 2, 4]
batch_sizes = [32]
strategy = "ddp"
[cluster]
gpus_per_node = 2
""")
    spec = load_spec(path)
    assert spec.cluster.gpus_per_node == 2
    layouts = {c.cell_id: spec.layout(c) for c in spec.cells()}
    assert [(lay.nodes, lay.tasks_per_node) for lay in layouts.values()] == [(1, 1), (1, 2), (2, 2)]
    assert apply_overrides(spec, Overrides(gpus_per_node=0)).layout(spec.cells()[2]).nodes == 1
    assert ExperimentSpec.from_dict(spec.to_dict()) == spec
    old = spec.to_dict()
    del old["cluster"]["gpus_per_node"]  # a manifest written before the key existed
    assert ExperimentSpec.from_dict(old).cluster.gpus_per_node == 0

    # one line per (strategy, GPU count), naming its cells; dp cells that fit one node are fine
    both = apply_overrides(spec, Overrides(gpus=(2, 3, 4), batch_sizes=(32, 64), strategies=("dp", "ddp")))
    problems = validate_spec(both)
    assert len(problems) == 3, problems
    assert problems[0].startswith("cells g3-b32-r0, g3-b64-r0: strategy dp")
    assert problems[1].startswith("cells g4-b32-r0, g4-b64-r0: strategy dp")
    assert problems[2].startswith("cells g3-b32-ddp-r0, g3-b64-ddp-r0: cluster.gpus_per_node=2 does not "
                                  "divide")
    with pytest.raises(SpecErrors, match=r"cluster.gpus_per_node=-1 must be an integer >= 0"):
        load_spec(write(tmp_path, "[matrix]\ngpus=[1]\nbatch_sizes=[8]\n[cluster]\ngpus_per_node=-1\n",
                        "neg.toml"))


def test_split_and_split_seed_flags_override_the_file() -> None:
    spec = load_spec(REPO_JOBS / "lad2020.toml")
    assert (spec.train.split, spec.train.split_seed) == ("random", 0)
    s = apply_overrides(spec, Overrides(split="blocked", split_seed=7))
    cfg = s.train_config(s.cells()[0])
    assert (cfg.split, cfg.split_seed) == ("blocked", 7)
    assert validate_spec(s) == []
    assert validate_spec(apply_overrides(spec, Overrides(split="chronological"))) == [
        "train.split='chronological' is not valid; use one of random, blocked"]
    assert validate_spec(apply_overrides(spec, Overrides(split_seed=-1))) == ["train.split_seed=-1 must be "
                                                                              "an integer >= 0"]


def test_gpu_type_flag_overrides_the_file() -> None:
    spec = load_spec(REPO_JOBS / "lad2020.toml")
    s = apply_overrides(spec, Overrides(gpu_type="a100-sxm4"))
    assert (spec.cluster.gpu_type, s.cluster.gpu_type) == ("v100-sxm2", "a100-sxm4")
    assert validate_spec(apply_overrides(spec, Overrides(gpu_type="a100;x"))) == [
        "cluster.gpu_type='a100;x' is not a safe SLURM name; use letters, digits, '.', '_' or '-'"]


def test_a_name_with_a_trailing_newline_is_refused(tmp_path: Path) -> None:
    """``$`` matches before a final newline: "nl\\n" passed and split the sbatch header (issue 16)."""
    spec = load_spec(REPO_JOBS / "smoke.toml")
    assert any(p.startswith("experiment.name='nl\\n' is not a safe "
                            "name") for p in validate_spec(replace(spec, name="nl\n")))
    bad = replace(spec, cluster=replace(spec.cluster, partition="gpu\n", gpu_type="v100\n"))
    assert sum("is not a safe SLURM name" in p for p in validate_spec(bad)) == 2


@pytest.mark.parametrize("matrix, says", [("gpus = [1]\nbatch_sizes = [32]\nrepeats = 1000000000",
                                           "matrix.repeats=1000000000: 1 GPU counts x 1 batch sizes x 1 "
                                           "strategies"),
                                          ("gpus = [1000000000]\nbatch_sizes = [32]",
                                           "matrix.gpus has [1000000000]; at most 1024 GPUs per cell")])
def test_a_huge_matrix_is_one_line_at_once(tmp_path: Path, matrix: str, says: str) -> None:
    """repeats = 10**9 built 5.6 GB of cells before any check; gpus = 10**9 ran out of memory laying it
    out."""
    import time

    path = write(tmp_path, f"[matrix]\n{matrix}\n[cluster]\ngpus_per_node = 4\n")
    t0 = time.monotonic()
    with pytest.raises(SpecErrors) as err:
        load_spec(path)
    assert time.monotonic() - t0 < 2
    [line] = [p for p in err.value.problems if "matrix" in p]  # one line, naming the key and the fix
    assert line.startswith("exp.toml: "
                           f"{says}") and ("lower matrix.repeats" in line or "smaller GPU counts" in line)
    spec = replace(load_spec(REPO_JOBS / "smoke.toml"), repeats=10**9)
    with pytest.raises(ConfigError, match="lower matrix.repeats"):
        spec.cells()  # cells() itself refuses, whoever calls it


def test_site_options_from_the_file_and_flags_reach_the_job_request(tmp_path: Path) -> None:
    from aslhpc.orchestration.experiment import job_request

    spec = load_spec(write(tmp_path, """
[matrix]
gpus = [2]
batch_sizes = [64]
[cluster]
reservation = ""
constraint = "v100"
mail_type = "END,FAIL"
mail_user = "me@example.edu"
wckey = "lab"
additional_parameters = { gpu-bind = "closest", exclusive = true }
"""))
    flags = Overrides(constraint="v100&ib", exclude="n[1-2]", account="acct", qos="high")
    spec = apply_overrides(spec, flags)
    req = job_request(spec, spec.cells()[0])
    site = req.site
    got = (site.constraint, site.exclude, site.account, site.qos, site.wckey)
    assert got == ("v100&ib", "n[1-2]", "acct", "high", "lab")
    assert (site.mail_type, site.mail_user) == ("END,FAIL", "me@example.edu")
    assert site.additional == (("exclusive", True), ("gpu-bind", "closest"))
    assert ExperimentSpec.from_dict(spec.to_dict()) == spec  # the manifest keeps them


def test_the_slurm_package_never_imports_the_experiment_spec() -> None:
    """slurm/ takes a JobRequest (issue 11): importing every slurm module loads no orchestration module."""
    import subprocess
    import sys

    code = ("import sys, aslhpc.slurm.executor, aslhpc.slurm.local, aslhpc.slurm.cluster, "
            "aslhpc.slurm.request, aslhpc.slurm.accounting, aslhpc.slurm.cell_job; print(sorted(m for m in "
            "sys.modules if m.startswith('aslhpc.orchestration')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cluster_site_options_are_one_definition() -> None:
    """[cluster] has exactly SiteOptions' fields as its site keys; site(), the reserved option names, the
    submit flags and the sbatch parameters all follow from them (adding an option is one field)."""
    from dataclasses import fields

    from aslhpc.orchestration.experiment import ClusterRequest, cluster_override_flags, job_request
    from aslhpc.slurm.executor import slurm_parameters
    from aslhpc.slurm.request import RESERVED_OPTIONS, SiteOptions, site_option_names

    names = site_option_names()
    assert set(names) <= {f.name for f in fields(ClusterRequest)}
    assert set(names) | {"additional"} == {f.name for f in fields(SiteOptions)}
    values = {"account": "acct", "qos": "high", "wckey": "w1", "constraint": "v100&ib", "exclude": "n[1-2]",
              "mail_type": "END,FAIL", "mail_user": "me@example.edu", "comment": "lab 3"}
    assert set(values) == set(names), "a new site option: give it a value here"
    c = ClusterRequest(**values, additional_parameters={"gpu-bind": "closest"})
    site = c.site()
    assert {n: getattr(site, n) for n in names} == values and site.additional == (("gpu-bind", "closest"),)
    assert all(RESERVED_OPTIONS[n] == f"cluster.{n}" for n in names)
    flags = {fl.flag for fl in cluster_override_flags()}
    assert {"--cpus-per-gpu", "--mail-type", "--account", "--gpus-per-node", "--time"} <= flags
    spec = replace(load_spec(REPO_JOBS / "smoke.toml"), cluster=c)
    params = slurm_parameters(job_request(spec, spec.cells()[0]))
    sbatch = site.sbatch_parameters()
    assert {k: params.get(k) for k in sbatch if k != "additional_parameters"} == {
        k: v for k, v in sbatch.items() if k != "additional_parameters"}
    assert params["additional_parameters"]["gpu-bind"] == "closest"
    assert SiteOptions().sbatch_parameters() == {"wckey": None}  # nothing set: no line, no --wckey
    assert validate_spec(replace(spec, cluster=replace(c, mail_type="SOMETIMES"))) == [
        "cluster.mail_type='SOMETIMES' is not valid; use a comma-separated list of NONE, BEGIN, END, FAIL, "
        "REQUEUE, ALL, INVALID_DEPEND, STAGE_OUT, TIME_LIMIT, TIME_LIMIT_90, TIME_LIMIT_80, TIME_LIMIT_50, "
        "ARRAY_TASKS (or \"\" for none)"]
