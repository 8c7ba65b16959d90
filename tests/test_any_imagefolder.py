"""Issue 23 end to end: an ImageFolder the package has never seen (other class names, PNG files without
frame numbers), any model spec, any class count; and the 2020 LadNet cell unchanged bit for bit."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from aslhpc.data import scan_dataset
from aslhpc.data.layout import IMAGEFOLDER, KAGGLE
from aslhpc.data.split import FILE_ORDER, FRAME_ORDER, make_split
from aslhpc.data.synth import imagefolder_classes, write_dataset, write_imagefolder
from aslhpc.errors import DataError
from aslhpc.orchestration.experiment import REPO_JOBS, load_spec
from aslhpc.orchestration.submission import check_submission
from aslhpc.predict import main as predict_main
from aslhpc.train import main as train_main
from aslhpc.training.config import TrainConfig
from aslhpc.training.trainer import run_cell

SMALL_CNN = '''
from torch import nn


def make(num_classes, image_size):
    """No BatchNorm: learns the generated shapes in a few dozen steps, whatever the batch statistics."""
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(64, num_classes))
'''


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 classes x 40 PNGs, 32 px, named shot-aaa.png ...: no ASL name, no frame number."""
    return write_imagefolder(tmp_path_factory.mktemp("data") / "shapes", 3, 40, seed=1, image_size=32)


@pytest.fixture(scope="module")
def factory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("code") / "net.py"
    path.write_text(SMALL_CNN)
    path.chmod(0o644)
    return path


