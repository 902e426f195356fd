r"""The attention of one decoder layer: ordinary causal self-attention, or a FoT memory layer.

Paper: Focused Transformer §3.1 (memory layers, eq. 1), App. B.1 and C (small-model setup),
§4 and App. A (LongLLaMA's memory layers).

Most layers are ordinary causal self-attention over the current window with rotary position
embeddings (:class:`RotaryEmbedding`). The layers listed in ``ModelConfig.memory_layers`` are
**memory layers**:

* no positional encoding at all (as in the Memorizing Transformer's small models): a memory key
  from 10,000 tokens ago has no meaningful position relative to the query;
* queries and keys are L2-normalised and the logit is :math:`\tau_h\,\langle\hat q, \hat k\rangle`
  with a learnable temperature :math:`\tau_h` per head. The memory then stores unit keys, so a
  kNN search by inner product is a cosine search;
* they attend to the window's causal keys plus extra keys, chosen by the memory context the
  model's forward hands every layer: the ``C_prev`` windows chosen by crossbatch
  (:class:`Crossbatch`, training, ``fot_edu.crossbatch``) or items found in a ``KNNMemory``
  (:class:`Streaming`, inference).

Layers named in ``ModelConfig.smear_keys`` mix each key with the previous token's key
(``fot_edu.smear``, Olsson et al. 2022; not in FoT or LongLLaMA), so one head can copy; layers
in ``ModelConfig.qk_conv`` convolve queries and keys over the last few tokens (``fot_edu.qk_conv``,
So et al. 2021), so one head can match several bytes.

A ``memory_kind="mt"`` model replaces eq. 1 by the Memorizing Transformer's gated pair of
softmaxes (``fot_edu.attention.mt_attention``) and detaches its memory.

LongLLaMA's memory layers (``ModelConfig.memory_position="rope"``): LongLLaMA (3B, fine-tuned
from OpenLLaMA; memory layers 6, 12, 18 of 26) keeps RoPE in its memory layers. The window's own
queries and keys are rotated by their positions as in any layer; memory keys (and crossbatch
``C_prev`` keys) are stored unrotated, i.e. encoded as if they sat at position 0; logits are plain
dot products times ``dh ** -0.5``, with no normalisation and no temperature. Such a layer has no
parameters of its own, so it computes exactly what the pre-trained layer computed until memory is
added: the LongLLaMA recipe (``fot_edu.training.longllama``). Small models trained from scratch do well
without positions in memory layers (``"none"``, the default).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from fot_edu.attention import memory_attention, mt_attention
from fot_edu.config import ModelConfig
from fot_edu.crossbatch import crossbatch_memory
from fot_edu.memory import KNNMemory
from fot_edu.qk_conv import conv_window, initial_weights
from fot_edu.smear import smear_window


@dataclass
class LayerTrace:
    """What a memory layer did, for evaluation and plots (only with ``trace=True``)."""
    queries: torch.Tensor  # (b, h, n, dh) unit queries of the window that used memory
    keys: torch.Tensor  # (b, h, n, dh) unit keys of that window
    weights: torch.Tensor | None  # (b, h, n, n + M): local part first, then memory
    context_rows: torch.Tensor | None = None  # crossbatch: (b, c) row of each context
    context_docs: torch.Tensor | None = None  # crossbatch: (b, c) document of each context
    memory_docs: torch.Tensor | None = None  # streaming: (b, h, n, k) or (b, M) doc of each slot
    extra: dict = field(default_factory=dict)  # MT: local/memory weights and gate


class RotaryEmbedding(nn.Module):
    """RoPE: rotate each (even, odd) feature pair of q and k by an angle growing with position."""

    def __init__(self, head_dim: int, max_len: int, base: float):
        super().__init__()
        inv_freq = base ** (-torch.arange(0, head_dim, 2).float() / head_dim)
        angles = torch.outer(torch.arange(max_len).float(), inv_freq)  # (n, dh / 2)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (b, h, n, dh)
        n = x.shape[-2]
        cos, sin = self.cos[:n].to(x.dtype), self.sin[:n].to(x.dtype)
        x1, x2 = x[..., 0::2], x[..., 1::2]
        rotated = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
        return rotated.flatten(-2)


@dataclass(frozen=True)
class Crossbatch:
    """Training: a memory layer's ``C_curr`` attends to the ``C_prev`` of rows ``{i..i+d-1} mod b``."""
    d: int
    negatives: str = "neighbours"  # or "hard" (fot_edu.crossbatch)
    doc_ids: torch.Tensor | None = None  # (b,) document of each row, for traces
    gather: Callable | None = None  # N processes (fot_edu.training.distributed): (b, ...) -> (N*b, ...)
    rank: int = 0  # with gather: this process holds rows rank*b .. (rank+1)*b - 1 of the N*b


