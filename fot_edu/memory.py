r"""kNN memory: a per-(row, head) store of (key, value) pairs searched by inner product.

Paper: Focused Transformer §3.1 (memory attention with kNN lookup) and §6; the Memorizing
Transformer (Wu et al. 2022) introduced the store.

At inference a memory layer processes a long input window by window. Before a window's own keys
are added, each of its queries looks up the ``k`` memory keys with the largest inner product

.. math:: \operatorname{top\text{-}k}_j\; q \cdot m_j ,

and attends to them beside its local keys (``fot_edu.attention.memory_attention``). Because FoT
normalises queries and keys, the inner product is a cosine: the search is a cosine search.

Each (batch row, head) has its own store: rows are independent documents (or document streams),
and heads look at different features. The store is a ring buffer of ``capacity`` slots: when it
is full the **oldest** entries are overwritten first (FIFO). ``clear(rows)`` empties some rows,
e.g. when a row's document ends in single-document evaluation. Beside every key the store keeps
the id of the document it came from, so a plot can colour retrieved keys by document.

Backends: ``"exact"`` is a batched ``matmul + topk`` in torch (the reference). The others run the
search in faiss, imported only when asked for; the keys and values stay in the same torch
buffers, so FIFO and ``clear`` are shared, and faiss only answers "which slots":

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
  (keyword, default 16; ``memory.nprobe`` may change between searches) trades speed for
  recall; ``nprobe >= nlist`` searches every list, i.e. exactly.
  One index per (row, head), with ids = slot indices. Rule (``ivf_lists``): ``nlist`` is about
  ``4 sqrt(capacity)``, where a query's work is least, but at most ``capacity / 39`` (39
  training keys per list, faiss's minimum) and at most 1024 (k-means cost). A row's indexes
  are trained the first time the row holds ``39 nlist`` keys, on a sample of that many; until
  then the row is searched exactly (flat index). After that ``add`` is incremental: the slots
  FIFO overwrites are removed from the index (a hash table from id to list makes that cheap),
  the new keys added. ``clear(rows)`` drops those rows' indexes; refilled, they train again.

Stored keys are detached: memory is never part of the autograd graph.

Search results: with ``k`` larger than a row's stored items the missing neighbours come back
with score ``-inf`` (use ``scores.isfinite()`` as the attention mask); ``k`` itself is clamped to
the capacity.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

BACKENDS = ("exact", "faiss", "faiss-hnsw", "faiss-ivf")
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


class SearchResult(NamedTuple):
    keys: torch.Tensor  # (b, h, n, k, dh)
    values: torch.Tensor  # (b, h, n, k, dh)
    scores: torch.Tensor  # (b, h, n, k); -inf where the row holds fewer than k items
    indices: torch.Tensor  # (b, h, n, k) slot indices, for doc_ids_at()


class KNNMemory:
    """Ring-buffer kNN store of shape ``(b, h, capacity, dh)`` with exact or faiss search.

    ``nprobe``: lists searched per query by the ``"faiss-ivf"`` backend (ignored by the others).
    """

    def __init__(self, batch_size: int, num_heads: int, head_dim: int, capacity: int,
                 backend: str = "exact", device=None, dtype=torch.float32, *, nprobe: int = 16):
        for name, value in (("batch_size", batch_size), ("num_heads", num_heads),
                            ("head_dim", head_dim), ("capacity", capacity), ("nprobe", nprobe)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} is not allowed: a positive integer")
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r} is not allowed: one of {BACKENDS}")
        if backend.startswith("faiss"):
            _import_faiss()
        self.batch_size, self.num_heads, self.head_dim = batch_size, num_heads, head_dim
        self.capacity, self.backend = capacity, backend
        shape = (batch_size, num_heads, capacity, head_dim)
        self.keys = torch.zeros(shape, device=device, dtype=dtype)
        self.values = torch.zeros(shape, device=device, dtype=dtype)
        self.doc_ids = torch.full((batch_size, capacity), -1, dtype=torch.long, device=device)
        self.sizes = torch.zeros(batch_size, dtype=torch.long, device=device)  # items per row
        self.write_pos = torch.zeros(batch_size, dtype=torch.long, device=device)  # next slot
        self._faiss_cache: dict = {}  # (row, head) -> flat/HNSW index, dropped at every add
        self.nprobe = nprobe  # faiss-ivf: lists searched per query
        self.nlist, self.train_size = ivf_lists(capacity)  # faiss-ivf: see ivf_lists()
        self.ivf_indexes: dict = {}  # faiss-ivf: (row, head) -> trained IndexIVFFlat, ids = slots

    def __len__(self) -> int:
        """Items in the fullest row."""
        return int(self.sizes.max())

    @property
    def valid(self) -> torch.Tensor:
        """``(b, capacity)`` bool: which slots hold an item."""
        slots = torch.arange(self.capacity, device=self.sizes.device)
        return slots[None, :] < self.sizes[:, None]

    def add(self, keys: torch.Tensor, values: torch.Tensor, doc_ids=None, mask=None) -> None:
        """Append ``keys``/``values`` ``(b, h, n, dh)``; ``mask`` ``(b, n)`` False skips a token.

        ``doc_ids``: ``(b,)`` or ``(b, n)`` document id of each token (default -1). When a row
        is full the oldest slots are overwritten.
        """
        b, h, n, dh = self._check(keys, "keys")
        if values.shape != keys.shape:
            raise ValueError(f"values {tuple(values.shape)} must match keys {tuple(keys.shape)}")
        for name, x in (("keys", keys), ("values", values)):
            if not bool(torch.isfinite(x).all()):  # one NaN key would poison every later search
                raise ValueError(f"{name} contain {int((~torch.isfinite(x)).sum())} NaN/inf "
                                 f"entries: only finite values may enter the memory")
        device = self.keys.device
        if mask is None:
            mask = torch.ones(b, n, dtype=torch.bool, device=device)
        mask = mask.to(device=device, dtype=torch.bool)
        if doc_ids is None:
            doc_ids = torch.full((b, n), -1, dtype=torch.long, device=device)
        doc_ids = torch.as_tensor(doc_ids, device=device).long()
        if doc_ids.dim() == 1:
            doc_ids = doc_ids[:, None].expand(b, n)
        count = mask.sum(dim=1)  # (b,)
        rank = mask.long().cumsum(dim=1) - 1  # position of each kept token in its row
        keep = mask & (rank >= (count - self.capacity)[:, None])  # only the last `capacity`
        rows, tok = keep.nonzero(as_tuple=True)
        slot = (self.write_pos[rows] + rank[rows, tok] - (count[rows] - self.capacity).clamp(min=0))
        slot = slot % self.capacity
        old_sizes = self.sizes.clone()
        self.keys[rows, :, slot] = keys.detach().to(device, self.keys.dtype)[rows, :, tok]
        self.values[rows, :, slot] = values.detach().to(device, self.values.dtype)[rows, :, tok]
        self.doc_ids[rows, slot] = doc_ids[rows, tok]
        stored = count.clamp(max=self.capacity)
        self.write_pos = (self.write_pos + stored) % self.capacity
        self.sizes = (self.sizes + stored).clamp(max=self.capacity)
        self._faiss_cache.clear()
        if self.backend == "faiss-ivf":
            self._update_ivf(rows, slot, old_sizes)

    def clear(self, rows=None) -> None:
        """Empty the named rows (an int, a list, or a ``(b,)`` bool mask); all rows if None."""
        if rows is None:
            rows = torch.ones(self.batch_size, dtype=torch.bool)
        rows = torch.as_tensor(rows, device=self.sizes.device)
        if rows.dtype != torch.bool:
            if rows.numel() and (rows.min() < 0 or rows.max() >= self.batch_size):
                raise ValueError(f"rows={rows.tolist()} is not allowed: indices in 0..{self.batch_size - 1}")
            rows = torch.zeros(self.batch_size, dtype=torch.bool, device=self.sizes.device).index_fill(
                0, rows.flatten().long(), True)
        self.sizes[rows] = 0
        self.write_pos[rows] = 0
        self.doc_ids[rows] = -1
        self._faiss_cache.clear()
        cleared = set(rows.nonzero().flatten().tolist())  # faiss-ivf: retrained when refilled
        self.ivf_indexes = {rh: ix for rh, ix in self.ivf_indexes.items() if rh[0] not in cleared}

    def search(self, queries: torch.Tensor, k: int) -> SearchResult:
        """The ``k`` stored keys with the largest inner product with each query ``(b, h, n, dh)``."""
        b, h, n, dh = self._check(queries, "queries")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k={k!r} is not allowed: a positive integer")
        k = min(k, self.capacity)
        if self.backend == "exact":
            scores, indices = self._exact_search(queries, k)
        else:
            scores, indices = self._faiss_search(queries, k)
        gather = indices[..., None].expand(b, h, n, k, dh).flatten(2, 3)  # (b, h, n*k, dh)
        keys = self.keys.gather(2, gather).view(b, h, n, k, dh)
        values = self.values.gather(2, gather).view(b, h, n, k, dh)
        return SearchResult(keys, values, scores, indices)

    def _exact_search(self, queries: torch.Tensor, k: int):
        """``matmul + topk`` over the filled slots only; empty slots (rows shorter than the
        fullest one, or ``k`` beyond it) come back with score ``-inf`` and index 0."""
        used = len(self)  # slots 0..used-1 hold every row's items (rows fill from slot 0)
        scores = queries.to(self.keys.dtype) @ self.keys[:, :, :used].transpose(-1, -2)  # (b, h, n, used)
        if bool((self.sizes < used).any()):  # in place: no second copy of the score matrix
            scores.masked_fill_(~self.valid[:, None, None, :used], float("-inf"))
        scores, indices = scores.topk(min(k, used), dim=-1)  # (b, h, n, <=k)
        if indices.shape[-1] < k:
            missing = k - indices.shape[-1]
            scores = F.pad(scores, (0, missing), value=float("-inf"))
            indices = F.pad(indices, (0, missing), value=0)
        return scores, indices

    def doc_ids_at(self, indices: torch.Tensor) -> torch.Tensor:
        """Document id of each slot index from :meth:`search`, same shape as ``indices``."""
        b = indices.shape[0]
        flat = indices.reshape(b, -1)
        return self.doc_ids.gather(1, flat).view_as(indices)

    def all_items(self):
        """Every slot as shared memory: keys/values ``(b, h, capacity, dh)`` and a ``(b, capacity)``
        validity mask. This is dense memory attention's view (k = all memory)."""
        return self.keys, self.values, self.valid

    def _check(self, x: torch.Tensor, name: str):
        if x.dim() != 4:
            raise ValueError(f"{name} must be (b, h, n, dh), got shape {tuple(x.shape)}")
        b, h, n, dh = x.shape
        if (b, h, dh) != (self.batch_size, self.num_heads, self.head_dim):
            raise ValueError(f"{name} of shape {tuple(x.shape)} does not fit this memory: expected "
                             f"(b, h, n, dh) = ({self.batch_size}, {self.num_heads}, n, {self.head_dim})")
        if not x.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}")
        return b, h, n, dh

    def _faiss_search(self, queries: torch.Tensor, k: int):
        b, h, n, _ = queries.shape
        scores = torch.full((b, h, n, k), float("-inf"))
        indices = torch.zeros((b, h, n, k), dtype=torch.long)
        q_np = queries.detach().float().cpu().numpy()
        for row in range(b):
            size = int(self.sizes[row])
            if size == 0:
                continue
            for head in range(h):
                index = self._faiss_index(row, head, size)
                found_scores, found = index.search(q_np[row, head], min(k, size))
                kk = found.shape[1]
                scores[row, head, :, :kk] = torch.from_numpy(found_scores)
                indices[row, head, :, :kk] = torch.from_numpy(found).long().clamp(min=0)
                # -1: no item (IVF: fewer than k keys in the probed lists)
                scores[row, head, :, :kk][torch.from_numpy(found) < 0] = float("-inf")
        return scores.to(queries.device), indices.to(queries.device)

    def _faiss_index(self, row: int, head: int, size: int):
        """The index that answers for (row, head): its trained IVF index (faiss-ivf), else a
        flat or HNSW index of the row's ``size`` items, built on first use after an ``add``."""
        index = self.ivf_indexes.get((row, head))
        if index is not None:
            index.nprobe = self.nprobe
            return index
        index = self._faiss_cache.get((row, head))
        if index is None:
            faiss = _import_faiss()
            if self.backend == "faiss-hnsw":
                index = faiss.IndexHNSWFlat(self.head_dim, 32, faiss.METRIC_INNER_PRODUCT)
            else:  # "faiss", and "faiss-ivf" rows whose index is not trained yet: exact
                index = faiss.IndexFlatIP(self.head_dim)
            index.add(self.keys[row, head, :size].float().cpu().numpy())  # ids 0..size-1 = slots
            self._faiss_cache[(row, head)] = index
        return index

    def _update_ivf(self, rows: torch.Tensor, slots: torch.Tensor, old_sizes: torch.Tensor) -> None:
        """faiss-ivf after ``add`` wrote ``slots`` of ``rows``: a trained (row, head) removes the
        slots' old keys (FIFO) and indexes their new ones; a row now holding ``train_size``
        keys gets its indexes trained."""
        for row in rows.unique().tolist():
            written = slots[rows == row]  # distinct slots
            if (row, 0) not in self.ivf_indexes:
                if int(self.sizes[row]) >= self.train_size:
                    for head in range(self.num_heads):
                        self.ivf_indexes[row, head] = self._train_ivf(row, head)
                continue
            overwritten = written[written < old_sizes[row]].cpu().numpy()  # slots that held a key
            new_keys = self.keys[row][:, written].float().cpu().numpy()  # (h, s, dh)
            ids = written.cpu().numpy()
            for head in range(self.num_heads):
                index = self.ivf_indexes[row, head]
                if overwritten.size:  # first: an id must never be in the index twice
                    index.remove_ids(overwritten)
                index.add_with_ids(new_keys[head], ids)

    def _train_ivf(self, row: int, head: int):
        """A trained ``IndexIVFFlat`` over the row's keys (k-means on 39 keys per list)."""
        faiss = _import_faiss()
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(self.head_dim), self.head_dim, self.nlist,
                                   faiss.METRIC_INNER_PRODUCT)
        index.cp.max_points_per_centroid = IVF_KEYS_PER_LIST  # faiss samples train_size keys
        keys = self.keys[row, head, :int(self.sizes[row])].float().cpu().numpy()
        index.train(keys)
        index.set_direct_map_type(faiss.DirectMap.Hashtable)  # id -> (list, offset): cheap removal
        index.add_with_ids(keys, torch.arange(len(keys)).numpy())
        return index


def _import_faiss():
    try:
        import faiss
    except ImportError as err:
        raise ImportError("the faiss backends need faiss-cpu: pip install 'fot-edu[faiss]'") from err
    return faiss
