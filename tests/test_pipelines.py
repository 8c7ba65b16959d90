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
    return TensorBatches(images, torch.arange(n), torch.device("cpu"), batch_size=4, shuffle=True, seed=1,
                         **kw)


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


def test_tensor_batches_length_is_its_loop_bound_when_the_last_global_batch_is_smaller_than_the_world():
    """Issue 11.4: n % batch in [1, world-1] under DDP: the last global batch is dropped by both pipelines."""
    from aslhpc.training.pipelines import GlobalBatchSampler

    for n, batch, world in ((9, 4, 2), (10, 4, 3), (9, 4, 3), (13, 4, 4)):
        assert 1 <= n % batch <= world - 1
        for rank in range(world):
            b = _batches(n, rank=rank, world=world)
            steps = list(b.epoch(1))
            assert len(b) == len(steps) == n // batch, (n, batch, world)
            sampler = GlobalBatchSampler(n, 4, True, seed=1, epoch=1, rank=rank, world=world)
            assert [y.tolist() for _, y, _ in steps] == list(sampler)  # one rule for both pipelines
    assert len(_batches(9, rank=0, world=1)) == len(list(_batches(9).epoch(0))) == 3


def test_the_shuffle_is_a_cpu_permutation_whatever_the_data_device():
    """Issue 19 (low): the order is made on the CPU from (seed, epoch) and copied once per epoch."""
    from aslhpc.training.pipelines import GlobalBatchSampler, epoch_generator

    assert epoch_generator(1, 3).device.type == "cpu"
    order = GlobalBatchSampler(10, 4, True, seed=1, epoch=3).order()
    assert order.device.type == "cpu"
    assert torch.cat([y for _, y, _ in _batches().epoch(3)]).tolist() == order.tolist()


def test_split_tensors_are_filled_in_chunks_and_host_ones_are_not_page_locked():
    """Issue 19.6: no whole-split copy; issue 25.10: a split kept in host memory for a CUDA run is plain
    memory (batches are staged in two small pinned buffers), never a page-locked whole split."""
    import numpy as np

    from aslhpc.training.pipelines import fill_rows, tensor_data

    images = np.arange(50 * 2 * 2 * 3, dtype=np.uint8).reshape(50, 2, 2, 3)

    class Counting:  # the memory-mapped cache: records how many rows each read materialises
        shape = images.shape
        biggest = 0

        def __getitem__(self, rows):
            Counting.biggest = max(Counting.biggest, len(rows))
            return images[rows]

    rows = np.array([3, 1, 4, 15, 9, 26, 5, 35, 8, 49])
    dst = torch.empty((len(rows), 2, 2, 3), dtype=torch.uint8)
    fill_rows(dst, Counting(), rows, chunk=3)
    assert Counting.biggest == 3 and torch.equal(dst, torch.from_numpy(images[rows]))
    x, y = tensor_data(images, rows, np.arange(50) % 7, torch.device("meta"), on_device=False)
    assert y.device.type == "meta" and x.device.type == "cpu"
    original = torch.Tensor.to
    try:
        torch.Tensor.to = lambda self, *a, **k: self  # labels "to the GPU" on a machine without one
        x, y = tensor_data(images, rows, np.arange(50) % 7, torch.device("cuda", 0), on_device=False)
    finally:
        torch.Tensor.to = original
    assert x.device.type == "cpu" and not x.is_pinned()
    assert torch.equal(x, torch.from_numpy(images[rows]))
