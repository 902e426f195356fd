import pytest
import torch
from torch.testing import assert_close

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


@pytest.mark.parametrize("backend", ["faiss", "faiss-hnsw"])
def test_faiss_returns_the_same_neighbours_as_exact(backend):
    pytest.importorskip("faiss")
    b, h, dh = 2, 2, 16
    keys = torch.nn.functional.normalize(torch.randn(b, h, 200, dh), dim=-1)
    exact, other = KNNMemory(b, h, dh, 256), KNNMemory(b, h, dh, 256, backend=backend)
    for mem in (exact, other):
        mem.add(keys, keys)
    q = torch.nn.functional.normalize(torch.randn(b, h, 6, dh), dim=-1)
    a, f = exact.search(q, 5), other.search(q, 5)
    if backend == "faiss":
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
    mem = KNNMemory(1, 2, 4, 8)
    with pytest.raises(ValueError, match="does not fit this memory"):
        mem.add(torch.randn(1, 2, 3, 5), torch.randn(1, 2, 3, 5))
    with pytest.raises(ValueError, match="k=0"):
        mem.search(torch.randn(1, 2, 3, 4), 0)
