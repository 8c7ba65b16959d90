"""The fast pipeline's memory decisions and batching (CPU-checkable parts)."""

import torch

from aslhpc.training.pipelines import TensorBatches, fits_on_device, rank_slice


def test_data_goes_on_the_gpu_only_when_it_takes_at_most_half_the_free_memory(monkeypatch):
    gib = 1 << 30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (10 * gib, 32 * gib))
    cuda = torch.device("cuda", 0)
    assert fits_on_device(5 * gib, cuda)
    assert not fits_on_device(6 * gib, cuda)  # -> pinned host memory with non-blocking copies
    assert fits_on_device(10**12, torch.device("cpu"))


def test_rank_slices_cover_every_item_once():
    for n in (0, 1, 7, 128, 129):
        for world in (1, 2, 3, 4):
            parts = [rank_slice(n, r, world) for r in range(world)]
            covered = [i for s in parts for i in range(n)[s]]
            assert covered == list(range(n))
            assert max(len(range(n)[s]) for s in parts) - min(len(range(n)[s]) for s in parts) <= 1


def _batches(n=10, **kw):
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 2, 2, 3).contiguous()
    return TensorBatches(images, torch.arange(n), torch.device("cpu"), batch_size=4, shuffle=True, seed=1, **kw)


def test_shuffle_depends_only_on_seed_and_epoch_and_covers_the_split():
    a, b = _batches(), _batches()
    ys = [y.tolist() for _, y, _ in a.epoch(3)]
    assert ys == [y.tolist() for _, y, _ in b.epoch(3)]  # resumable: same (seed, epoch) -> same order
    assert ys != [y.tolist() for _, y, _ in a.epoch(4)]
    assert sorted(sum(ys, [])) == list(range(10))


def test_ddp_ranks_split_each_global_batch_and_report_its_size():
    r0, r1 = _batches(rank=0, world=2), _batches(rank=1, world=2)
    for (x0, y0, n0), (_x1, y1, n1) in zip(r0.epoch(0), r1.epoch(0), strict=True):
        assert n0 == n1 == len(y0) + len(y1)
        assert not set(y0.tolist()) & set(y1.tolist())
        assert x0.shape[1] == 3 and x0.dtype == torch.float32  # NCHW, normalised on the device


def test_paper_sampler_gives_every_ddp_rank_equal_steps_and_a_share_of_each_global_batch():
    from aslhpc.training.pipelines import GlobalBatchSampler

    n, batch = 1281, 128  # 10 full global batches + 1 of 1: dropped under DDP, else one rank gets nothing
    ranks = [list(GlobalBatchSampler(n, batch, True, seed=0, epoch=2, rank=r, world=2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 10
    single = list(GlobalBatchSampler(n, batch, True, seed=0, epoch=2))
    assert len(single) == 11
    for step, (a, b) in enumerate(zip(*ranks, strict=True)):
        assert sorted(a + b) == sorted(single[step])  # the same global batch as one process, split in two
