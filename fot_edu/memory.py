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

Backends: ``"exact"`` (this file) is a batched ``matmul + topk`` in torch, the reference. The
faiss backends (``"faiss"``, ``"faiss-hnsw"``, ``"faiss-ivf"``) live in ``fot_edu/faiss_search.py``:
they answer only "which slots", over the same buffers, so FIFO and ``clear`` are shared.

Stored keys are detached: memory is never part of the autograd graph.

Search results: with ``k`` larger than a row's stored items the missing neighbours come back
with score ``-inf`` (use ``scores.isfinite()`` as the attention mask); ``k`` itself is clamped to
the capacity.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from fot_edu.faiss_search import FAISS_BACKENDS, FaissIndexes, ivf_lists

BACKENDS = ("exact",) + FAISS_BACKENDS
__all__ = ["BACKENDS", "KNNMemory", "SearchResult", "fifo_slots"]


def fifo_slots(write_pos, n, capacity: int) -> torch.Tensor:
    """The ring-buffer slots that a write of ``n`` items starting at slot ``write_pos`` fills.

    Returns ``(n,)`` long: ``slots[t]`` is where item ``t`` goes, counting on from ``write_pos``
    and wrapping around at ``capacity`` (the oldest items are overwritten first). With
    ``n > capacity`` only the last ``capacity`` items are stored, starting at ``write_pos``; the
    first ``n - capacity`` get slot ``-1`` (never written). ``write_pos`` and ``n`` may also be
    ``(b,)`` tensors (one write per row): then ``(b, max n)``, ``-1`` past a row's own ``n``.
    """
    write_pos, n = torch.as_tensor(write_pos), torch.as_tensor(n)
    t = torch.arange(int(n.max()) if n.numel() else 0, device=write_pos.device)
    write_pos, n = write_pos[..., None], n[..., None].to(write_pos.device)
    dropped = (n - capacity).clamp(min=0)  # the oldest items of an over-long write
    slots = (write_pos + t - dropped) % capacity
    return slots.masked_fill((t < dropped) | (t >= n), -1)


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
        self.batch_size, self.num_heads, self.head_dim = batch_size, num_heads, head_dim
        self.capacity, self.backend = capacity, backend
        shape = (batch_size, num_heads, capacity, head_dim)
        self.keys = torch.zeros(shape, device=device, dtype=dtype)
        self.values = torch.zeros(shape, device=device, dtype=dtype)
        self.doc_ids = torch.full((batch_size, capacity), -1, dtype=torch.long, device=device)
        self.sizes = torch.zeros(batch_size, dtype=torch.long, device=device)  # items per row
        self.write_pos = torch.zeros(batch_size, dtype=torch.long, device=device)  # next slot
        self.nprobe = nprobe  # faiss-ivf: lists searched per query; may change between searches
        # the faiss backends' indexes over self.keys (None: exact search, this file)
        self.faiss_indexes = None if backend == "exact" else FaissIndexes(backend, head_dim, capacity)

    @classmethod
    def holding(cls, keys: torch.Tensor, values: torch.Tensor, doc_ids: torch.Tensor) -> "KNNMemory":
        """A full exact memory of exactly ``keys``/``values`` ``(b, h, m, dh)`` with ``doc_ids``
        ``(b, m)``, in that slot order. It shares their storage (no copy, no NaN check: they
        came out of memories already), so evaluation can assemble many memories from windows
        computed once; adding to it would write into them."""
        b, h, m, dh = keys.shape
        if values.shape != keys.shape or tuple(doc_ids.shape) != (b, m):
            raise ValueError(f"values {tuple(values.shape)} and doc_ids {tuple(doc_ids.shape)} "
                             f"must match keys {tuple(keys.shape)} and (b, m) = {(b, m)}")
        memory = cls(b, h, dh, 1, device=keys.device, dtype=keys.dtype)
        memory.capacity, memory.keys, memory.values, memory.doc_ids = m, keys, values, doc_ids
        memory.sizes = torch.full((b,), m, dtype=torch.long, device=keys.device)
        return memory

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
        slots = F.pad(fifo_slots(self.write_pos, count, self.capacity), (0, n), value=-1)
        token_slot = slots.gather(1, rank.clamp(min=0))  # (b, n); -1: only the last `capacity`
        keep = mask & (token_slot >= 0)
        rows, tok = keep.nonzero(as_tuple=True)
        slot = token_slot[rows, tok]
        old_sizes = self.sizes.clone()
        self.keys[rows, :, slot] = keys.detach().to(device, self.keys.dtype)[rows, :, tok]
        self.values[rows, :, slot] = values.detach().to(device, self.values.dtype)[rows, :, tok]
        self.doc_ids[rows, slot] = doc_ids[rows, tok]
        stored = count.clamp(max=self.capacity)
        self.write_pos = (self.write_pos + stored) % self.capacity
        self.sizes = (self.sizes + stored).clamp(max=self.capacity)
        if self.faiss_indexes is not None:
            self.faiss_indexes.add(self.keys, self.sizes, rows, slot, old_sizes)

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
        if self.faiss_indexes is not None:  # faiss-ivf: retrained when refilled
            self.faiss_indexes.reset(rows.nonzero().flatten().tolist())

    def search(self, queries: torch.Tensor, k: int) -> SearchResult:
        """The ``k`` stored keys with the largest inner product with each query ``(b, h, n, dh)``."""
        b, h, n, dh = self._check(queries, "queries")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k={k!r} is not allowed: a positive integer")
        k = min(k, self.capacity)
        if self.faiss_indexes is None:
            scores, indices = self._exact_search(queries, k)
        else:
            scores, indices = self.faiss_indexes.search(self.keys, self.sizes, queries, k, self.nprobe)
        gather = indices[..., None].expand(b, h, n, k, dh).flatten(2, 3)  # (b, h, n*k, dh)
        keys = self.keys.gather(2, gather).view(b, h, n, k, dh)
        values = self.values.gather(2, gather).view(b, h, n, k, dh)
        return SearchResult(keys, values, scores, indices)

    def _exact_search(self, queries: torch.Tensor, k: int):
        """``matmul + topk`` over the filled slots only; empty slots (rows shorter than the
        fullest one, or ``k`` beyond it) come back with score ``-inf`` (and a meaningless index:
        some slot of a shorter row, 0 beyond the fullest)."""
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

    # -- faiss-ivf's state (fot_edu/faiss_search.py), read by tests ------------------------------

    @property
    def ivf_indexes(self) -> dict:
        """faiss-ivf: ``(row, head) -> trained IndexIVFFlat`` (ids = slots); else empty."""
        return self.faiss_indexes.ivf if self.faiss_indexes is not None else {}

    @property
    def nlist(self) -> int:
        """faiss-ivf: inverted lists per (row, head) index, by :func:`ivf_lists`."""
        return ivf_lists(self.capacity)[0]
