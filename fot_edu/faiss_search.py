r"""The faiss backends of :class:`fot_edu.memory.KNNMemory`: which slots hold a query's top-k keys.

The keys and values stay in the memory's torch buffers, so FIFO eviction and ``clear`` are the
memory's own; a :class:`FaissIndexes` keeps one faiss index per (batch row, head) over those
buffers and answers searches with the same ``(scores, indices)`` as the exact path. faiss is
imported only when a faiss backend is asked for (``pip install 'fot-edu[faiss]'``).

* ``"faiss"``: an exact flat index; ``"faiss-hnsw"``: an approximate graph index. Both are
  rebuilt from the buffers on the first search after every ``add``: fine for a memory that is
  filled once and searched often, too slow for streaming, which adds after every window.
* ``"faiss-ivf"``: approximate and **incremental**, for streaming with a large memory. IVF
  (inverted file) runs k-means once to cut the key space into ``nlist`` cells, one centroid
  each, and files every key in the list of its nearest centroid. A query is compared with the
  centroids, then only with the keys of the ``nprobe`` lists whose centroids score highest:
  about ``nprobe / nlist`` of the memory instead of all of it. A true neighbour is missed when
  it lies in a list that was not probed, so recall depends on the keys being **clustered**:
  real model keys are (a query and its neighbours fall in the same few cells), random unit
  vectors are not (their neighbours are spread over many cells, and recall drops). ``nprobe``
  (``KNNMemory``'s keyword, default 16; ``memory.nprobe`` may change between searches) trades
  speed for recall; ``nprobe >= nlist`` searches every list, i.e. exactly.
  One index per (row, head), with ids = slot indices; ``nlist`` follows :func:`ivf_lists`. A
  row's indexes are trained the first time the row holds ``39 nlist`` keys, on a sample of that
  many; until then the row is searched exactly (flat index). After that ``add`` is incremental:
  the slots FIFO overwrites are removed from the index (a hash table from id to list makes that
  cheap), the new keys added. ``reset(rows)`` (the memory's ``clear``) drops those rows'
  indexes; refilled, they train again.
"""
from __future__ import annotations

import torch

FAISS_BACKENDS = ("faiss", "faiss-hnsw", "faiss-ivf")
IVF_KEYS_PER_LIST = 39  # faiss's minimum of training points per k-means centroid
IVF_MAX_LISTS = 1024  # k-means work grows as nlist^2: ~1 s a (row, head) on one core at 1024


