import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from fot_edu.faiss_search import ivf_lists
from fot_edu.memory import KNNMemory


def test_exact_search_equals_brute_force_topk():
    b, h, n, dh, cap, k = 2, 3, 5, 8, 40, 4
    mem = KNNMemory(b, h, dh, cap)
    keys, values = torch.randn(b, h, 30, dh), torch.randn(b, h, 30, dh)
    mem.add(keys, values, doc_ids=torch.tensor([7, 9]))
    q = torch.randn(b, h, n, dh)
    found = mem.search(q, k)
    scores = torch.einsum("bhnd,bhmd->bhnm", q, keys)
    ref_scores, ref_idx = scores.topk(k, dim=-1)
    assert_close(found.scores, ref_scores)
    assert torch.equal(found.indices, ref_idx)
    ref_keys = torch.stack([torch.stack([keys[i, j][ref_idx[i, j]] for j in range(h)]) for i in range(b)])
    assert_close(found.keys, ref_keys)
    assert torch.equal(mem.doc_ids_at(found.indices)[0], torch.full((h, n, k), 7))


def test_capacity_never_exceeded_and_oldest_go_first():
    b, h, dh, cap = 1, 1, 4, 10
    mem = KNNMemory(b, h, dh, cap)
    for step in range(7):  # 7 windows of 3 tokens = 21 items into 10 slots
        keys = torch.full((b, h, 3, dh), float(step))
        mem.add(keys, keys, doc_ids=torch.tensor([step]))
        assert len(mem) <= cap
    assert len(mem) == cap
    # items 11..20 survive: the last item of window 3 and all of windows 4, 5, 6
    kept = sorted(mem.keys[0, 0, :, 0].tolist())
    assert kept == [3.0] + [4.0] * 3 + [5.0] * 3 + [6.0] * 3
    assert sorted(mem.doc_ids[0].tolist()) == kept


def test_add_more_than_capacity_at_once_keeps_the_newest():
    mem = KNNMemory(1, 1, 1, 4)
    keys = torch.arange(10.0).view(1, 1, 10, 1)
    mem.add(keys, keys)
    assert sorted(mem.keys.flatten().tolist()) == [6.0, 7.0, 8.0, 9.0]


def test_clear_empties_only_the_named_rows():
    mem = KNNMemory(3, 2, 4, 8)
    mem.add(torch.randn(3, 2, 5, 4), torch.randn(3, 2, 5, 4))
    mem.clear([1])
    assert mem.sizes.tolist() == [5, 0, 5]
    found = mem.search(torch.randn(3, 2, 2, 4), 3)
    assert torch.isinf(found.scores[1]).all() and torch.isfinite(found.scores[[0, 2]]).all()


def test_k_larger_than_memory_gives_masked_slots():
    mem = KNNMemory(1, 1, 4, 16)
    mem.add(torch.randn(1, 1, 3, 4), torch.randn(1, 1, 3, 4))
    found = mem.search(torch.randn(1, 1, 2, 4), 8)
    assert found.scores.shape[-1] == 8
    assert found.scores.isfinite().sum(-1).tolist() == [[[3, 3]]]


def test_mask_skips_tokens():
    mem = KNNMemory(2, 1, 2, 8)
    mask = torch.tensor([[True, False, True], [False, False, False]])
    mem.add(torch.randn(2, 1, 3, 2), torch.randn(2, 1, 3, 2), mask=mask)
    assert mem.sizes.tolist() == [2, 0]


