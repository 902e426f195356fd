r"""Memory attention: one softmax over the local causal keys and the keys retrieved from memory.

Paper: Focused Transformer, §3.1 and App. B.2 (https://arxiv.org/abs/2307.03170).

A memory layer's query :math:`q` at position :math:`t` sees two sets of keys: the causal local
keys :math:`k_1..k_t` of its own window, and memory keys :math:`m_1..m_K` (the top-k by inner
product from a kNN store, or all of a memory: "dense" memory attention). FoT puts them in **one**
softmax, with no gate and no new parameters (eq. 1):

.. math::

    w = \operatorname{softmax}\big(s\,[\,q\cdot k_1, \dots, q\cdot k_t,\; q\cdot m_1, \dots, q\cdot m_K\,]\big),
    \qquad \text{out} = \sum_j w_j\, v_j .

So local and memory keys compete for the same attention mass: if the memory is full of keys that
look like the right one (other documents), mass leaks to them. That is the distraction issue
(§3.3), and crossbatch training (``fot_edu.crossbatch``) is the cure.

The Memorizing Transformer (Wu et al. 2022) does it differently, see :func:`mt_attention`: two
separate softmaxes, mixed by a learned per-head gate :math:`g_h = \sigma(b_h)`.

==================  ====================  =========================================
paper               code                  shape
==================  ====================  =========================================
queries / keys      ``q``, ``k``, ``v``   ``(b, h, n, dh)``
memory (shared)     ``mem_k``, ``mem_v``  ``(b, h, m, dh)``: every query of a row sees it
memory (kNN)        ``mem_k``, ``mem_v``  ``(b, h, n, k, dh)``: each query its own top-k
scale :math:`s`     ``scale``             ``dh ** -0.5`` unless given
==================  ====================  =========================================

Differences from the paper: none in the maths. The explicit path (softmax written out) is the
reference; ``need_weights=False`` with shared memory takes PyTorch's fused
``scaled_dot_product_attention`` instead, tested equal.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange


def _check_inputs(q, k, v, mem_k, mem_v) -> None:
    if q.dim() != 4 or k.dim() != 4 or k.shape[:3] != q.shape[:3] or k.shape != v.shape:
        raise ValueError(f"q, k, v must be (b, h, n, dh) with equal (b, h, n), got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if k.shape[-1] != q.shape[-1]:
        raise ValueError(f"head_dim mismatch: k has {k.shape[-1]}, q has {q.shape[-1]}")
    if not (q.dtype == k.dtype == v.dtype) or not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v must share one dtype and device, got {q.dtype}/{q.device}, "
                         f"{k.dtype}/{k.device}, {v.dtype}/{v.device}")
    if (mem_k is None) != (mem_v is None):
        raise ValueError("mem_k and mem_v must be given together")
    if mem_k is None:
        return
    if mem_k.shape != mem_v.shape:
        raise ValueError(f"mem_k {tuple(mem_k.shape)} and mem_v {tuple(mem_v.shape)} must have equal shapes")
    b, h, n, dh = q.shape
    if mem_k.shape[-1] != dh:
        raise ValueError(f"head_dim mismatch: memory keys have {mem_k.shape[-1]}, queries have {dh}")
    if mem_k.dim() == 4 and mem_k.shape[:2] == (b, h):
        return
    if mem_k.dim() == 5 and mem_k.shape[:3] == (b, h, n):
        return
    raise ValueError(f"mem_k must be (b, h, m, dh) = ({b}, {h}, m, {dh}) or (b, h, n, k, dh) = "
                     f"({b}, {h}, {n}, k, {dh}), got {tuple(mem_k.shape)}")


def memory_logits(q: torch.Tensor, mem_k: torch.Tensor) -> torch.Tensor:
    """Raw inner products of queries with memory keys: ``(b, h, n, m)`` or ``(b, h, n, k)``."""
    if mem_k.dim() == 4:
        return torch.einsum("bhnd,bhmd->bhnm", q, mem_k)
    return torch.einsum("bhnd,bhnkd->bhnk", q, mem_k)


def memory_values(weights: torch.Tensor, mem_v: torch.Tensor) -> torch.Tensor:
    """Weighted sum of memory values for either memory form: ``(b, h, n, dh)``."""
    if mem_v.dim() == 4:
        return torch.einsum("bhnm,bhmd->bhnd", weights, mem_v)
    return torch.einsum("bhnk,bhnkd->bhnd", weights, mem_v)


def _mask_shape(mem_mask: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Broadcast a memory mask to the memory logits; a ``(b, m)`` mask means per row."""
    if mem_mask.dtype != torch.bool:
        raise ValueError(f"mem_mask must be a bool tensor (True = may attend), got {mem_mask.dtype}")
    if mem_mask.dim() == 2:
        mem_mask = rearrange(mem_mask, "b m -> b 1 1 m")
    try:
        return mem_mask.expand_as(logits)
    except RuntimeError:
        raise ValueError(f"mem_mask of shape {tuple(mem_mask.shape)} does not broadcast to the "
                         f"memory logits {tuple(logits.shape)}") from None


