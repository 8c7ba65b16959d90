"""TrainConfig is the one definition: the train CLI, the [train] table and their validation come from it."""

from __future__ import annotations

import math
from dataclasses import MISSING, fields
from pathlib import Path

import pytest

from aslhpc.errors import ConfigError
from aslhpc.orchestration.experiment import REPO_JOBS, TrainSettings, load_spec, validate_spec
from aslhpc.train import build_parser
from aslhpc.training.config import PER_CELL, TrainConfig, cli_flag, resolve_cache_dir


def test_every_field_is_a_train_flag_with_the_fields_default_and_help() -> None:
    parser = build_parser()
    args = vars(parser.parse_args(["--data", "d", "--out", "o"]))
    assert set(args) == {f.name for f in fields(TrainConfig)}
    help_text = " ".join(parser.format_help().split())
    for f in fields(TrainConfig):
        if f.default is not MISSING:
            assert args[f.name] == f.default, f.name
        assert cli_flag(f) in help_text and " ".join(f.metadata["help"].split())[:30] in help_text, f.name
    assert TrainConfig(**args) == TrainConfig(data="d", out="o")
    # the flags users already type keep working
    parsed = parser.parse_args(["--data", "d", "--out", "o", "--no-channels-last", "--allow-cpu", "--compile",
                                "--sample-interval", "0.5", "--batch-size", "32", "--pipeline", "paper"])
    assert (parsed.channels_last, parsed.allow_cpu, parsed.compile) == (False, True, True)
    assert (parsed.sample_interval_s, parsed.batch_size, parsed.pipeline) == (0.5, 32, "paper")


