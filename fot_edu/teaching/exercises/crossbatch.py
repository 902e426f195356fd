"""Exercises of the crossbatch notebook (§3.2-3.3): which contexts each row sees, and how much
of its attention stays on its own.

``crossbatch_rows`` (the d rows whose C_prev a row attends), ``crossbatch_keys`` (their keys,
gathered into each row's memory) and ``distraction_ratio`` (r_d, the attention mass on the own
context). See ``fot_edu.teaching.exercises`` for how a check works.
"""
from __future__ import annotations

import torch
from einops import rearrange

from fot_edu.crossbatch import crossbatch_memory, neighbour_rows, own_context_share
from fot_edu.teaching.assignments import Exercise, number_problem, randn, to_float, to_tensor

__all__ = ["crossbatch_rows", "crossbatch_keys", "distraction_ratio"]


# -- crossbatch_rows (§3.2) ---------------------------------------------------------------------

def _rows(b: int, d: int, shift: int = 0, step: int = 1) -> torch.Tensor:
    return torch.arange(b)[:, None] + step * (torch.arange(d)[None, :] + shift)


crossbatch_rows = Exercise(
    "crossbatch_rows", "(b, d) -> rows", lambda: [dict(b=b, d=d) for b, d in
                                                 [(4, 2), (6, 4), (5, 5), (3, 1), (8, 3), (1, 1)]],
    reference=lambda b, d: neighbour_rows(b, d), convert=to_tensor,
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


# -- crossbatch_keys (§3.2) ---------------------------------------------------------------------

def _keys_cases() -> list[dict]:
    gen = torch.Generator().manual_seed(6)
    shapes = [(4, 2, 3, 5, 2), (5, 1, 2, 3, 3), (3, 2, 4, 2, 3), (4, 1, 1, 2, 1), (1, 2, 3, 4, 1)]
    return [dict(prev_keys=randn(gen, b, h, n, dh), d=d) for b, h, n, dh, d in shapes]  # d <= b


def _gather(a: dict, rows: torch.Tensor, pattern: str = "b c h n dh -> b h (c n) dh") -> torch.Tensor:
    """The keys of ``rows`` ``(b, d)``, laid out by ``pattern`` (another one lays them out wrongly)."""
    return rearrange(a["prev_keys"][rows], pattern)


def _keys_rows(a: dict, wrap: bool = True, **kw) -> torch.Tensor:
    """The case's ``(b, d)`` rows (or a wrong variant, see :func:`_rows`): mod b, or clamped."""
    b = a["prev_keys"].shape[0]
    return _rows(b, a["d"], **kw) % b if wrap else _rows(b, a["d"], **kw).clamp(max=b - 1)


crossbatch_keys = Exercise(
    "crossbatch_keys", "(prev_keys, d) -> mem_keys", _keys_cases,
    reference=lambda **a: crossbatch_memory(a["prev_keys"], a["prev_keys"], a["d"])[0],
    convert=to_tensor,
    mistakes=[
        ("no wrap-around: the last rows repeat row b - 1; row i + j is taken mod b, so they "
         "continue at row 0.", lambda a, got: _gather(a, _keys_rows(a, wrap=False))),
        ("rows in the wrong order (i, i-1, ...): row i sees rows i, i+1, ..., i+d-1 (mod b). "
         "torch.roll(prev_keys, j, 0) brings row i - j to row i; roll by -j.",
         lambda a, got: _gather(a, _keys_rows(a, step=-1))),
        ("the own C_prev is not first: the memory starts with row i's own keys (the positive), "
         "then rows i+1, ..., i+d-1.",
         lambda a, got: _gather(a, _keys_rows(a).roll(-1, dims=1))),
        ("the own row is missing: row i's memory holds its own C_prev keys first, then d - 1 "
         "neighbours' keys.", lambda a, got: _gather(a, _keys_rows(a, shift=1))),
        ("concatenated along the wrong axis (the head dim, dim=-1): the d contexts are more "
         "memory SLOTS, concatenate along dim=-2, giving (b, h, d * n, dh).",
         lambda a, got: _gather(a, _keys_rows(a), "b c h n dh -> b h n (c dh)")),
        ("concatenated along the wrong axis (the heads, dim=1): the d contexts are more memory "
         "slots, concatenate along dim=-2, giving (b, h, d * n, dh).",
         lambda a, got: _gather(a, _keys_rows(a), "b c h n dh -> b (c h) n dh")),
        ("the contexts interleaved slot by slot ((n d), not (d n)): the memory is context-major, "
         "all n keys of the own C_prev first, then all n of the next row.",
         lambda a, got: _gather(a, _keys_rows(a), "b c h n dh -> b h (n c) dh")),
    ],
    against="fot_edu.crossbatch.crossbatch_memory (its mem_keys)",
    hint_text="""
        First the rows, as in crossbatch_rows: rows = (arange(b)[:, None] + arange(d)) % b, a
        (b, d) tensor. Indexing prev_keys[rows] gives (b, d, h, n, dh): row i's d contexts,
        its own first. Put the context axis next to the slot axis and merge them:
        rearrange(..., "b c h n dh -> b h (c n) dh"), context-major.""",
    solution_source='''
        def crossbatch_keys(prev_keys, d):
            b = prev_keys.shape[0]
            rows = (torch.arange(b)[:, None] + torch.arange(d)[None, :]) % b   # (b, d), own first
            gathered = prev_keys[rows]                                         # (b, d, h, n, dh)
            return rearrange(gathered, "b c h n dh -> b h (c n) dh")           # (b, h, d * n, dh)
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


distraction_ratio = Exercise(
    "distraction_ratio", "(weights, n_local, d) -> float", _ratio_cases,
    reference=lambda weights, n_local, d: own_context_share(weights, n_local, d).mean().item(),
    convert=to_float, compare=lambda got, expected, a: number_problem(got, expected),
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
    against="fot_edu.crossbatch.own_context_share (the r_d of fot_edu.evaluation.distraction)",
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