def config(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(data=str(data), out=str(out), gpus=0, epochs=4, lr=0.05, momentum=0.9, batch_size=16,
                image_size=32, pipeline="fast", cache_dir=str(out.parent / "cache"), log_every=0,
                sample_interval_s=0.5, cpu_threads=1)
    return TrainConfig(**{**base, **kw})


def test_a_plain_imagefolder_is_scanned_in_sorted_class_order(folder: Path):
    idx = scan_dataset(folder)
    assert idx.layout == IMAGEFOLDER and idx.classes == ("apple", "bridge", "cloud") and len(idx) == 120
    assert idx.files[:2] == ("apple/shot-aaa.png", "apple/shot-aab.png") and idx.test_files == ()
    assert idx.labels == tuple(k for k in range(3) for _ in range(40))


def test_any_class_names_sort_and_one_class_is_an_error(tmp_path: Path):
    for name in ("zebra", "Aardvark", "mid"):
        (tmp_path / "d" / name).mkdir(parents=True)
        (tmp_path / "d" / name / "x.webp").write_bytes(b"")
    assert scan_dataset(tmp_path / "d").classes == ("Aardvark", "mid", "zebra")  # sorted(), as torchvision
    (tmp_path / "one" / "cats").mkdir(parents=True)
    (tmp_path / "one" / "cats" / "c.png").write_bytes(b"")
    with pytest.raises(DataError, match="only one class folder") as err:
        scan_dataset(tmp_path / "one")
    assert "\n" not in str(err.value)


def test_a_users_classes_named_partly_like_asl_ones_are_an_imagefolder_with_a_line(tmp_path: Path, capsys):
    for name in ("A", "B", "cats"):
        (tmp_path / "d" / name).mkdir(parents=True)
        (tmp_path / "d" / name / "x.png").write_bytes(b"")
    idx = scan_dataset(tmp_path / "d")
    assert idx.layout == IMAGEFOLDER and idx.classes == ("A", "B", "cats")
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and "'cats' is not an ASL class" in warning[0], warning
    (tmp_path / "kaggle" / "asl_alphabet_train" / "cats").mkdir(parents=True)  # the Kaggle layout's folder
    (tmp_path / "kaggle" / "asl_alphabet_train" / "A").mkdir()
    for name in ("cats", "A"):
        (tmp_path / "kaggle" / "asl_alphabet_train" / name / "x.png").write_bytes(b"")
    with pytest.raises(DataError, match="unknown class folder 'cats' in the Kaggle layout"):
        scan_dataset(tmp_path / "kaggle")


def test_the_kaggle_layout_keeps_its_canonical_order_and_test_folder(synth_root: Path):
    idx = scan_dataset(synth_root)
    assert idx.layout == KAGGLE and idx.classes[-3:] == ("del", "nothing", "space") and idx.test_files


def test_blocked_split_says_which_order_it_followed(folder: Path, synth_root: Path):
    assert make_split(scan_dataset(folder), "blocked").order == FILE_ORDER
    assert make_split(scan_dataset(synth_root), "blocked").order == FRAME_ORDER
    split = make_split(scan_dataset(folder), "blocked")
    assert split.to_dict()["order"] == FILE_ORDER and split.sizes() == (108, 9, 3)  # per class 36 / 3 / 1


@pytest.mark.parametrize("kind", ["random", "blocked"])
def test_a_group_regex_keeps_each_group_on_one_side(tmp_path: Path, kind: str):
    """Recording id = the part before "_": all of a recording's frames land in one part."""
    rng = np.random.default_rng(0)
    for cls in ("left", "right"):
        (tmp_path / cls).mkdir()
        for rec in range(12):
            for _ in range(int(rng.integers(3, 7))):
                (tmp_path / cls / f"rec{rec:02d}_{rng.integers(1e9):x}z.png").write_bytes(b"")
    idx = scan_dataset(tmp_path)
    split = make_split(idx, kind, seed=4, group=r"^(rec\d+)_")
    side = {}
    for part, rows in (("train", split.train), ("val", split.val), ("test", split.test)):
        for r in rows:
            key = idx.files[r].split("_")[0]
            assert side.setdefault(key, part) == part, f"{key} is in {side[key]} and {part}"
    assert len(split.train) + len(split.val) + len(split.test) == len(idx) and len(split.val) > 0
    assert split.hash != make_split(idx, kind, seed=4).hash and split.to_dict()["group"] == r"^(rec\d+)_"
    assert make_split(idx, kind, seed=4).hash == make_split(idx, kind, seed=4, group="").hash


def test_a_factory_file_learns_an_unseen_imagefolder_and_predict_scores_it(folder: Path, factory: Path,
                                                                            tmp_path: Path, capsys):
    out = tmp_path / "cell"
    result = run_cell(config(folder, out, model=f"{factory}:make", seed=2), log=lambda m: None)
    assert result["val_acc"] >= 75, result["val_acc"]  # 12 validation images, chance 33%
    assert result["config"]["model"] == f"{factory}:make"
    capsys.readouterr()
    assert predict_main(["--model", str(out / "best_model.pt"), str(folder)]) == 0
    report = capsys.readouterr().out
    assert "accuracy" in report and all(f"{c} " in report for c in ("apple", "bridge", "cloud")), report


def test_a_torchvision_model_learns_the_folder_by_the_issues_command(tmp_path: Path, capsys) -> None:
    """The done-when command as typed. A BatchNorm network needs some images per class (3 x 150 here;
    docs/install.md says why), then it learns the folder in 4 epochs."""
    data = write_imagefolder(tmp_path / "shapes", 3, 150, seed=1, image_size=32)
    out = tmp_path / "OUT"
    command = ["--data", str(data), "--model", "torchvision:resnet18", "--image-size", "32", "--epochs", "4",
               "--lr", "0.05", "--momentum", "0.9", "--batch-size", "64", "--gpus", "0", "--pipeline", "fast",
               "--out", str(out)]
    quiet = ["--cpu-threads", "1", "--log-every", "0", "--cache-dir", str(tmp_path / "cache")]
    assert train_main(command + quiet) == 0, capsys.readouterr().err
    result = json.loads((out / "result.json").read_text())
    assert result["val_acc"] >= 75, result["val_acc"]  # 44 validation images, chance 33%
    model = result["model"]
    assert model["spec"] == "torchvision:resnet18" and model["params"] == 11_178_051  # fc has 3 outputs
    assert model["classes"] == ["apple", "bridge", "cloud"] and model["flops_per_image"] > 0
    assert model["preprocessing"] == {"resize": [32, 32], "interpolation": "bilinear", "channels": "RGB",
                                      "scale": "1/255", "mean": [0.5] * 3, "std": [0.5] * 3}
    assert result["split"]["order"] == "seeded shuffle" and result["split"]["group"] == ""
    blob = torch.load(out / "best_model.pt", weights_only=True)
    assert blob["model"] == "torchvision:resnet18" and blob["classes"] == ["apple", "bridge", "cloud"]
    assert blob["state_dict"]["fc.weight"].shape == (3, 512)
    assert blob["preprocessing"] == model["preprocessing"]  # one description of what is done to an image


def test_a_model_that_cannot_run_at_the_image_size_stops_train_before_any_work(folder: Path, tmp_path: Path,
                                                                               capsys) -> None:
    net = tmp_path / "big.py"
    net.write_text("from torch import nn\n\n\ndef make(num_classes, image_size):  # sized for 64 px images\n"
                   "    return nn.Sequential(nn.Conv2d(3, 8, 5), nn.Flatten(),\n"
                   "                         nn.Linear(8 * 60 * 60, num_classes))\n")
    net.chmod(0o644)
    out = tmp_path / "OUT"
    code = train_main(["--data", str(folder), "--model", f"{net}:make", "--image-size", "32", "--gpus", "0",
                       "--out", str(out), "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: model ") and "32 px" in err[0], err
    assert not out.exists() and not (tmp_path / "cache").exists()  # no cell folder, no cache built


@pytest.mark.parametrize("classes", [2, 100])
def test_class_counts_2_and_100_give_matching_outputs_and_labels(tmp_path: Path, factory: Path, classes: int):
    data = write_imagefolder(tmp_path / "data", classes, 3 if classes == 100 else 20, image_size=8)
    idx = scan_dataset(data)
    assert idx.classes == imagefolder_classes(classes) and max(idx.labels) == classes - 1
    out = tmp_path / "cell"
    run_cell(config(data, out, model=f"{factory}:make", epochs=1, image_size=8, batch_size=64),
             log=lambda m: None)
    blob = torch.load(out / "best_model.pt", weights_only=True)
    assert len(blob["classes"]) == classes and blob["state_dict"]["7.weight"].shape == (classes, 64)


def test_an_experiment_with_a_torchvision_model_passes_the_dry_run_checks(folder: Path, tmp_path: Path):
    spec = replace(load_spec(REPO_JOBS / "resnet18-scaling.toml"), data=str(folder),
                   results=str(tmp_path / "res"))
    assert spec.train.model == "torchvision:resnet18"
    notes: list[str] = []
    problems, _ = check_submission(spec, "local", dry_run=True, torch_info=lambda: None, notes=notes)
    assert problems == []
    # what submit prints before any job: the model built once (meta device) for the 3 classes at 128 px
    assert notes == ["model torchvision:resnet18: 11,178,051 parameters, 1.18 GFLOPs per image"], notes
    bad = replace(spec, train=replace(spec.train, model="torchvision:resnet9000"))
    problems, _ = check_submission(bad, "local", dry_run=True, torch_info=lambda: None)
    assert len(problems) == 1 and "torchvision has no model 'resnet9000'" in problems[0], problems


# The same cell run by the ORIGINAL code (main at 3295eb7, PYTHONPATH=/work/main):
#   python -m aslhpc.data.synth data --per-class 8 --image-size 32 --seed 3
#   python -m aslhpc.train --data data --out out --gpus 0 --epochs 1 --image-size 30 --batch-size 32 \
#       --pipeline fast --cpu-threads 1 --cache-dir cache --log-every 0 --seed 5
# with torch 2.14.1+cu130 on one x86-64 machine. Its float32 sums differ in the last place on another CPU
# (another vector width, another summation order), so the figures are compared to float32 precision; that
# the registry builds the very network with the very initial weights is checked bit for bit below, on
# whatever machine runs the test.
BASELINE_TORCH = "2.14.1+cu130"
BASELINE_SPLIT = "90c174d10f83790bdef7ed13764c4444b03559bad53c6a2712ab3b93eb35f219"
BASELINE_METRICS = {"train_loss": 3.370295529249238, "val_loss": 3.397327423095703,
                    "test_loss": 3.341719055175781, "train_acc": 3.902439024390244, "val_acc": 0.0,
                    "test_acc": 0.0, "best_epoch": 1}


def test_the_registrys_ladnet_is_the_2020_network_with_the_same_initial_weights() -> None:
    from aslhpc.training.model import LadNet
    from aslhpc.training.models import build_model

    torch.manual_seed(5)
    direct = LadNet(29)
    torch.manual_seed(5)
    built = build_model("ladnet", 29, 150)
    assert repr(built) == repr(direct)
    a, b = direct.state_dict(), built.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.skipif(torch.__version__ != BASELINE_TORCH, reason=f"figures from torch {BASELINE_TORCH}")
def test_a_2020_ladnet_cell_matches_the_code_before_the_registry(tmp_path: Path):
    data = write_dataset(tmp_path / "data", 8, seed=3, image_size=32)
    out = tmp_path / "out"
    cfg = TrainConfig(data=str(data), out=str(out), gpus=0, epochs=1, image_size=30, batch_size=32,
                      pipeline="fast", cpu_threads=1, cache_dir=str(tmp_path / "cache"), log_every=0, seed=5)
    result = run_cell(cfg, log=lambda m: None)
    assert {k: result[k] for k in BASELINE_METRICS} == pytest.approx(BASELINE_METRICS, rel=1e-6, abs=1e-9)
    assert result["split"]["hash"] == BASELINE_SPLIT
    assert json.loads((out / "config.json").read_text())["model"] == "ladnet"