def test_train_cli_refuses_a_bad_value_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from aslhpc.train import main

    assert main(["--data", str(tmp_path), "--out", str(tmp_path / "o"), "--lr", "nan"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: lr=nan must be a positive finite number"


def test_the_train_table_is_trainconfigs_shared_fields_with_its_defaults() -> None:
    shared = {f.name: f for f in fields(TrainConfig) if f.name not in PER_CELL}
    table = {f.name: f for f in fields(TrainSettings)}
    assert set(table) == set(shared) | {"optimizer"}
    for name, f in shared.items():
        # the one documented difference: an experiment reproduces the study (paper pipeline) by default
        expected = "paper" if name == "pipeline" else f.default
        assert table[name].default == expected, name
    assert TrainSettings().pipeline == "paper" and TrainConfig(data="d", out="o").pipeline == "fast"


@pytest.mark.parametrize(("key", "value", "message"), [
    ("lr", math.nan, "lr=nan must be a positive finite number"),
    ("lr", math.inf, "lr=inf must be a positive finite number"),
    ("lr", 0, "lr=0 must be a positive finite number"),
    ("sample_interval_s", 0.0, "sample_interval_s=0.0 must be a positive finite number"),
    ("sample_interval_s", -1.0, "sample_interval_s=-1.0 must be a positive finite number"),
    ("process_sample_interval_s", 0, "process_sample_interval_s=0 must be a positive finite number"),
    ("momentum", 1.0, "momentum=1.0 must be in [0, 1)"),
    ("workers", -1, "workers=-1 must be an integer >= 0"),
    ("epochs", True, "epochs=True must be an integer >= 1"),
    ("compile", "yes", "compile='yes' must be true or false"),
])
def test_one_validation_for_the_cli_and_the_experiment_file(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        TrainConfig(data="d", out="o", **{key: value})
    assert str(err.value) == message
    from dataclasses import replace

    spec = load_spec(REPO_JOBS / "lad2020.toml")
    assert validate_spec(replace(spec, train=replace(spec.train, **{key: value}))) == [f"train.{message}"]


def test_cache_dir_is_chosen_where_the_cell_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Submit leaves it empty; the job's environment decides (issue 12)."""
    monkeypatch.setenv("ASLHPC_CACHE_DIR", "/submit/side")
    spec = load_spec(REPO_JOBS / "smoke.toml")
    cfg = spec.train_config(spec.cells()[0])
    assert cfg.cache_dir == ""  # nothing of the submitting shell is baked into the job
    home = str(Path.home() / ".cache" / "aslhpc")
    assert resolve_cache_dir(cfg, {}) == (home, "default")
    assert resolve_cache_dir(cfg, {"ASLHPC_CACHE_DIR": "/node/a", "SLURM_TMPDIR": "/tmp/j"}) == ("/node/a",
                                                                                                 "ASLHPC_CACHE_DIR")
    assert resolve_cache_dir(cfg, {"SLURM_TMPDIR": "/tmp/j"}) == (home, "default")  # not asked for
    local = TrainConfig.from_dict({**cfg.to_dict(), "node_local_cache": True})
    assert resolve_cache_dir(local, {"SLURM_TMPDIR": "/tmp/j", "TMPDIR": "/tmp"}) == ("/tmp/j/aslhpc",
                                                                                    "SLURM_TMPDIR")
    assert resolve_cache_dir(local, {"TMPDIR": "/tmp"}) == ("/tmp/aslhpc", "TMPDIR")
    # a config that carries a cache_dir (--cache-dir, or one baked by an older submit) keeps it
    explicit = TrainConfig.from_dict({**cfg.to_dict(), "cache_dir": "/old/baked"})
    assert resolve_cache_dir(explicit, {"ASLHPC_CACHE_DIR": "/node/a"}) == ("/old/baked", "configured")


def test_a_hand_run_cell_with_bad_data_or_devices_writes_nothing(tmp_path: Path, synth_root: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    """The data is checked first, then the GPUs; neither leaves a cell directory, lock or error file."""
    from aslhpc.train import main

    out = tmp_path / "cell"
    assert main(["--data", str(tmp_path / "nope"), "--out", str(out), "--gpus", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "nope" in err[0]
    assert not out.exists()
    import torch

    if torch.cuda.device_count() < 64:
        assert main(["--data", str(synth_root), "--out", str(out), "--gpus", "64"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "64 GPU" in err[0] and "--allow-cpu" in err[0]
        assert not out.exists()


def test_submits_override_flags_are_built_from_the_fields_as_trains_are() -> None:
    """train_override_flags(): one flag per [train] field, spelt as the train CLI spells it; add_field_flags
    parses them with None for every flag not given, so the file's value stands."""
    import argparse

    from aslhpc.orchestration.experiment import Overrides, apply_overrides
    from aslhpc.training.config import add_field_flags, train_override_flags

    flags = train_override_flags()
    assert [f.name for f in flags] == [f.name for f in fields(TrainSettings) if f.name != "optimizer"]
    train_flags = {f.name: cli_flag(f) for f in fields(TrainConfig)}
    assert all(fl.flag == train_flags[fl.name] for fl in flags)
    by_name = {fl.name: fl for fl in flags}
    assert by_name["pipeline"].choices == ("paper", "fast") and by_name["pipeline"].default == "paper"
    assert by_name["sample_interval_s"].flag == "--sample-interval" and by_name["epochs"].type is int
    parser = argparse.ArgumentParser()
    add_field_flags(parser, flags)
    args = vars(parser.parse_args(["--epochs", "3", "--no-channels-last", "--amp", "bf16"]))
    given = {k: v for k, v in args.items() if v is not None}
    assert given == {"epochs": 3, "channels_last": False, "amp": "bf16"}
    spec = apply_overrides(load_spec(REPO_JOBS / "lad2020.toml"), Overrides(train=given))
    assert (spec.train.epochs, spec.train.channels_last, spec.train.amp, spec.train.lr) == (3, False, "bf16",
                                                                                          0.005)
    with pytest.raises(ConfigError, match="unknown \\[train\\] override nope"):
        apply_overrides(spec, Overrides(train={"nope": 1}))


def test_seeds_beyond_32_bits_are_refused_before_the_cell_starts() -> None:
    with pytest.raises(ConfigError) as err:
        TrainConfig(data="d", out="o", seed=10**20)
    assert str(err.value) == ("seed=100000000000000000000 is more than 4294967295 (numpy and torch take "
                              "32-bit seeds); use a smaller value")
    assert TrainConfig(data="d", out="o", seed=2**32 - 1).seed == 2**32 - 1