@dataclass(frozen=True)
class Streaming:
    """Inference: each memory layer searches its ``KNNMemory`` (top-``k``; ``k=None``: all of it),
    then adds the window's own keys (``add``)."""
    memories: dict[int, KNNMemory]
    k: int | None = None
    add: bool = True
    doc_ids: torch.Tensor | None = None  # (b,) stored beside every key


class Attention(nn.Module):
    """Causal self-attention; a memory layer (``is_memory``) also attends to extra keys, chosen by
    the forward's memory context (:class:`Crossbatch`, :class:`Streaming` or none)."""

    def __init__(self, cfg: ModelConfig, index: int):
        super().__init__()
        self.cfg, self.index = cfg, index
        self.is_memory = index in cfg.memory_layers
        self.to_qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.to_out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.rope_kept = self.is_memory and cfg.memory_position == "rope"
        if self.is_memory and not self.rope_kept:
            self.log_tau = nn.Parameter(torch.full((cfg.n_heads,), math.log(cfg.tau_init)))
        if self.is_memory and cfg.memory_kind == "mt":
            self.gate_bias = nn.Parameter(torch.zeros(cfg.n_heads))  # g = sigmoid(0) = 0.5
        if not self.is_memory or self.rope_kept:
            self.rope = RotaryEmbedding(cfg.head_dim, cfg.max_window, cfg.rope_base)
        if index in cfg.smear_keys:  # a_h = 0: an even mix of k_j and k_(j-1) (fot_edu.smear)
            self.smear_logit = nn.Parameter(torch.zeros(cfg.n_heads))
        if index in cfg.qk_conv:  # taps over the last W tokens, at init the plain q and smeared k
            w_q, w_k = initial_weights(cfg.n_heads, cfg.head_dim, cfg.qk_conv_width)
            self.conv_q, self.conv_k = nn.Parameter(w_q), nn.Parameter(w_k)

    def qkv(self, x, context: Crossbatch | Streaming | None = None):
        """``(q, k, v)``, each ``(b, h, n, dh)``, with ``k`` as memory stores it: a position-free
        memory layer's ``q`` and ``k`` are unit vectors; a RoPE-kept one's ``q`` is rotated by its
        position and ``k`` is not (position 0). Convolved queries and keys (``cfg.qk_conv``) and
        smeared keys (``cfg.smear_keys``) mix before that; in a memory layer across the window's
        start, with what came before it (``fot_edu.qk_conv``, ``fot_edu.smear``)."""
        q, k, v = rearrange(self.to_qkv(x), "b n (three h dh) -> three b h n dh", three=3,
                            h=self.cfg.n_heads)
        # across windows (a memory layer): C_prev then C_curr, or what memory carried on
        pairs = self.is_memory and isinstance(context, Crossbatch)
        memory = (context.memories.get(self.index) if self.is_memory and isinstance(context, Streaming)
                  else None)
        store = getattr(context, "add", False)
        if hasattr(self, "conv_q"):
            q, k = conv_window(q, k, self.conv_q, self.conv_k, pairs=pairs, memory=memory, store=store)
        if hasattr(self, "smear_logit"):
            k = smear_window(k, self.smear_logit, pairs=pairs, memory=memory, store=store)
        if not self.is_memory:
            return self.rope(q), self.rope(k), v
        if self.rope_kept:
            return self.rope(q), k, v
        # autocast runs normalize in fp32; back to the projections' dtype (bf16 on a GPU)
        return F.normalize(q, dim=-1).to(v.dtype), F.normalize(k, dim=-1).to(v.dtype), v

    def forward(self, x, context: Crossbatch | Streaming | None = None, trace: bool = False):
        q, k, v = self.qkv(x, context)
        if not self.is_memory:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.to_out(rearrange(out, "b h n dh -> b n (h dh)")), None
        if self.rope_kept:  # the window's keys at their positions; memory keeps k at position 0
            q_scaled, k_local = q * self.cfg.head_dim ** -0.5, self.rope(k)
        else:
            q_scaled, k_local = q * self.log_tau.exp().view(1, -1, 1, 1).to(q.dtype), k
        if isinstance(context, Crossbatch):
            out, layer_trace = self._crossbatch(q, q_scaled, k_local, k, v, context, trace)
        elif isinstance(context, Streaming) and self.index in context.memories:
            out, layer_trace = self._streaming(q, q_scaled, k_local, k, v, context, trace)
        else:
            out, weights = memory_attention(q_scaled, k_local, v, scale=1.0, need_weights=trace)
            layer_trace = LayerTrace(q, k, weights) if trace else None
        return self.to_out(rearrange(out, "b h n dh -> b n (h dh)")), layer_trace

    def _attend(self, q_scaled, k, v, mem_k, mem_v, mem_mask, trace):
        """Eq. 1 (FoT) or the MT gate; MT's memory is never differentiable."""
        mem_k, mem_v = mem_k.to(q_scaled.dtype), mem_v.to(q_scaled.dtype)
        if self.cfg.memory_kind == "mt":
            out, extra = mt_attention(q_scaled, k, v, mem_k.detach(), mem_v.detach(),
                                      self.gate_bias, mem_mask, scale=1.0)
            return out, extra["memory"], extra
        out, weights = memory_attention(q_scaled, k, v, mem_k, mem_v, mem_mask, scale=1.0,
                                        need_weights=trace)
        return out, weights, {}

    def _crossbatch(self, q, q_scaled, k, k_mem, v, context: Crossbatch, trace):
        """``k``: keys as the window attends them; ``k_mem``: as memory stores them."""
        split = lambda t: rearrange(t, "(b w) h n dh -> w b h n dh", w=2)  # noqa: E731
        (q_prev, q_curr), (qs_prev, qs_curr), (k_prev, k_curr), (v_prev, v_curr) = map(
            split, (q, q_scaled, k, v))
        out_prev, _ = memory_attention(qs_prev, k_prev, v_prev, scale=1.0, need_weights=False)
        gather = context.gather or (lambda t: t)  # noqa: E731  (one process: the batch is global)
        doc_ids = None if context.doc_ids is None else gather(context.doc_ids)
        mem_k, mem_v, rows, docs = crossbatch_memory(gather(split(k_mem)[0]), gather(v_prev),
                                                     context.d, context.negatives, doc_ids)
        if context.gather is not None:  # keep this rank's rows of the global batch
            own = slice(context.rank * len(k_prev), (context.rank + 1) * len(k_prev))
            mem_k, mem_v, rows, docs = mem_k[own], mem_v[own], rows[own], docs[own]
        out_curr, weights, extra = self._attend(qs_curr, k_curr, v_curr, mem_k, mem_v, None, trace)
        out = rearrange(torch.stack([out_prev, out_curr]), "w b h n dh -> (b w) h n dh")
        layer_trace = LayerTrace(q_curr, k_curr, weights, rows, docs, extra=extra) if trace else None
        return out, layer_trace

    def _streaming(self, q, q_scaled, k, k_mem, v, context: Streaming, trace):
        memory = context.memories[self.index]
        if context.k is None:  # dense: every stored item, shared by the row's queries
            mem_k, mem_v, mem_mask = memory.all_items()
            mem_docs = memory.doc_ids
        else:
            found = memory.search(q, context.k)
            mem_k, mem_v, mem_mask = found.keys, found.values, found.scores.isfinite()
            mem_docs = memory.doc_ids_at(found.indices)
        out, weights, extra = self._attend(q_scaled, k, v, mem_k, mem_v, mem_mask, trace)
        layer_trace = LayerTrace(q, k, weights, memory_docs=mem_docs.clone(), extra=extra) if trace else None
        if context.add:
            memory.add(k_mem, v, context.doc_ids)
        return out, layer_trace