@pytest.mark.parametrize("backend", ["faiss", "faiss-hnsw", "faiss-ivf"])
def test_faiss_returns_the_same_neighbours_as_exact(backend):
    pytest.importorskip("faiss")
    b, h, dh = 2, 2, 16
    keys = torch.nn.functional.normalize(torch.randn(b, h, 200, dh), dim=-1)
    exact, other = KNNMemory(b, h, dh, 256), KNNMemory(b, h, dh, 256, backend=backend)
    for mem in (exact, other):
        mem.add(keys, keys)
    q = torch.nn.functional.normalize(torch.randn(b, h, 6, dh), dim=-1)
    a, f = exact.search(q, 5), other.search(q, 5)
    if backend in ("faiss", "faiss-ivf"):  # 200 keys < ivf_lists(256) train_size: still exact
        assert torch.equal(a.indices, f.indices)
        assert_close(a.scores, f.scores, atol=1e-5, rtol=1e-5)
    else:  # approximate: most neighbours found
        hits = (a.indices[..., None] == f.indices[..., None, :]).any(-1).float().mean()
        assert hits > 0.9


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="capacity=-1"):
        KNNMemory(1, 1, 4, -1)
    with pytest.raises(ValueError, match="backend='annoy'"):
        KNNMemory(1, 1, 4, 8, backend="annoy")
    with pytest.raises(ValueError, match="nprobe=0"):
        KNNMemory(1, 1, 4, 8, backend="faiss-ivf", nprobe=0)
    mem = KNNMemory(1, 2, 4, 8)
    with pytest.raises(ValueError, match="does not fit this memory"):
        mem.add(torch.randn(1, 2, 3, 5), torch.randn(1, 2, 3, 5))
    with pytest.raises(ValueError, match="k=0"):
        mem.search(torch.randn(1, 2, 3, 4), 0)


# -- faiss-ivf: incremental approximate index ------------------------------------------------------

