"""The model registry: every spec kind builds, a bad spec is one line, LadNet is built exactly as before."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from aslhpc.errors import AslhpcError, ConfigError
from aslhpc.recognize.classifier import conv_bn_pairs, fuse_batchnorm
from aslhpc.training import models
from aslhpc.training.config import TrainConfig
from aslhpc.training.model import LadNet
from aslhpc.training.modelio import load_model, save_model

FIXTURE = Path(__file__).parent / "fixtures" / "cell_format_v1" / "smoke" / "cells" / "g1-b32-r0"

FACTORY = '''
import torch
from torch import nn


def make(num_classes, image_size):
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))


def not_a_module(num_classes, image_size):
    return "a string"


def broken(num_classes, image_size):
    raise RuntimeError("this factory is broken")
'''


@pytest.fixture
def factory_file(tmp_path: Path) -> Path:
    path = tmp_path / "net.py"
    path.write_text(FACTORY)
    path.chmod(0o644)
    return path


def out_shape(model: nn.Module, size: int) -> tuple[int, ...]:
    model.eval()
    with torch.no_grad():
        return tuple(model(torch.zeros(2, 3, size, size)).shape)


def test_ladnet_through_the_registry_is_the_ladnet_of_before():
    """Same seed, same weights, bit for bit: the 2020 cells build the very network they built before."""
    torch.manual_seed(3)
    old = LadNet(29, 0.2, 64)
    torch.manual_seed(3)
    new = models.build_model("ladnet", 29, 64, dropout=0.2)
    assert type(new) is LadNet and new.dropout.p == 0.2
    assert old.state_dict().keys() == new.state_dict().keys()
    assert all(torch.equal(old.state_dict()[k], new.state_dict()[k]) for k in old.state_dict())


@pytest.mark.parametrize("classes", [2, 100])
def test_each_kind_builds_for_the_data_class_count(classes: int, factory_file: Path, monkeypatch):
    monkeypatch.syspath_prepend(str(factory_file.parent))
    specs = {"ladnet": 32, "torchvision:resnet18": 32, "net:make": 16, f"{factory_file}:make": 16}
    for spec, size in specs.items():
        model = models.build_model(spec, classes, size)
        assert out_shape(model, size) == (2, classes), spec
        assert models.spec_of(model).endswith(spec.split("/")[-1]), spec


def test_model_info_counts_parameters_and_flops_on_the_meta_device():
    info = models.model_info("ladnet", 29, 150)
    assert info["params"] == 544_713  # the paper's count for 29 classes at 150 px
    assert info["min_image_size"] == 30 and info["spec"] == "ladnet"
    # conv MACs x 2: 144^2*8*3*49 + 68^2*16*8*25 + 32^2*4*16*9 + fc 1024*512 + 512*29
    macs = 144**2 * 8 * 3 * 49 + 68**2 * 16 * 8 * 25 + 32**2 * 4 * 16 * 9 + 1024 * 512 + 512 * 29
    assert abs(info["flops_per_image"] - 2 * macs) / (2 * macs) < 0.01
    resnet = models.model_info("torchvision:resnet18", 1000, 224)
    assert resnet["params"] == 11_689_512 and 3.5e9 < resnet["flops_per_image"] < 3.8e9  # 1.8 GMACs
    assert "11,689,512 parameters" in models.describe(resnet)


@pytest.mark.parametrize(("spec", "says"), [
    ("resnet18", "is not a model spec"),
    ("torchvision:resnet1", "torchvision has no model 'resnet1'"),
    ("no_such_module_xyz:make", "model module 'no_such_module_xyz' was not found"),
    ("missing/net.py:make", "does not exist"),
])
def test_a_bad_spec_is_one_line_naming_what_was_not_found(spec: str, says: str):
    problem = models.check_model_spec(spec, 64)
    assert problem is not None and says in problem and "\n" not in problem, problem


def test_a_factory_that_fails_or_returns_no_module_is_one_line(factory_file: Path):
    for attr, says in (("nope", "defines no 'nope'"), ("not_a_module", "returned str, not a torch.nn.Module"),
                       ("broken", "RuntimeError: this factory is broken")):
        problem = models.check_model_spec(f"{factory_file}:{attr}", 32)
        assert problem is not None and says in problem and "\n" not in problem, problem


def test_the_image_size_floor_is_the_models():
    assert "at least 30" in models.check_model_spec("ladnet", 29)
    assert models.check_model_spec("ladnet", 30) is None
    assert models.check_model_spec("torchvision:resnet18", 16) is None
    with pytest.raises(ConfigError, match="image_size=16 .*>= 30 for model ladnet"):
        TrainConfig(data="d", out="o", image_size=16)
    assert TrainConfig(data="d", out="o", image_size=16, model="torchvision:resnet18").image_size == 16


def test_old_cells_keep_their_identity():
    """A cell written before ``model`` / ``split_group`` existed still matches (resume, submit's check)."""
    old = json.loads((FIXTURE / "config.json").read_text())
    assert "model" not in old and "split_group" not in old
    cfg = TrainConfig.from_dict(old)
    assert cfg.identity() == {k: v for k, v in old.items() if k in cfg.identity()}
    assert set(cfg.identity()) <= set(old)
    new = TrainConfig.from_dict({**old, "model": "torchvision:resnet18"})
    assert new.identity() != cfg.identity() and new.identity()["model"] == "torchvision:resnet18"


def test_best_model_names_its_network_and_rebuilds_it(tmp_path: Path):
    model = models.build_model("torchvision:resnet18", 3, 32)
    classes = ("apple", "bridge", "cloud")
    save_model(tmp_path / "best_model.pt", model, classes, image_size=32, interpolation="bicubic",
               dropout=0.2)
    blob = torch.load(tmp_path / "best_model.pt", weights_only=True)
    assert blob["model"] == "torchvision:resnet18" and blob["classes"] == list(classes)
    assert blob["preprocessing"]["resize"] == [32, 32] and blob["preprocessing"]["interpolation"] == "bicubic"
    loaded = load_model(tmp_path / "best_model.pt")
    assert loaded.spec == "torchvision:resnet18" and loaded.classes == classes
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    assert torch.equal(loaded.model(x), model(x))


def test_a_factory_file_others_can_write_is_not_run_by_load_model(tmp_path: Path, factory_file: Path):
    model = models.build_model(f"{factory_file}:make", 2, 16)
    save_model(tmp_path / "best_model.pt", model, ("a", "b"), image_size=16, interpolation="bilinear",
               dropout=0.2)
    assert load_model(tmp_path / "best_model.pt").spec == f"{factory_file.resolve()}:make"
    factory_file.chmod(0o666)
    try:
        with pytest.raises(AslhpcError, match="writable by others") as err:
            load_model(tmp_path / "best_model.pt")
        assert "\n" not in str(err.value)
    finally:
        os.chmod(factory_file, 0o644)


def test_batchnorm_folding_finds_conv_bn_pairs_by_graph_and_keeps_outputs(factory_file: Path):
    torch.manual_seed(0)
    resnet = models.build_model("torchvision:resnet18", 5, 32).eval()
    seq = models.build_model(f"{factory_file}:make", 5, 16).eval()
    pairs, _ = conv_bn_pairs(resnet)
    assert len(pairs) == 20 and ("conv1", "bn1") in pairs  # 17 convs + 3 downsample convs, each with a BN
    for model, size in ((resnet, 32), (seq, 16)):
        x = torch.randn(3, 3, size, size)
        with torch.no_grad():
            before = model(x)
            fused = fuse_batchnorm(model)
            assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
            assert torch.allclose(fused(x), before, atol=1e-4)


def test_batchnorm_folding_skips_with_a_line_when_there_is_nothing_to_fold(capsys):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    model(torch.zeros(1, 3, 8, 8))
    assert fuse_batchnorm(model) is model
    assert "BatchNorm folding skipped" in capsys.readouterr().err