def causal_mask(n: int, device=None) -> torch.Tensor:
    """``(n, n)`` bool, True where query i may see key j (j <= i)."""
    return torch.ones(n, n, dtype=torch.bool, device=device).tril()


def memory_attention(q, k, v, mem_k=None, mem_v=None, mem_mask=None, *, scale=None,
                     need_weights: bool = True):
    """FoT memory attention (eq. 1): one softmax over ``[causal local keys | memory keys]``.

    Args:
        q, k, v: ``(b, h, n, dh)``; local keys are causal among themselves.
        mem_k, mem_v: ``(b, h, m, dh)`` shared by all queries of a row, or ``(b, h, n, k, dh)``
            per query (a kNN result). ``None``: plain causal attention.
        mem_mask: bool, True where a memory slot may be attended; broadcastable to the memory
            logits ``(b, h, n, m)`` / ``(b, h, n, k)``, or ``(b, m)`` per row.
        scale: multiplies every logit; default ``dh ** -0.5``. FoT's memory layers pass 1.0 and
            fold the per-head temperature into ``q`` (see ``fot_edu.model``).
        need_weights: False allows the fused SDPA path (shared memory or none) and returns
            ``None`` for the weights.

    Returns:
        ``out`` ``(b, h, n, dh)`` and ``weights`` ``(b, h, n, n + m)`` (local part first) or None.
        The causal local part always holds the query's own key, so the softmax is well defined
        even with an empty or fully masked memory.
    """
    _check_inputs(q, k, v, mem_k, mem_v)
    n, dh = q.shape[-2], q.shape[-1]
    scale = dh ** -0.5 if scale is None else scale
    if not need_weights and (mem_k is None or mem_k.dim() == 4):
        return _sdpa_memory_attention(q, k, v, mem_k, mem_v, mem_mask, scale), None

    local = torch.einsum("bhnd,bhjd->bhnj", q, k) * scale
    local = local.masked_fill(~causal_mask(n, q.device), float("-inf"))
    if mem_k is None:
        weights = torch.softmax(local.float(), dim=-1).to(q.dtype)
        return weights @ v, weights

    mem = memory_logits(q, mem_k) * scale
    if mem_mask is not None:
        mem = mem.masked_fill(~_mask_shape(mem_mask, mem), float("-inf"))
    weights = torch.softmax(torch.cat([local, mem], dim=-1).float(), dim=-1).to(q.dtype)
    w_local, w_mem = weights[..., :n], weights[..., n:]
    out = w_local @ v + memory_values(w_mem, mem_v)
    return out, weights


def _sdpa_memory_attention(q, k, v, mem_k, mem_v, mem_mask, scale):
    """Same maths as the explicit path through ``F.scaled_dot_product_attention``."""
    b, h, n, _ = q.shape
    if mem_k is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    m = mem_k.shape[2]
    allowed_local = causal_mask(n, q.device).expand(b, h, n, n)
    if mem_mask is None:
        allowed_mem = torch.ones(b, h, n, m, dtype=torch.bool, device=q.device)
    else:
        allowed_mem = _mask_shape(mem_mask, torch.empty(b, h, n, m, device="meta"))
    allowed = torch.cat([allowed_local, allowed_mem.to(q.device)], dim=-1)
    keys = torch.cat([k, mem_k.to(k.dtype)], dim=2)
    values = torch.cat([v, mem_v.to(v.dtype)], dim=2)
    return F.scaled_dot_product_attention(q, keys, values, attn_mask=allowed, scale=scale)


def mt_attention(q, k, v, mem_k, mem_v, gate_bias, mem_mask=None, *, scale=None):
    r"""Memorizing Transformer memory attention: two softmaxes mixed by a per-head gate.

    .. math:: \text{out} = g_h\,\text{out}_\text{mem} + (1 - g_h)\,\text{out}_\text{local},
              \qquad g_h = \sigma(b_h)

    ``gate_bias`` is ``(h,)``. A query with no attendable memory slot (empty or fully masked
    memory) uses ``out_local`` alone, so an empty memory never shrinks the output. Memory keys
    and values should be detached by the caller (MT's memory is not differentiable).

    Returns ``out`` ``(b, h, n, dh)`` and a dict with the local and memory weights and the gate.
    """
    _check_inputs(q, k, v, mem_k, mem_v)
    out_local, w_local = memory_attention(q, k, v, scale=scale)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    mem = memory_logits(q, mem_k) * scale
    if mem_mask is not None:
        mem = mem.masked_fill(~_mask_shape(mem_mask, mem), float("-inf"))
    has_memory = torch.isfinite(mem).any(dim=-1, keepdim=True)  # (b, h, n, 1)
    w_mem = torch.softmax(mem.float().masked_fill(~has_memory, 0.0), dim=-1).to(q.dtype)
    w_mem = w_mem * has_memory
    out_mem = memory_values(w_mem, mem_v)
    gate = torch.sigmoid(gate_bias).view(1, -1, 1, 1) * has_memory
    out = gate * out_mem + (1 - gate) * out_local
    return out, {"local": w_local, "memory": w_mem, "gate": gate}
