"""Exercises of the attention notebook: what a memory layer computes.

``memory_attention`` (FoT's eq. 1: one softmax over local and memory keys), ``mt_attention``
(the Memorizing Transformer's two softmaxes mixed by a gate, to compare with) and
``memory_logits`` (normalised queries and keys, times a learned temperature per head, as
``fot_edu.layer.Attention`` does; LongLLaMA's RoPE-kept variant: ``exercises.rope``). See
``fot_edu.teaching.exercises`` for how a check works.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from fot_edu.attention import memory_attention as _library_memory_attention
from fot_edu.attention import mt_attention as _library_mt_attention
from fot_edu.teaching.assignments import Exercise, randn, to_tensor

__all__ = ["memory_attention", "mt_attention", "memory_logits"]


# -- memory_attention (eq. 1) -------------------------------------------------------------------

_SHAPES = [(2, 3, 6, 4, 8), (1, 2, 5, 7, 16), (2, 1, 4, 1, 2), (1, 1, 1, 3, 4)]  # b h n m dh


def _attention_cases(seed: int = 1, shapes=_SHAPES) -> list[dict]:
    gen = torch.Generator().manual_seed(seed)
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


def _two_softmaxes(a: dict, mask: str = "causal") -> tuple[torch.Tensor, torch.Tensor]:
    """``out_mem`` and ``out_local``, each from its own softmax (the Memorizing Transformer's
    pair); ``mask`` is the local mask, as in :func:`_attend`."""
    q, empty = a["q"], a["mem_k"][..., :0, :]
    out_mem = torch.softmax(q @ a["mem_k"].transpose(-1, -2) * q.shape[-1] ** -0.5, -1) @ a["mem_v"]
    return out_mem, _attend(q, a["k"], a["v"], empty, empty, mask=mask)


def _gated_mix(a: dict, got: torch.Tensor) -> torch.Tensor:
    """The best fit ``x_h * out_mem + y_h * out_local`` (per head) to the student's output:
    separate softmaxes, then added or mixed by a gate as the Memorizing Transformer does."""
    out_mem, out_local = _two_softmaxes(a)
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



# -- mt_attention (the Memorizing Transformer's gate) -------------------------------------------

def _mt_cases() -> list[dict]:
    gen = torch.Generator().manual_seed(4)
    cases = [dict(a, gate_bias=randn(gen, a["q"].shape[1], scale=1.5)) for a in _attention_cases(
        4, [(2, 4, 6, 5, 4), (1, 2, 5, 7, 8), (2, 3, 4, 1, 2), (1, 1, 1, 3, 4), (1, 2, 3, 4, 16)])]
    cases[-1]["gate_bias"] = torch.tensor([-6.0, 6.0])  # a gate nearly shut, one nearly open
    return cases


def _mix(a: dict, gate=None, mask: str = "causal", swap: bool = False) -> torch.Tensor:
    """``g * out_mem + (1 - g) * out_local`` with one part changed: the gate (default
    sigmoid(gate_bias), one per head), the local mask, or the two sides swapped."""
    out_mem, out_local = _two_softmaxes(a, mask)
    if swap:
        out_mem, out_local = out_local, out_mem
    g = torch.sigmoid(a["gate_bias"]).view(-1, 1, 1) if gate is None else gate
    return g * out_mem + (1 - g) * out_local


mt_attention = Exercise(
    "mt_attention", "(q, k, v, mem_k, mem_v, gate_bias) -> out", _mt_cases,
    reference=lambda **a: _library_mt_attention(**a)[0], convert=_output_tensor,
    mistakes=[
        ("one joint softmax over [local | memory] (FoT's eq. 1): the Memorizing Transformer takes "
         "two separate softmaxes, one over the local keys and one over the memory keys, and mixes "
         "the two outputs with the gate.",
         lambda a, got: _library_memory_attention(a["q"], a["k"], a["v"], a["mem_k"], a["mem_v"])[0]),
        ("the gate not passed through a sigmoid: g = sigmoid(gate_bias) keeps it between 0 and 1 "
         "(the raw bias can be negative or above 1).",
         lambda a, got: _mix(a, gate=a["gate_bias"].view(-1, 1, 1))),
        ("the gate on the wrong side: g weighs the MEMORY output, out = g * out_mem + (1 - g) * "
         "out_local, not g * out_local + (1 - g) * out_mem.", lambda a, got: _mix(a, swap=True)),
        ("a missing causal mask in the local softmax: query t sees local keys after t. Mask them "
         "with -inf (the memory needs no mask: it is all in the past).",
         lambda a, got: _mix(a, mask="none")),
        ("the two outputs added: mix them, g * out_mem + (1 - g) * out_local, so that the result "
         "stays a weighted average of values.", lambda a, got: sum(_two_softmaxes(a))),
        ("the gate broadcast over the last axis (the head dim): gate_bias has one entry per head, "
         "view it as (h, 1, 1) so that it scales whole heads.",
         lambda a, got: _mix(a, gate=torch.sigmoid(a["gate_bias"]))),
    ],
    against="fot_edu.attention.mt_attention",
    hint_text="""
        Two attentions, each with its own softmax: the local one is causal attention over k, v
        (mask the future with -inf); the memory one attends over all of mem_k, mem_v (no mask).
        Both scale the logits by dh ** -0.5. Then mix them per head with
        g = torch.sigmoid(gate_bias).view(-1, 1, 1): out = g * out_mem + (1 - g) * out_local.""",
    solution_source='''
        def mt_attention(q, k, v, mem_k, mem_v, gate_bias):
            n, dh = q.shape[-2], q.shape[-1]
            local = q @ k.transpose(-1, -2) * dh ** -0.5
            causal = torch.ones(n, n, dtype=torch.bool).tril()
            out_local = torch.softmax(local.masked_fill(~causal, float("-inf")), dim=-1) @ v
            out_mem = torch.softmax(q @ mem_k.transpose(-1, -2) * dh ** -0.5, dim=-1) @ mem_v
            g = torch.sigmoid(gate_bias).view(-1, 1, 1)        # (h, 1, 1): one gate per head
            return g * out_mem + (1 - g) * out_local           # (b, h, n, dh)
        ''')


# -- memory_logits (normalised queries and keys, a temperature per head) ------------------------

def _logits_cases() -> list[dict]:
    gen = torch.Generator().manual_seed(5)
    shapes = [(2, 3, 5, 3, 8), (1, 2, 4, 6, 16), (2, 4, 1, 1, 3), (1, 1, 3, 2, 1)]  # b h n m dh

    def spread(*shape):  # vectors of unequal lengths: normalising matters
        return randn(gen, *shape) * (0.3 + 3 * torch.rand(*shape[:-1], 1, generator=gen))
    return [dict(q=spread(b, h, n, dh), k=spread(b, h, m, dh), tau=1 + 19 * torch.rand(h, generator=gen))
            for b, h, n, m, dh in shapes]


def _cosines(a: dict, dim: int = -1, keys: bool = True) -> torch.Tensor:
    """``<q_hat, k_hat>``, ``(b, h, n, m)``: normalised over ``dim`` (the head dim, -1, is right);
    ``keys=False`` leaves the keys as they are."""
    k = F.normalize(a["k"], dim=dim) if keys else a["k"]
    return F.normalize(a["q"], dim=dim) @ k.transpose(-1, -2)


def _per_head(a: dict) -> torch.Tensor:
    return a["tau"].view(-1, 1, 1)  # (h, 1, 1): broadcasts over (b, h, n, m)


memory_logits = Exercise(
    "memory_logits", "(q, k, tau) -> logits", _logits_cases,
    reference=lambda **a: _per_head(a) * _cosines(a), convert=to_tensor,
    mistakes=[
        ("no normalisation: divide q and k by their lengths first (F.normalize(x, dim=-1)), so that "
         "a logit is tau_h times a cosine, between -tau_h and tau_h.",
         lambda a, got: _per_head(a) * (a["q"] @ a["k"].transpose(-1, -2))),
        ("normalised over the wrong axis (the positions, dim=-2): each query and key is a vector "
         "of dh numbers, normalise over dim=-1.", lambda a, got: _per_head(a) * _cosines(a, dim=-2)),
        ("only the queries normalised: the keys must be unit vectors too.",
         lambda a, got: _per_head(a) * _cosines(a, keys=False)),
        ("scaled by dh ** -0.5 instead of tau: a memory layer's learned temperature tau_h replaces "
         "the usual scale.", lambda a, got: _cosines(a) * a["q"].shape[-1] ** -0.5),
        ("scaled by both tau and dh ** -0.5: tau replaces the usual scale (the model calls the "
         "attention with scale=1.0).", lambda a, got: _per_head(a) * _cosines(a) * a["q"].shape[-1] ** -0.5),
        ("tau on the wrong axis: a (h,) tensor broadcasts over the LAST axis (the keys); view it "
         "as (h, 1, 1) so that each head gets its own temperature.",
         lambda a, got: _cosines(a) * a["tau"]),
        ("a softmax taken: return the logits themselves, the attention weights come later.",
         lambda a, got: torch.softmax(_per_head(a) * _cosines(a), dim=-1)),
    ],
    against="fot_edu.layer.Attention (F.normalize, then q * tau)",
    hint_text="""
        Make every query and key a unit vector: F.normalize(x, dim=-1) divides each by its
        length over the head dim. Their inner products (q_hat @ k_hat.transpose(-1, -2), shape
        (b, h, n, m)) are cosines; multiply head h's by tau[h]: tau.view(-1, 1, 1) lines the
        (h,) temperatures up with the head axis. No dh ** -0.5: tau replaces it.""",
    solution_source='''
        def memory_logits(q, k, tau):
            q_hat, k_hat = F.normalize(q, dim=-1), F.normalize(k, dim=-1)   # unit vectors
            cosines = q_hat @ k_hat.transpose(-1, -2)                       # (b, h, n, m)
            return tau.view(-1, 1, 1) * cosines                             # tau_h per head
        ''')
