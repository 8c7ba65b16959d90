import pytest
import torch

from aslhpc.errors import AslhpcError
from aslhpc.training.devices import choose_precision, plan_devices


def test_auto_precision_is_fp32_on_cpu():
    p = choose_precision("auto", torch.device("cpu"))
    assert (p.name, p.dtype, p.scaler) == ("fp32", None, False)


@pytest.mark.parametrize("capability, expected, scaler", [((7, 0), "fp16", True), ((7, 5), "fp16", True),
                                                          ((8, 0), "bf16", False), ((9, 0), "bf16", False)])
def test_auto_precision_follows_the_gpu_generation(monkeypatch, capability, expected, scaler):
    # V100 (sm_70) has no bf16: fp16 needs a gradient scaler; Ampere (sm_80) and later use bf16.
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    p = choose_precision("auto", torch.device("cuda", 0))
    assert (p.name, p.scaler) == (expected, scaler)


def test_explicit_precision_is_honoured_and_scaler_only_for_cuda_fp16():
    assert choose_precision("fp32", torch.device("cuda", 0)).dtype is None
    assert choose_precision("bf16", torch.device("cpu")).dtype is torch.bfloat16
    assert choose_precision("fp16", torch.device("cpu")).scaler is False
    assert choose_precision("fp16", torch.device("cuda", 0)).scaler is True


def test_cpu_request_needs_no_gpu():
    plan = plan_devices(0, allow_cpu=False)
    assert plan.device.type == "cpu" and plan.gpus_used == 0 and plan.fallback is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_gpu_request_without_gpus_fails_or_falls_back_with_a_reason(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with pytest.raises(AslhpcError, match="2 GPU\\(s\\) requested, 0 visible.*--allow-cpu"):
        plan_devices(2, allow_cpu=False)
    plan = plan_devices(2, allow_cpu=True)
    assert plan.device.type == "cpu" and plan.gpus_requested == 2 and "CUDA_VISIBLE_DEVICES=0,1" in plan.fallback
