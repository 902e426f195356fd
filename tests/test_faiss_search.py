"""fot_edu.faiss_search, the seam under KNNMemory's faiss backends: its indexes stay in step with
the memory's buffers through interleaved adds, clears and FIFO wrap-around, its slot ids stay
right, and without faiss the error names the install extra."""
import sys

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from fot_edu.faiss_search import ivf_lists
from fot_edu.memory import KNNMemory


@pytest.fixture
def faiss_one_thread():
    """Many tiny faiss calls: OpenMP threads waiting for a busy core make them much slower."""
    faiss = pytest.importorskip("faiss")
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def unit(*shape, generator):
    return F.normalize(torch.randn(*shape, generator=generator), dim=-1)


@pytest.mark.parametrize("backend", ["faiss", "faiss-hnsw", "faiss-ivf"])
def test_indexes_follow_adds_to_single_rows_clears_and_wraps(backend, faiss_one_thread):
    """Each step writes one row only (the others' indexes must stay, the written row's must
    change), some steps clear a row; IVF probes every list, so all three must match exact."""
    b, h, dh, cap = 3, 2, 16, 160
    nlist, train_size = ivf_lists(cap)
    g = torch.Generator().manual_seed(0)
    mem, exact = KNNMemory(b, h, dh, cap, backend=backend, nprobe=nlist), KNNMemory(b, h, dh, cap)
    assert mem.search(unit(b, h, 2, dh, generator=g), 4).scores.isinf().all()  # empty store
    trained = set()
    for step in range(24):  # 24 windows of 40 into rows in turn: each row wraps ~2 times
        keys = unit(b, h, 40, dh, generator=g)
        mask = torch.zeros(b, 40, dtype=torch.bool)
        mask[step % b] = True
        for m in (mem, exact):
            m.add(keys, keys, mask=mask)
            if step == 13:
                m.clear([0])
        trained |= {row for row, _ in mem.ivf_indexes}
        q = torch.cat([keys[:, :, :3], unit(b, h, 3, dh, generator=g)], dim=2)  # stored + new
        want, got = exact.search(q, 5), mem.search(q, 5)
        if backend == "faiss-hnsw":  # approximate: a stored key still finds itself
            mine = mask[:, 0]
            assert torch.equal(got.indices[mine][:, :, :3, 0], want.indices[mine][:, :, :3, 0])
        else:
            found = want.scores.isfinite()  # under -inf the exact path's index is arbitrary
            assert torch.equal(got.scores.isfinite(), found), f"step {step}"
            assert torch.equal(got.indices[found], want.indices[found]), f"step {step}"
            assert_close(got.scores[found], want.scores[found], atol=1e-5, rtol=1e-5)
    if backend == "faiss-ivf":  # the IVF path really ran, retrained row 0 after its clear
        assert 1 < nlist and train_size <= cap and trained == {0, 1, 2}


def test_ivf_every_stored_key_finds_its_own_slot_after_wraps(faiss_one_thread):
    """At nprobe 1 a stored key, as query, probes exactly the list it was filed in: its slot
    comes back first, for every slot, after FIFO has overwritten each slot several times."""
    b, h, dh, cap = 2, 1, 16, 1024
    g = torch.Generator().manual_seed(1)
    mem = KNNMemory(b, h, dh, cap, backend="faiss-ivf", nprobe=1)
    for _ in range(9):  # 9 x 300 into 1024 slots: ~2.6 wraps
        keys = unit(b, h, 300, dh, generator=g)
        mem.add(keys, keys)
    assert len(mem.ivf_indexes) == b * h and mem.nlist > 1
    found = mem.search(mem.keys, 1)  # every slot's key as a query
    slots = torch.arange(cap).expand(b, h, cap)
    assert torch.equal(found.indices[..., 0], slots)
    assert_close(found.scores[..., 0], torch.ones(b, h, cap), atol=1e-5, rtol=1e-5)


def test_missing_faiss_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now raises ImportError
    with pytest.raises(ImportError, match=r"faiss-cpu: pip install 'fot-edu\[faiss\]'"):
        KNNMemory(1, 1, 4, 8, backend="faiss-ivf")
    exact = KNNMemory(1, 1, 4, 8)  # the exact store never needs faiss
    exact.add(torch.randn(1, 1, 3, 4), torch.randn(1, 1, 3, 4))
    assert exact.search(torch.randn(1, 1, 2, 4), 2).scores.isfinite().all()
