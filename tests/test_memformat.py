"""--probe-memory-format: both formats timed on the cell's own model and batch, the faster trained in,
the choice recorded and kept across a resume; nothing the training draws or learns is disturbed."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import torch

from aslhpc.training import trainer
from aslhpc.training.config import TrainConfig
from aslhpc.training.memformat import probe_memory_format
from aslhpc.training.model import LadNet


def test_the_probe_times_both_formats_and_leaves_model_and_rng_alone() -> None:
    torch.manual_seed(0)
    model = LadNet(5, image_size=64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(8, 3, 64, 64), torch.randint(0, 5, (8,))
    rng = torch.get_rng_state()
    info = probe_memory_format(model, (x, y), torch.device("cpu"), None, all_sum=lambda t: t, steps=1)
    assert info["chosen"] in ("channels_last", "contiguous") and info["chosen_by"] == "probe"
    faster = min(info["step_ms"], key=info["step_ms"].get)
    assert info["chosen"] == faster and all(v > 0 for v in info["step_ms"].values())
    assert torch.equal(torch.get_rng_state(), rng)  # dropout in the probe drew nothing training will
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_ranks_agree_on_the_summed_timings() -> None:
    """Every rank adds all ranks' timings (all_sum) and so picks the same format."""
    model = LadNet(5, image_size=64)
    x, y = torch.randn(4, 3, 64, 64), torch.randint(0, 5, (4,))
    # another rank found contiguous far slower: the sum decides for channels_last on every rank
    skew = torch.tensor([0.0, 1e6], dtype=torch.float64)
    info = probe_memory_format(model, (x, y), torch.device("cpu"), None, all_sum=lambda t: t + skew, steps=1)
    assert info["chosen"] == "channels_last"


def _parts(channels_last: bool) -> SimpleNamespace:
    return SimpleNamespace(train=SimpleNamespace(channels_last=channels_last),
                           val=SimpleNamespace(channels_last=channels_last),
                           test=SimpleNamespace(channels_last=channels_last))


def test_a_resumed_attempt_trains_in_the_format_its_epochs_began_with() -> None:
    cfg = TrainConfig(data="d", out="o", pipeline="fast", probe_memory_format=True)
    cell = SimpleNamespace(cfg=cfg, setup={}, say=lambda m: None)
    model = SimpleNamespace(bare=LadNet(5).to(memory_format=torch.channels_last))
    data = _parts(True)
    progress = trainer.Progress(memory_format="contiguous")
    trainer.choose_memory_format(cell, data, model, progress)
    assert cell.setup["memory_format"] == {"chosen": "contiguous", "chosen_by": "checkpoint"}
    assert not data.train.channels_last and not data.test.channels_last
    conv = next(m for m in model.bare.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous()  # not channels_last


def test_a_probed_cell_records_its_choice_and_timings(synth_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "cell"
    cfg = TrainConfig(data=str(synth_root), out=str(out), gpus=0, batch_size=16, epochs=1, lr=0.01,
                      cache_dir=str(tmp_path / "cache"), log_every=0, workers=0, max_steps=2,
                      pipeline="fast", probe_memory_format=True, sample_interval_s=0.2)
    result = trainer.run_cell(cfg, log=lambda m: None)
    fmt = result["memory_format"]
    assert fmt["chosen_by"] == "probe" and set(fmt["step_ms"]) == {"channels_last", "contiguous"}
    assert result["channels_last"] == (fmt["chosen"] == "channels_last")
    assert json.loads((out / "result.json").read_text())["memory_format"] == fmt
    plain = trainer.run_cell(TrainConfig(**{**cfg.to_dict(), "out": str(tmp_path / "plain"),
                                            "probe_memory_format": False}), log=lambda m: None)
    assert plain["memory_format"] == {"chosen": "channels_last", "chosen_by": "config"}
