"""Keeping freed host memory: after the call, big allocations stop page-faulting (in a fresh process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from aslhpc.training.hostmem import _glibc_mallopt, retain_freed_memory, user_tuned_malloc

PAGE_FAULTS_PER_ALLOC = 40 * 2**20 // 4096  # a 40 MiB tensor (over glibc's 32 MiB mmap cap) = 10,240 pages

# Run in a fresh interpreter: the setting lasts for the whole process, so pytest's own process
# (where other tests train cells) cannot show the default behaviour any more.
PROBE = """
import json, resource, torch
from aslhpc.training.hostmem import retain_freed_memory

def faults(rounds=6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        t = torch.empty(10 * 2**20)  # 40 MiB
        t.fill_(1.0)
        del t
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

default = faults()
what = retain_freed_memory()
faults(12)  # the heap grows for a few rounds (aligned blocks miss the hole an equal one left), then holds
print(json.dumps({"default": default, "what": what, "kept": faults(), "again": retain_freed_memory()}))
"""


@pytest.mark.skipif(_glibc_mallopt() is None, reason="needs glibc's mallopt")
def test_after_the_call_big_allocations_stop_page_faulting():
    env = {k: v for k, v in os.environ.items()
           if k not in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_",
                        "MALLOC_TOP_PAD_",
                        "GLIBC_TUNABLES")}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120,
                         check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["default"] > 4 * PAGE_FAULTS_PER_ALLOC  # by default every round maps fresh pages
    assert r["what"].startswith("glibc mallopt") and r["again"] == r["what"]  # calling twice is harmless
    assert r["kept"] < PAGE_FAULTS_PER_ALLOC // 4  # the same pages serve every round


def test_disabled_and_user_tuned_leave_the_allocator_alone(monkeypatch):
    assert retain_freed_memory(False) == "off"
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "0")
    assert user_tuned_malloc()
    assert "environment" in retain_freed_memory()
    assert user_tuned_malloc({"GLIBC_TUNABLES": "glibc.malloc.mmap_max=0"})
    assert not user_tuned_malloc({"GLIBC_TUNABLES": "glibc.pthread.rseq=0"})