def ivf_lists(capacity: int) -> tuple[int, int]:
    """faiss-ivf's rule: ``(nlist, train_size)`` for a memory of ``capacity`` slots per row.

    A query scans about ``nlist`` centroids plus ``nprobe * capacity / nlist`` keys, least at
    ``nlist = sqrt(nprobe * capacity)``: ``4 sqrt(capacity)`` for nprobe 16. Two caps: at most
    ``capacity // 39``, so that a row holds 39 training keys per list; at most 1024, because
    k-means grows with ``nlist^2`` and runs for every (row, head), again after each ``clear``.
    A row is trained once it holds ``train_size = 39 * nlist`` keys. Below 39 slots
    ``train_size > capacity``: such a memory is always searched exactly. E.g. 4,096 slots:
    105 lists, trained at 4,095 keys; 65,536 or more: 1,024 lists, trained at 39,936 keys.
    """
    nlist = max(1, min(round(4 * capacity ** 0.5), capacity // IVF_KEYS_PER_LIST, IVF_MAX_LISTS))
    return nlist, IVF_KEYS_PER_LIST * nlist


def import_faiss():
    """The ``faiss`` module, or an ImportError that says how to install it."""
    try:
        import faiss
    except ImportError as err:
        raise ImportError("the faiss backends need faiss-cpu: pip install 'fot-edu[faiss]'") from err
    return faiss


class FaissIndexes:
    """One faiss index per (row, head) over a memory's key buffer ``(b, h, capacity, dh)``.

    It holds no keys of its own: every call receives the buffer and the per-row ``sizes``
    (rows fill from slot 0, so a row's items are its slots ``0..size-1``), and indexes store
    slot indices as ids.
    """

    def __init__(self, backend: str, head_dim: int, capacity: int):
        if backend not in FAISS_BACKENDS:
            raise ValueError(f"backend={backend!r} is not allowed: one of {FAISS_BACKENDS}")
        import_faiss()  # fail now, with the install hint, not at the first search
        self.backend, self.head_dim = backend, head_dim
        self.nlist, self.train_size = ivf_lists(capacity)  # faiss-ivf only
        self.ivf: dict = {}  # faiss-ivf: (row, head) -> trained IndexIVFFlat, ids = slots
        self._built: dict = {}  # (row, head) -> flat/HNSW index, dropped when the row changes

    def add(self, keys: torch.Tensor, sizes: torch.Tensor, rows: torch.Tensor,
            slots: torch.Tensor, old_sizes: torch.Tensor) -> None:
        """The memory wrote ``keys[rows, :, slots]``; rows held ``old_sizes`` items before.

        Flat/HNSW indexes of those rows are dropped (rebuilt at the next search). faiss-ivf: a
        trained (row, head) removes the slots' old keys (FIFO) and indexes their new ones; a row
        now holding ``train_size`` keys gets its indexes trained.
        """
        self._drop_built(set(rows.tolist()))
        if self.backend != "faiss-ivf":
            return
        for row in rows.unique().tolist():
            written = slots[rows == row]  # distinct slots
            if (row, 0) not in self.ivf:
                if int(sizes[row]) >= self.train_size:
                    for head in range(keys.shape[1]):
                        self.ivf[row, head] = self._train_ivf(keys[row, head, :int(sizes[row])])
                continue
            overwritten = written[written < old_sizes[row]].cpu().numpy()  # slots that held a key
            new_keys = keys[row][:, written].float().cpu().numpy()  # (h, s, dh)
            ids = written.cpu().numpy()
            for head in range(keys.shape[1]):
                index = self.ivf[row, head]
                if overwritten.size:  # first: an id must never be in the index twice
                    index.remove_ids(overwritten)
                index.add_with_ids(new_keys[head], ids)

    def reset(self, rows) -> None:
        """Forget the indexes of ``rows`` (row numbers), emptied by the memory's ``clear``."""
        rows = set(rows)
        self._drop_built(rows)
        self.ivf = {rh: ix for rh, ix in self.ivf.items() if rh[0] not in rows}

    def search(self, keys: torch.Tensor, sizes: torch.Tensor, queries: torch.Tensor, k: int,
               nprobe: int = 16):
        """``(scores, indices)`` ``(b, h, n, k)`` for queries ``(b, h, n, dh)``, like the exact
        search: missing neighbours (a short row; IVF: fewer than ``k`` keys in the probed lists)
        come back with score ``-inf`` and index 0. ``nprobe``: lists probed by faiss-ivf."""
        b, h, n, _ = queries.shape
        scores = torch.full((b, h, n, k), float("-inf"))
        indices = torch.zeros((b, h, n, k), dtype=torch.long)
        q_np = queries.detach().float().cpu().numpy()
        for row in range(b):
            size = int(sizes[row])
            if size == 0:
                continue
            for head in range(h):
                index = self._index(keys, row, head, size, nprobe)
                found_scores, found = index.search(q_np[row, head], min(k, size))
                found_scores, found = torch.from_numpy(found_scores), torch.from_numpy(found).long()
                kk = found.shape[1]
                scores[row, head, :, :kk] = found_scores.masked_fill(found < 0, float("-inf"))
                indices[row, head, :, :kk] = found.clamp(min=0)  # faiss's -1: no item
        return scores.to(queries.device), indices.to(queries.device)

    def _index(self, keys: torch.Tensor, row: int, head: int, size: int, nprobe: int):
        """The index that answers for (row, head): its trained IVF index (faiss-ivf), else a
        flat or HNSW index of the row's ``size`` items, built on first use after an ``add``."""
        index = self.ivf.get((row, head))
        if index is not None:
            index.nprobe = nprobe
            return index
        index = self._built.get((row, head))
        if index is None:
            faiss = import_faiss()
            if self.backend == "faiss-hnsw":
                index = faiss.IndexHNSWFlat(self.head_dim, 32, faiss.METRIC_INNER_PRODUCT)
            else:  # "faiss", and "faiss-ivf" rows whose index is not trained yet: exact
                index = faiss.IndexFlatIP(self.head_dim)
            index.add(keys[row, head, :size].float().cpu().numpy())  # ids 0..size-1 = slots
            self._built[(row, head)] = index
        return index

    def _train_ivf(self, row_keys: torch.Tensor):
        """A trained ``IndexIVFFlat`` over one (row, head)'s keys ``(size, dh)``, slots as ids
        (k-means on 39 keys per list)."""
        faiss = import_faiss()
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(self.head_dim), self.head_dim, self.nlist,
                                   faiss.METRIC_INNER_PRODUCT)
        index.cp.max_points_per_centroid = IVF_KEYS_PER_LIST  # faiss samples train_size keys
        row_keys = row_keys.float().cpu().numpy()
        index.train(row_keys)
        index.set_direct_map_type(faiss.DirectMap.Hashtable)  # id -> (list, offset): cheap removal
        index.add_with_ids(row_keys, torch.arange(len(row_keys)).numpy())
        return index

    def _drop_built(self, rows: set) -> None:
        self._built = {rh: ix for rh, ix in self._built.items() if rh[0] not in rows}
