"""Exercises of the kNN memory notebooks: which keys a query retrieves, where a write goes.

``knn_search`` (§3.1: the top-k memory keys by inner product) and ``fifo_slots`` (the ring
buffer that ``fot_edu.memory.KNNMemory`` writes, first in, first out). See ``fot_edu.teaching.exercises``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fot_edu.memory import fifo_slots as _library_fifo_slots
from fot_edu.teaching.assignments import Exercise, randn, to_tensor

__all__ = ["knn_search", "fifo_slots"]


# -- knn_search (§3.1) --------------------------------------------------------------------------

def _knn_cases() -> list[dict]:
    gen = torch.Generator().manual_seed(2)
    shapes = [(2, 3, 5, 12, 8, 4), (1, 2, 6, 9, 3, 2), (1, 2, 3, 7, 4, 7), (1, 1, 1, 5, 8, 1)]
    return [dict(queries=randn(gen, b, h, n, dh),  # keys of unequal lengths: inner product != cosine
                 keys=randn(gen, b, h, m, dh) * (0.2 + 2 * torch.rand(b, h, m, 1, generator=gen)), k=k)
            for b, h, n, m, dh, k in shapes]


def _scores(a: dict) -> torch.Tensor:
    return a["queries"] @ a["keys"].transpose(-1, -2)  # (b, h, n, m)


def _topk_problem(got: torch.Tensor, expected: torch.Tensor, a: dict) -> str | None:
    """Right up to ties: distinct in-range indices whose scores reach the k-th best, best first."""
    if got.shape != expected.shape:
        return f"wrong shape: expected (b, h, n, k) = {tuple(expected.shape)}, got {tuple(got.shape)}"
    if got.is_floating_point() or got.dtype == torch.bool:
        return f"expected integer indices (a long tensor), got dtype {got.dtype}"
    got, scores, m = got.long(), _scores(a), a["keys"].shape[-2]
    if bool(((got < 0) | (got >= m)).any()):
        return f"an index outside 0..{m - 1} (there are m = {m} keys)"
    if bool((got.sort(-1).values.diff(dim=-1) == 0).any()):
        return "an index repeats within one query's top-k"
    picked, best = scores.gather(-1, got), scores.topk(a["k"], dim=-1).values
    low = (picked < best[..., -1:] - 1e-6).nonzero()
    if len(low):
        i = tuple(low[0].tolist())
        return (f"query {i[:3]} picked key {int(got[i])} with score {float(picked[i]):.4f}, below its "
                f"k-th best score {float(best[i[:3]][-1]):.4f}")
    if bool((picked.diff(dim=-1) > 1e-6).any()):
        return "the right keys, but not sorted best first"
    return None


knn_search = Exercise(
    "knn_search", "(queries, keys, k) -> indices", _knn_cases,
    reference=lambda **a: _scores(a).topk(a["k"], dim=-1).indices, convert=to_tensor,
    compare=_topk_problem,
    mistakes=[
        ("the top-k of the SMALLEST scores (largest=False): the nearest keys have the largest "
         "inner products.", lambda a, got: _scores(a).topk(a["k"], dim=-1, largest=False).indices),
        ("a top-k over the wrong axis (the queries, dim=-2): take it over the keys, dim=-1 of the "
         "(b, h, n, m) scores.", lambda a, got: _scores(a).topk(a["k"], dim=-2).indices),
        ("transposed scores (keys @ queries^T, shape (b, h, m, n)): use queries @ keys^T so that "
         "the last axis runs over the keys.",
         lambda a, got: _scores(a).transpose(-1, -2).topk(a["k"], dim=-1).indices),
        ("the right keys, not sorted best first (argsort()[..., -k:] is worst first): "
         "topk sorts best first, or flip the order.",
         lambda a, got: _scores(a).topk(a["k"], dim=-1).indices.flip(-1)),
        ("every key sorted: keep only the first k.",
         lambda a, got: _scores(a).argsort(dim=-1, descending=True)),
        ("the top-k scores (.values), not their indices (.indices).",
         lambda a, got: _scores(a).topk(a["k"], dim=-1).values),
        ("nearest by L2 distance, not by inner product (they differ for keys of unequal length).",
         lambda a, got: torch.cdist(a["queries"], a["keys"]).topk(a["k"], dim=-1, largest=False).indices),
        ("cosine similarity (normalised queries and keys), not the plain inner product: FoT's "
         "model normalises before it stores and searches, this function should not.",
         lambda a, got: (F.normalize(a["queries"], dim=-1) @ F.normalize(a["keys"], dim=-1)
                         .transpose(-1, -2)).topk(a["k"], dim=-1).indices),
    ],
    against="torch.topk of the inner products (any tie accepted)",
    hint_text="""
        The score of query i and key j is their inner product: queries @ keys.transpose(-1, -2)
        gives all of them at once, (b, h, n, m). Then keep, for every query (the last axis runs
        over the keys), the k largest: torch.topk returns values and indices, best first.""",
    solution_source='''
        def knn_search(queries, keys, k):
            scores = queries @ keys.transpose(-1, -2)    # (b, h, n, m) inner products
            return scores.topk(k, dim=-1).indices        # (b, h, n, k), best first
        ''')

# -- fifo_slots (the memory's ring buffer) ------------------------------------------------------

def _naive_slots(a: dict) -> torch.Tensor:
    return (a["write_pos"] + torch.arange(a["n"])) % a["capacity"]


def _only(a: dict, slots: torch.Tensor, first: bool = False) -> torch.Tensor:
    """``slots`` with -1 for the items an over-long write drops (the first ones, or the last)."""
    t, dropped = torch.arange(a["n"]), max(a["n"] - a["capacity"], 0)
    return slots.masked_fill(t >= a["capacity"] if first else t < dropped, -1)


fifo_slots = Exercise(
    "fifo_slots", "(write_pos, n, capacity) -> slots", lambda: [
        dict(write_pos=w, n=n, capacity=c) for w, n, c in
        [(0, 3, 8), (6, 5, 8), (2, 8, 8), (5, 11, 8), (7, 1, 8), (1, 9, 4), (0, 4, 4)]],
    reference=lambda **a: _library_fifo_slots(**a), convert=to_tensor,
    mistakes=[
        ("no wrap-around: slots past capacity - 1 continue at slot 0 (take them mod capacity).",
         lambda a, got: _only(a, a["write_pos"] + torch.arange(a["n"]) - max(a["n"] - a["capacity"], 0))),
        ("an off-by-one: write_pos is the next free slot, the first item goes there (not write_pos + 1).",
         lambda a, got: _only(a, (_naive_slots(a) + 1 - max(a["n"] - a["capacity"], 0)) % a["capacity"])),
        ("an off-by-one: the first item goes to write_pos itself (not write_pos - 1).",
         lambda a, got: _only(a, (_naive_slots(a) - 1 - max(a["n"] - a["capacity"], 0)) % a["capacity"])),
        ("n > capacity: every item got a slot, so the first ones would be overwritten within this "
         "write. Only the last capacity items are stored (from write_pos on); give the others -1.",
         lambda a, got: _naive_slots(a)),
        ("n > capacity: the surviving last capacity items go to write_pos, write_pos + 1, ... (one "
         "write, the first survivor at write_pos), not where a one-by-one loop would leave them.",
         lambda a, got: _only(a, _naive_slots(a))),
        ("n > capacity: you kept the FIRST capacity items; FIFO keeps the newest, the last ones.",
         lambda a, got: _only(a, _naive_slots(a), first=True)),
        ("a ring buffer that runs backwards (write_pos, write_pos - 1, ...): it counts up.",
         lambda a, got: (a["write_pos"] - torch.arange(a["n"])) % a["capacity"]),
    ],
    against="fot_edu.memory.fifo_slots (what KNNMemory.add writes)",
    hint_text="""
        Item t of the write goes to slot write_pos + t, wrapped around with % capacity: the slot
        after the last one is slot 0, where the oldest item sits, so it is overwritten first.
        If n > capacity, the first n - capacity items would be overwritten within the same write:
        the memory stores only the last capacity items, from write_pos on, and the dropped
        items get slot -1.""",
    solution_source='''
        def fifo_slots(write_pos, n, capacity):
            t = torch.arange(n)                            # item 0 is the oldest of this write
            dropped = max(n - capacity, 0)                 # an over-long write keeps its last items
            slots = (write_pos + t - dropped) % capacity   # count on from write_pos, wrap around
            slots[t < dropped] = -1                        # never stored
            return slots                                   # (n,)
        ''')
