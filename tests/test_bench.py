"""The benchmark prints both pipelines' figures from one run and ends with their ratio (values not
asserted)."""

import re

import pytest

from aslhpc.bench import main


def test_bench_prints_both_pipelines_and_the_ratio_last(capsys, cache_dir):
    assert main(["--per-class", "3", "--steps", "2", "--batch-size", "8", "--workers", "0"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("device: CPU") and "2 steps after 2 untimed warm-up steps" in lines[0]
    paper = next(ln for ln in lines if ln.startswith("paper"))
    fast = next(ln for ln in lines if ln.startswith("fast"))
    figures = [float(re.search(r"([\d.]+) images/s", ln).group(1)) for ln in (paper, fast)]
    assert all(f > 0 for f in figures)
    assert "host memory off" in paper and "host memory off" not in fast  # each in its own process
    assert re.fullmatch(r"ratio \d+\.\d\d", lines[-1])
    assert abs(float(lines[-1].split()[1]) - figures[1] / figures[0]) < 0.01 + 0.01 * figures[1] / figures[0]


def test_the_timed_figure_is_the_epoch_after_the_warm_up():
    """Issue 19.10: lazy library loading and cudnn autotuning (fast pipeline only) stay out of the figure."""
    from aslhpc.bench import timed_figures

    result = {"config": {"max_steps": 20}, "images_per_s": 50.0, "train_time_s": 9.0}
    epochs = [{"images_per_s": 10.0, "train_s": 8.0}, {"images_per_s": 90.0, "train_s": 1.0}]
    assert timed_figures(result, epochs) == {"images_per_s": 90.0, "train_time_s": 1.0, "warmup_epochs": 1}
    assert timed_figures({"config": {"max_steps": 0}}, epochs) == {"warmup_epochs": 0}  # --full: whole cells


def test_bench_times_the_users_own_model(capsys, cache_dir, tmp_path):
    """Issue 23: bench runs what a cell of *your* experiment runs, your network included."""
    factory = tmp_path / "net.py"
    factory.write_text("from torch import nn\n\n"
                       "def make(num_classes, image_size):\n"
                       "    side = 3 * image_size * image_size\n"
                       "    return nn.Sequential(nn.Flatten(), nn.Linear(side, num_classes))\n")
    assert main(["--per-class", "3", "--steps", "2", "--batch-size", "8", "--workers", "0",
                 "--model", f"{factory}:make", "--image-size", "32"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert f"model {factory}:make" in lines[0]
    assert re.fullmatch(r"ratio \d+\.\d\d", lines[-1])


def test_a_bad_model_is_one_line_before_any_data_is_made(capsys, tmp_path):
    with pytest.raises(SystemExit) as stop:
        main(["--model", f"{tmp_path / 'missing.py'}:make"])
    assert stop.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: --model ") and "missing.py" in line
