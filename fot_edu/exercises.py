"""Exercises: write FoT's pieces yourself, then let a checker compare them with the library's.

In the style of self-paced course kits (Kaggle Learn's ``learntools``): each exercise is an
object named after the function you write, and a notebook cell reads

.. code-block:: python

    from fot_edu import exercises as ex
    def knn_search(queries, keys, k):
        ...                        # your code
    ex.knn_search.check(knn_search)   # True or False, with a sentence on what is wrong
    ex.knn_search.hint()              # a nudge
    ex.knn_search.solution()          # the reference solution, to read after trying

``check`` runs your function on random and edge-case inputs (fixed seeds) against the
library's own implementation, never raises (a notebook keeps running), and names the usual
mistakes in words: it also computes the known-wrong variants (a separate softmax for memory, a
missing causal mask, top-k of the smallest scores, no wrap-around, ...) and says which one your
output matches. ``names()`` lists the exercises; ``fot_edu.assignments.strip_solutions`` turns
notebooks with ``### BEGIN SOLUTION`` blocks into the student versions.

==========================  ==========================================  =========================
exercise                    what you write                              checked against
==========================  ==========================================  =========================
``memory_attention``        eq. 1: one softmax over [local | memory]    ``attention.memory_attention``
``knn_search``              top-k memory keys by inner product          ``torch.topk`` (tie-aware)
``crossbatch_rows``         the d contexts each row sees (§3.2)         ``crossbatch.neighbour_rows``
``distraction_ratio``       r_d from attention weights (§3.3)           ``crossbatch.own_context_share``
``fifo_slots``              ring-buffer slots of a memory write         ``memory.fifo_slots``
==========================  ==========================================  =========================
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from .attention import memory_attention as _library_memory_attention
from .crossbatch import neighbour_rows, own_context_share
from .memory import fifo_slots as _library_fifo_slots
from .assignments import Exercise, randn, tensor_problem, to_float, to_tensor

__all__ = ["Exercise", "names", "memory_attention", "knn_search", "crossbatch_rows",
           "distraction_ratio", "fifo_slots"]


# -- memory_attention (eq. 1) -------------------------------------------------------------------

def _attention_cases() -> list[dict]:
    gen = torch.Generator().manual_seed(1)
    shapes = [(2, 3, 6, 4, 8), (1, 2, 5, 7, 16), (2, 1, 4, 1, 2), (1, 1, 1, 3, 4)]  # b h n m dh
    return [dict(q=randn(gen, b, h, n, dh, scale=1.5), k=randn(gen, b, h, n, dh),
                 v=randn(gen, b, h, n, dh), mem_k=randn(gen, b, h, m, dh), mem_v=randn(gen, b, h, m, dh))
            for b, h, n, m, dh in shapes]


def _attend(q, k, v, mem_k, mem_v, scale=None, mask="causal", axis=-1, fill=float("-inf")):
    """Eq. 1 with one part changed, for the wrong variants: the scale, the local mask ("causal",
    "future" or "none"), the softmax axis, or the value written over masked logits."""
    n, m, dh = q.shape[-2], mem_k.shape[-2], q.shape[-1]
    scale = dh ** -0.5 if scale is None else scale
    logits = torch.cat([q @ k.transpose(-1, -2), q @ mem_k.transpose(-1, -2)], dim=-1) * scale
    full = torch.ones(n, n + m, dtype=torch.bool)
    local = {"causal": full[:, :n].tril(), "future": full[:, :n].triu(), "none": full[:, :n]}
    visible = torch.cat([local[mask], full[:, n:]], dim=1)  # memory: all in the past
    weights = torch.softmax(logits.masked_fill(~visible, fill), dim=axis)
    return weights @ torch.cat([v, mem_v], dim=-2)


def _gated_mix(a: dict, got: torch.Tensor) -> torch.Tensor:
    """The best fit ``x_h * out_mem + y_h * out_local`` (per head) to the student's output:
    separate softmaxes, then added or mixed by a gate as the Memorizing Transformer does."""
    out_local = _library_memory_attention(a["q"], a["k"], a["v"])[0]
    out_mem = torch.softmax(a["q"] @ a["mem_k"].transpose(-1, -2) * a["q"].shape[-1] ** -0.5, -1) @ a["mem_v"]
    parts = rearrange(torch.stack([out_mem, out_local], -1), "b h n dh two -> h (b n dh) two")
    if parts.shape[1] < 4:
        raise ValueError("too few numbers to fit a gate")
    target = rearrange(got, "b h n dh -> h (b n dh) 1")
    fit = parts @ torch.linalg.lstsq(parts.double(), target.double()).solution.float()
    return rearrange(fit, "h (b n dh) 1 -> b h n dh", b=got.shape[0], n=got.shape[2])


def _output_tensor(x) -> torch.Tensor:
    return to_tensor(x[0] if isinstance(x, (tuple, list)) and len(x) == 2 else x)


memory_attention = Exercise(
    "memory_attention", "(q, k, v, mem_k, mem_v) -> out", _attention_cases,
    reference=lambda **a: _library_memory_attention(**a)[0], convert=_output_tensor,
    compare=lambda got, expected, a: tensor_problem(got, expected),
    mistakes=[
        ("the memory is ignored: your output is plain causal attention over the local keys. "
         "Concatenate the memory logits to the local ones.",
         lambda a, got: _library_memory_attention(a["q"], a["k"], a["v"])[0]),
        ("a separate softmax for the memory keys, then the two outputs added or mixed by a gate "
         "(the Memorizing Transformer's way): FoT puts local and memory keys in ONE softmax (eq. 1), "
         "so they compete for the same attention mass.", _gated_mix),
        ("a missing causal mask: query t sees local keys after t. Mask them with -inf before the "
         "softmax (torch.ones(n, n, dtype=torch.bool).tril() is True where a query may look).",
         lambda a, got: _attend(**a, mask="none")),
        ("a causal mask the wrong way round: query t sees keys t..n-1 (the future) instead of 0..t "
         "(tril, not triu).", lambda a, got: _attend(**a, mask="future")),
        ("masked logits set to 0 instead of -inf: exp(0) = 1 still gives the future keys weight.",
         lambda a, got: _attend(**a, fill=0.0)),
        ("a softmax over the wrong axis (the queries, dim=-2): normalise over the keys, dim=-1, so "
         "each query's weights sum to 1.", lambda a, got: _attend(**a, axis=-2)),
        ("a wrong scale: the logits are not scaled. Multiply them by dh ** -0.5.",
         lambda a, got: _attend(**a, scale=1.0)),
        ("a wrong scale: divided by dh instead of sqrt(dh). The scale is dh ** -0.5.",
         lambda a, got: _attend(**a, scale=a["q"].shape[-1] ** -1.0)),
        ("a wrong scale: multiplied by sqrt(dh) instead of dividing. The scale is dh ** -0.5.",
         lambda a, got: _attend(**a, scale=a["q"].shape[-1] ** 0.5)),
    ],
    against="fot_edu.attention.memory_attention",
    hint_text="""
        Build the logits of one query against ALL its keys: q @ k^T (n local keys, shape
        (b, h, n, n)) and q @ mem_k^T (m memory keys, (b, h, n, m)), both times dh ** -0.5.
        Mask the future local keys with -inf (memory is all past: no mask there), concatenate
        along the last axis, and take ONE softmax over it. Then multiply by the values
        concatenated the same way, [v | mem_v].""",
    solution_source='''
        def memory_attention(q, k, v, mem_k, mem_v):
            n, dh = q.shape[-2], q.shape[-1]
            local = q @ k.transpose(-1, -2) * dh ** -0.5         # (b, h, n, n)
            causal = torch.ones(n, n, dtype=torch.bool).tril()   # query t sees keys 0..t
            local = local.masked_fill(~causal, float("-inf"))
            memory = q @ mem_k.transpose(-1, -2) * dh ** -0.5    # (b, h, n, m): all in the past
            weights = torch.softmax(torch.cat([local, memory], dim=-1), dim=-1)  # ONE softmax
            return weights @ torch.cat([v, mem_v], dim=-2)       # (b, h, n, dh)
        ''')


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


# -- crossbatch_rows (§3.2) ---------------------------------------------------------------------

def _rows(b: int, d: int, shift: int = 0, step: int = 1) -> torch.Tensor:
    return torch.arange(b)[:, None] + step * (torch.arange(d)[None, :] + shift)


crossbatch_rows = Exercise(
    "crossbatch_rows", "(b, d) -> rows", lambda: [dict(b=b, d=d) for b, d in
                                                 [(4, 2), (6, 4), (5, 5), (3, 1), (8, 3), (1, 1)]],
    reference=lambda b, d: neighbour_rows(b, d), convert=to_tensor,
    compare=lambda got, expected, a: tensor_problem(got, expected),
    mistakes=[
        ("no wrap-around: row i + j must be taken mod b, so the last rows continue at row 0.",
         lambda a, got: _rows(**a)),
        ("no wrap-around (clamped at the last row): rows i + j past b - 1 continue at row 0 (mod b).",
         lambda a, got: _rows(**a).clamp(max=a["b"] - 1)),
        ("the own row is not first: column 0 must be row i itself (its own C_prev, the positive), "
         "then i+1, ..., i+d-1.", lambda a, got: _rows(**a).roll(-1, dims=1) % a["b"]),
        ("the own row is missing: row i sees i itself first (the positive), then its d - 1 neighbours.",
         lambda a, got: _rows(**a, shift=1) % a["b"]),
        ("each row sorted ascending: after the wrap-around the own row is no longer first.",
         lambda a, got: (_rows(**a) % a["b"]).sort(dim=1).values),
        ("neighbours counted backwards (i, i-1, ...): the paper takes i, i+1, ..., i+d-1 (mod b).",
         lambda a, got: _rows(**a, step=-1) % a["b"]),
        ("a (d, b) tensor: one row per batch row, (b, d), is wanted.",
         lambda a, got: (_rows(**a) % a["b"]).T),
    ],
    against="fot_edu.crossbatch.neighbour_rows",
    hint_text="""
        Row i sees the C_prev windows of rows i, i+1, ..., i+d-1, and wraps around the batch:
        with b = 4 and d = 2 the last row sees [3, 0]. torch.arange(b)[:, None] is a column of
        row numbers, torch.arange(d)[None, :] a row of offsets; add them (broadcasting) and take
        the result mod b.""",
    solution_source='''
        def crossbatch_rows(b, d):
            i = torch.arange(b)[:, None]      # (b, 1): the row itself
            j = torch.arange(d)[None, :]      # (1, d): 0 = own C_prev, then the neighbours
            return (i + j) % b                # (b, d), wrapping around the batch
        ''')


# -- distraction_ratio (§3.3) -------------------------------------------------------------------

def _ratio_cases() -> list[dict]:
    gen = torch.Generator().manual_seed(3)
    shapes = [(2, 3, 4, 4, 3, 5), (1, 2, 5, 5, 1, 3), (2, 1, 3, 0, 4, 2), (1, 1, 2, 3, 2, 1)]  # b h n n_local d m
    return [dict(weights=torch.softmax(randn(gen, b, h, n, n_local + d * m, scale=2.0), dim=-1),
                 n_local=n_local, d=d) for b, h, n, n_local, d, m in shapes]


def _mass(a: dict, pattern: str = "b h n (c m) -> b h n c m") -> torch.Tensor:
    """``(b, h, n, d)`` memory mass per context; another ``pattern`` splits the contexts wrongly."""
    return rearrange(a["weights"][..., a["n_local"]:], pattern, c=a["d"]).sum(-1)


def _ratio_compare(got: float, expected: float, a: dict) -> str | None:
    return None if abs(got - expected) <= 1e-5 else f"expected {expected:.6f}, got {got:.6f}"


distraction_ratio = Exercise(
    "distraction_ratio", "(weights, n_local, d) -> float", _ratio_cases,
    reference=lambda weights, n_local, d: own_context_share(weights, n_local, d).mean().item(),
    convert=to_float, compare=_ratio_compare,
    mistakes=[
        ("the local mass counted in r_d: divide by the memory mass only (drop the first n_local "
         "columns), not by all of a query's weights.",
         lambda a, got: (_mass(a)[..., 0] / a["weights"].sum(-1)).mean()),
        ("the local mass counted in r_d (added to the own context): r_d looks at memory only.",
         lambda a, got: ((_mass(a)[..., 0] + a["weights"][..., :a["n_local"]].sum(-1))
                         / a["weights"].sum(-1)).mean()),
        ("a ratio over the wrong axis: divide each query's own-context mass by the same query's "
         "mass over the d contexts (sum over the context axis, not over the queries).",
         lambda a, got: (_mass(a)[..., 0] / _mass(a)[..., 0].sum(-1, keepdim=True)).mean()),
        ("a ratio of sums (all own mass / all memory mass): r_d is the mean of per-query shares.",
         lambda a, got: _mass(a)[..., 0].sum() / _mass(a).sum()),
        ("the contexts split the wrong way: memory is context-major, [context 0's m slots | "
         "context 1's m slots | ...], so split it as (c m), not (m c).",
         lambda a, got: (_mass(a, "b h n (m c) -> b h n c m")[..., 0] / _mass(a).sum(-1)).mean()),
        ("the own context is the first of the d memory contexts, not the last.",
         lambda a, got: (_mass(a)[..., -1] / _mass(a).sum(-1)).mean()),
        ("the own context starts after the n_local local columns, not at column 0.",
         lambda a, got: (a["weights"][..., :(a["weights"].shape[-1] - a["n_local"]) // a["d"]].sum(-1)
                         / _mass(a).sum(-1)).mean()),
    ],
    against="fot_edu.crossbatch.own_context_share (the r_d of fot_edu.evaluate)",
    hint_text="""
        The last axis of weights is [n_local local keys | d contexts of m memory keys each], the
        own C_prev first. Drop the local part (weights[..., n_local:]), split the rest into d
        contexts (rearrange '... (c m) -> ... c m' and sum over m), divide each query's mass on
        context 0 by its mass on all d contexts, then average over b, h and n.""",
    solution_source='''
        def distraction_ratio(weights, n_local, d):
            memory = weights[..., n_local:]                                 # drop the local keys
            mass = rearrange(memory, "b h n (c m) -> b h n c m", c=d).sum(-1)  # (b, h, n, d)
            share = mass[..., 0] / mass.sum(-1)                             # own C_prev, per query
            return share.mean().item()                                      # r_d
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
    compare=lambda got, expected, a: tensor_problem(got, expected),
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


EXERCISES = {ex.name: ex for ex in (memory_attention, knn_search, crossbatch_rows,
                                    distraction_ratio, fifo_slots)}


def names() -> list[str]:
    """The exercises, in the order the notebooks meet them."""
    return list(EXERCISES)
