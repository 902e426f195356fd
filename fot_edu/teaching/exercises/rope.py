"""Exercise of the LongLLaMA notebook: ``rope_memory_logits``, the logits of LongLLaMA's memory layer.

Queries are rotated by RoPE at their window positions, memory keys are stored unrotated (as if
at position 0), and the logits are plain dot products times ``dh ** -0.5``
(``fot_edu.layer.Attention`` with ``memory_position="rope"``). See ``fot_edu.teaching.exercises``
for how a check works.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fot_edu.layer import RotaryEmbedding
from fot_edu.teaching.assignments import Exercise, randn, to_tensor

__all__ = ["rope_memory_logits"]


# -- rope_memory_logits (LongLLaMA's memory layer: RoPE kept, memory keys at position 0) ---------

def _rope_cases() -> list[dict]:
    gen = torch.Generator().manual_seed(6)
    cases = []  # b h n m dh, RoPE base: small bases turn every pair by a visible angle
    for b, h, n, m, dh, base in [(2, 3, 6, 5, 8, 100.0), (1, 2, 9, 4, 16, 10000.0),
                                 (2, 1, 5, 3, 2, 10.0), (1, 2, 12, 7, 4, 50.0), (1, 1, 1, 3, 4, 10.0)]:
        rope = RotaryEmbedding(dh, n, base)  # the model's tables for window positions 0..n-1
        cases.append(dict(q=randn(gen, b, h, n, dh, scale=1.5), mem_k=randn(gen, b, h, m, dh),
                          cos=rope.cos.clone(), sin=rope.sin.clone()))
    return cases


def _model_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``fot_edu.layer.RotaryEmbedding`` with the case's tables: feature pairs (0, 1), (2, 3), ...
    of position ``t`` turned by ``angle[t]``."""
    rope = RotaryEmbedding(x.shape[-1], 1, 1.0)
    rope.cos, rope.sin = cos, sin
    return rope(x)


def _rotate_halves(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The "rotate half" layout: feature i paired with i + dh/2 (not the model's)."""
    n, half = x.shape[-2], x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos[:n] - x2 * sin[:n], x1 * sin[:n] + x2 * cos[:n]], dim=-1)


def _rope_logits(a: dict, q=None, k=None, scale=None) -> torch.Tensor:
    """``rope(q) @ mem_k^T * dh ** -0.5`` with one part changed: the queries, the keys or the
    scale."""
    q = _model_rope(a["q"], a["cos"], a["sin"]) if q is None else q
    k = a["mem_k"] if k is None else k
    return q @ k.transpose(-1, -2) * (q.shape[-1] ** -0.5 if scale is None else scale)


def _keys_in_window(a: dict) -> torch.Tensor:
    """The memory keys rotated as if they sat at window positions 0..m-1."""
    m = a["mem_k"].shape[-2]
    return _model_rope(a["mem_k"], a["cos"][:m], a["sin"][:m])


rope_memory_logits = Exercise(
    "rope_memory_logits", "(q, mem_k, cos, sin) -> logits", _rope_cases,
    reference=lambda **a: _rope_logits(a), convert=to_tensor,
    mistakes=[
        ("the memory keys rotated too: LongLLaMA stores them UNrotated (as if at position 0), "
         "since a key read thousands of tokens ago has no position in this window. Rotate the "
         "queries only.", lambda a, got: _rope_logits(a, k=_keys_in_window(a))),
        ("the queries not rotated: each query keeps RoPE at its window position t (pair i of its "
         "features turned by the angle in cos[t, i], sin[t, i]), as in the pre-trained layer.",
         lambda a, got: _rope_logits(a, q=a["q"])),
        ("the rotation in the wrong direction (the sin terms' signs swapped): turn each pair "
         "(x1, x2) forward, to (x1 cos - x2 sin, x1 sin + x2 cos).",
         lambda a, got: _rope_logits(a, q=_model_rope(a["q"], a["cos"], -a["sin"]))),
        ("feature i paired with i + dh/2 (the 'rotate half' layout of some LLaMA ports): "
         "fot_edu.model pairs neighbours, x[..., 0::2] with x[..., 1::2], and interleaves the "
         "rotated pairs back in place.", lambda a, got: _rope_logits(a, q=_rotate_halves(a["q"], a["cos"], a["sin"]))),
        ("q and k normalised (the position-free layer's cosines): a RoPE-kept memory layer takes "
         "plain dot products, with no F.normalize and no temperature.",
         lambda a, got: _rope_logits(a, q=F.normalize(_model_rope(a["q"], a["cos"], a["sin"]), dim=-1),
                                     k=F.normalize(a["mem_k"], dim=-1))),
        ("a wrong scale: the logits are not scaled. Multiply them by dh ** -0.5, as the "
         "pre-trained layer did.", lambda a, got: _rope_logits(a, scale=1.0)),
        ("a wrong scale: divided by dh instead of sqrt(dh). The scale is dh ** -0.5.",
         lambda a, got: _rope_logits(a, scale=a["q"].shape[-1] ** -1.0)),
        ("a softmax taken: return the logits themselves, the attention weights come later (in "
         "one softmax with the local keys' logits).", lambda a, got: torch.softmax(_rope_logits(a), dim=-1)),
    ],
    against="fot_edu.layer.Attention with memory_position='rope' (RotaryEmbedding on q only)",
    hint_text="""
        Rotate the queries as any RoPE layer does: the features of a query form pairs
        (x1, x2) = (q[..., 0::2], q[..., 1::2]); at window position t pair i turns by the angle
        whose cos and sin are cos[t, i] and sin[t, i] (cos, sin are (n, dh/2): they broadcast
        over (b, h, n, dh/2)). The rotated pair is (x1 cos - x2 sin, x1 sin + x2 cos); put the
        pairs back in place (torch.stack([...], dim=-1).flatten(-2)). Leave mem_k as it is
        (position 0: no rotation), take rotated_q @ mem_k.transpose(-1, -2) and scale by
        dh ** -0.5.""",
    solution_source='''
        def rope_memory_logits(q, mem_k, cos, sin):
            x1, x2 = q[..., 0::2], q[..., 1::2]                  # feature pairs (0,1), (2,3), ...
            rotated = torch.stack([x1 * cos - x2 * sin,          # pair i of position t turns
                                   x1 * sin + x2 * cos], dim=-1).flatten(-2)  # by angle[t, i]
            return rotated @ mem_k.transpose(-1, -2) * q.shape[-1] ** -0.5    # keys: position 0
        ''')
