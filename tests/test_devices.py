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
    assert plan.device.type == "cpu" and plan.gpus_requested == 2
    assert "CUDA_VISIBLE_DEVICES=0,1" in plan.fallback


def _fake_gpus(monkeypatch, n: int, capability: tuple[int, int], arch: list[str]) -> None:
    from aslhpc.training import devices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=None: "Tesla V100-SXM2-32GB")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=None: capability)
    monkeypatch.setattr(devices, "cuda_arch_list", lambda: list(arch))


CU130 = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]


def test_a_gpu_this_torch_has_no_kernels_for_fails_or_falls_back_before_training(monkeypatch):
    """Issue 19.2: a cu130 torch on a V100 sees the GPU (is_available() is True) but cannot run a kernel."""
    _fake_gpus(monkeypatch, 2, (7, 0), CU130)
    with pytest.raises(AslhpcError) as err:
        plan_devices(2, allow_cpu=False)
    msg = str(err.value)
    assert "\n" not in msg and "--allow-cpu" in msg
    assert "no kernels for GPU 0 (Tesla V100-SXM2-32GB, sm_70)" in msg
    plan = plan_devices(2, allow_cpu=True)
    assert plan.device.type == "cpu" and plan.gpus_used == 0 and "sm_70" in plan.fallback
    ddp_rank = plan_devices(1, allow_cpu=True, local_rank=1)
    assert ddp_rank.device.type == "cpu"
    _fake_gpus(monkeypatch, 2, (9, 0), CU130)
    assert plan_devices(2, allow_cpu=False).device_ids == (0, 1)


def test_a_rank_that_fell_back_to_the_cpu_joins_with_gloo_not_nccl(monkeypatch):
    """Issue 19.8: the process-group backend follows the device plan, not torch.cuda.is_available()."""
    from aslhpc.training.devices import process_group_backend

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)  # rank 2 of 3 on a 2-GPU node
    plan = plan_devices(3, allow_cpu=True, local_rank=2)
    assert plan.device.type == "cpu" and process_group_backend(plan) == "gloo"