@pytest.fixture
def one_faiss_thread():
    """These tests make hundreds of tiny faiss calls; OpenMP threads that wait for a busy core
    (a shared machine) made them 30x slower."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def unit(*shape, generator=None):
    return F.normalize(torch.randn(*shape, generator=generator), dim=-1)


def ivf_and_exact(b, h, dh, cap, **kw):  # faiss is a test dependency: no skip
    return KNNMemory(b, h, dh, cap, backend="faiss-ivf", **kw), KNNMemory(b, h, dh, cap)


def test_ivf_probing_every_list_equals_exact(one_faiss_thread):
    b, h, dh, cap = 2, 2, 16, 1024
    nlist, train_size = ivf_lists(cap)
    g = torch.Generator().manual_seed(0)
    ivf, exact = ivf_and_exact(b, h, dh, cap, nprobe=nlist)
    for start in range(0, cap + 300, 100):  # trained at train_size, then wraps around
        keys = unit(b, h, 100, dh, generator=g)
        for mem in (ivf, exact):
            mem.add(keys, keys)
    assert 1 < nlist < train_size <= cap and len(ivf.ivf_indexes) == b * h
    q = unit(b, h, 8, dh, generator=g)
    a, f = exact.search(q, 6), ivf.search(q, 6)
    assert torch.equal(a.indices, f.indices)
    assert_close(a.scores, f.scores, atol=1e-5, rtol=1e-5)
    assert_close(a.keys, f.keys)


def test_ivf_fifo_never_returns_an_evicted_key(one_faiss_thread):
    """Plant the key e_0 among keys orthogonal to it; once FIFO overwrites it, searching for
    e_0 must not find it, at any nprobe: the index dropped the old entry of that slot."""
    b, h, dh, cap = 2, 2, 16, 512
    g = torch.Generator().manual_seed(1)
    ivf, exact = ivf_and_exact(b, h, dh, cap)
    e0 = F.one_hot(torch.tensor(0), dh).float()
    q = e0.expand(b, h, 1, dh)
    seen = set()
    for step in range(40):  # 40 windows of 64 (a tenth masked out) into 512 slots: ~4 wraps
        keys = unit(b, h, 64, dh, generator=g)
        keys[..., 0] = 0.0
        keys = F.normalize(keys, dim=-1)
        if step % 10 == 0:
            keys[:, :, 5] = e0
        mask = torch.rand(b, 64, generator=g) > 0.1
        mask[:, 5] = True
        for mem in (ivf, exact):
            mem.add(keys, keys, mask=mask)
        held = exact.search(q, 1).scores[..., 0] > 0.5  # e_0 still stored in that (row, head)
        for nprobe in (1, ivf.nlist):  # e_0's stale entry would sit in the list probed first
            ivf.nprobe = nprobe
            found = ivf.search(q, 4)
            assert torch.equal(found.scores[..., 0] > 0.5, held), f"step {step}, nprobe {nprobe}"
            ok = found.scores.isfinite()  # every score is that of the key now in its slot
            now = torch.einsum("bhnkd,bhnd->bhnk", found.keys, q)
            assert_close(found.scores[ok], now[ok], atol=1e-5, rtol=1e-5)
        if ivf.ivf_indexes:
            seen.add(bool(held.all()))
        for (row, head), index in ivf.ivf_indexes.items():
            assert index.ntotal == int(ivf.sizes[row])
    assert seen == {True, False}  # trained while e_0 was stored, and after it was evicted
    assert len(ivf.ivf_indexes) == b * h and bool((ivf.sizes == cap).all())
    big = unit(b, h, cap + 100, dh, generator=g)  # more than capacity at once: every slot anew
    ivf.add(big, big)
    assert all(index.ntotal == cap for index in ivf.ivf_indexes.values())
    found = ivf.search(big[:, :, -3:], 1)  # the newest keys find themselves
    assert torch.equal(found.keys[..., 0, :], big[:, :, -3:])


def test_ivf_clear_then_refill_and_untrained_rows_are_exact(one_faiss_thread):
    b, h, dh, cap = 2, 2, 16, 512
    _, train_size = ivf_lists(cap)
    g = torch.Generator().manual_seed(2)
    ivf, exact = ivf_and_exact(b, h, dh, cap)
    keys = unit(b, h, cap, dh, generator=g)
    for mem in (ivf, exact):
        mem.add(keys, keys)
        mem.clear([1])
    assert sorted(ivf.ivf_indexes) == [(0, 0), (0, 1)]
    only_row_1 = torch.tensor([[False], [True]]).expand(b, 100)
    for start in range(0, cap, 100):
        keys = unit(b, h, 100, dh, generator=g)
        for mem in (ivf, exact):
            mem.add(keys, keys, mask=only_row_1)
        q = unit(b, h, 5, dh, generator=g)
        if int(ivf.sizes[1]) < train_size:  # row 1 not trained yet: exact answers
            assert (1, 0) not in ivf.ivf_indexes
            a, f = exact.search(q, 8), ivf.search(q, 8)
            assert torch.equal(a.indices[1], f.indices[1])
            assert_close(a.scores[1], f.scores[1], atol=1e-5, rtol=1e-5)
    assert int(ivf.sizes[1]) >= train_size and len(ivf.ivf_indexes) == b * h  # retrained
    assert all(index.ntotal == int(ivf.sizes[row]) for (row, _), index in ivf.ivf_indexes.items())


def test_ivf_recall_is_high_on_clustered_keys_not_on_random_ones(one_faiss_thread):
    """Default nprobe (16 of 105 lists): a query's neighbours sit in the few lists nearest to
    it when keys come in clusters (like a trained model's keys), not when they are uniform."""
    dh, cap, k = 32, 4096, 32
    g = torch.Generator().manual_seed(3)
    centers = unit(64, dh, generator=g)

    def mixture(count):  # unit vectors around 64 random centres
        which = torch.randint(len(centers), (count,), generator=g)
        return F.normalize(centers[which] + 0.15 * torch.randn(count, dh, generator=g), dim=-1)

    recalls = {}
    for kind, keys, q in (("clustered", mixture(cap), mixture(256)),
                          ("random", unit(cap, dh, generator=g), unit(256, dh, generator=g))):
        ivf, exact = ivf_and_exact(1, 1, dh, cap)
        for mem in (ivf, exact):
            mem.add(keys.view(1, 1, cap, dh), keys.view(1, 1, cap, dh))
        assert len(ivf.ivf_indexes) == 1 and ivf.nprobe == 16 < ivf.nlist
        a, f = exact.search(q.view(1, 1, -1, dh), k), ivf.search(q.view(1, 1, -1, dh), k)
        hits = (a.indices[..., None] == f.indices[..., None, :]).any(-1)  # (1, 1, 256, k)
        recalls[kind] = float(hits.float().mean())
    assert recalls["clustered"] >= 0.9, recalls
    assert recalls["random"] < recalls["clustered"] - 0.1, recalls
