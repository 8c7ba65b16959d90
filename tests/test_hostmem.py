"""Keeping freed host memory: big allocations stop page-faulting inside the block, and only there."""

from __future__ import annotations

import resource

import pytest
import torch

from aslhpc.hostmem import _glibc_mallopt, retain_freed_memory, user_tuned_malloc

glibc = pytest.mark.skipif(_glibc_mallopt() is None, reason="needs glibc's mallopt")
PAGE_FAULTS_PER_ALLOC = 40 * 2**20 // 4096  # a 40 MiB tensor (over glibc's 32 MiB mmap cap) = 10,240 pages


def faults_for_repeated_big_allocations(rounds: int = 6) -> int:
    """Minor page faults while allocating, filling and freeing a 40 MiB tensor ``rounds`` times."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        t = torch.empty(10 * 2**20)
        t.fill_(1.0)
        del t
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@glibc
def test_inside_the_block_big_allocations_stop_page_faulting(monkeypatch):
    for k in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_",
              "GLIBC_TUNABLES"):
        monkeypatch.delenv(k, raising=False)
    default = faults_for_repeated_big_allocations()
    assert default > 4 * PAGE_FAULTS_PER_ALLOC  # every round maps fresh pages
    with retain_freed_memory() as what:
        assert what.startswith("glibc mallopt")
        # The heap grows for a few rounds (64-byte-aligned blocks do not fit the hole an equal block
        # left) and then holds still: a training loop's steady state.
        faults_for_repeated_big_allocations(12)
        kept = faults_for_repeated_big_allocations()
    assert kept < PAGE_FAULTS_PER_ALLOC // 4  # the same pages serve every round


def test_disabled_and_user_tuned_leave_the_allocator_alone(monkeypatch):
    with retain_freed_memory(False) as what:
        assert what == "off"
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "0")
    assert user_tuned_malloc()
    with retain_freed_memory() as what:
        assert "environment" in what
    assert user_tuned_malloc({"GLIBC_TUNABLES": "glibc.malloc.mmap_max=0"})
    assert not user_tuned_malloc({"GLIBC_TUNABLES": "glibc.pthread.rseq=0"})
