r"""A small decoder-only transformer whose chosen layers are FoT memory layers.

Paper: Focused Transformer App. B.1 and C (small-model setup), §3.1 (memory layers), §4.1 and
§5.1 (long inputs processed window by window).

The architecture is a pre-norm transformer (``x + attn(norm(x))``, ``x + mlp(norm(x))``) whose
layers listed in ``ModelConfig.memory_layers`` (one at about 2/3 of the depth by default: the
paper's layer 8 of 12) are **memory layers**; what one layer computes, ordinary or memory, is
``fot_edu.layer``.

One forward, three modes, chosen by the arguments:

================================  =========================================================
call                              what memory layers attend
================================  =========================================================
``model(tokens)``                 only the window itself (vanilla / memory off)
``model(pairs, d=4)``             crossbatch: ``pairs`` is ``(b, 2, n)`` = (C_prev, C_curr)
``model(window, memories=...)``   streaming: top-``k`` (or all, ``k=None``) of a KNNMemory,
                                  then the window's own keys are added to it
================================  =========================================================

The forward turns these arguments into one small memory context (``fot_edu.layer.Crossbatch`` or
``Streaming``) and hands it to every block; only memory layers look at it.
``model.prefill(window, memories)`` fills memories with a window whose logits nobody needs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
from einops import rearrange

from fot_edu.config import ModelConfig
from fot_edu.layer import Attention, Crossbatch, LayerTrace, Streaming
from fot_edu.memory import KNNMemory


@dataclass
class ModelOutput:
    logits: torch.Tensor  # (b, n, vocab) or (b, w, n, vocab)
    traces: dict[int, LayerTrace] = field(default_factory=dict)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, index: int):
        super().__init__()
        self.norm_attn = nn.LayerNorm(cfg.d_model)
        self.attn = Attention(cfg, index)
        self.norm_mlp = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(),
                                 nn.Linear(cfg.d_ff, cfg.d_model), nn.Dropout(cfg.dropout))

    def forward(self, x, context=None, trace: bool = False):
        attn_out, layer_trace = self.attn(self.norm_attn(x), context, trace)
        x = x + attn_out
        return x + self.mlp(self.norm_mlp(x)), layer_trace


class FoTModel(nn.Module):
    """Decoder-only LM with memory layers at ``cfg.memory_layers`` (see module docstring)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.norm_out = nn.LayerNorm(cfg.d_model)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.embed.weight  # tied input/output embeddings
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module):
        """Normal weights with std ``1 / sqrt(fan_in)`` (embeddings: ``1 / sqrt(d_model)``).

        The scale matters for small models. GPT-2's fixed std 0.02 suits d_model = 768; at
        d_model = 128 it starts every attention logit near 0, and the gradient of a q.k logit is
        a product of two such small matrices, which slows the two-step lookup circuit (a
        previous-token head below the memory layer, then key matching in it).
        """
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=module.in_features ** -0.5)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=module.embedding_dim ** -0.5)

    def forward(self, tokens: torch.Tensor, *, d: int | None = None, negatives: str = "neighbours",
                doc_ids=None, memories: dict[int, KNNMemory] | None = None, k: int | None = None,
                add_to_memory: bool = True, trace: bool = False, gather=None,
                rank: int = 0) -> ModelOutput:
        """Logits for ``tokens`` ``(b, n)`` or ``(b, w, n)``; see the module docstring for modes.

        ``d``: crossbatch dimension (needs ``(b, 2, n)``). ``memories``: ``{layer: KNNMemory}``
        for streaming one window (``k=None``: dense, all memory). ``doc_ids``: ``(b,)``.
        ``gather``, ``rank``: crossbatch negatives from every process (``fot_edu.training.distributed``).
        """
        self._check_tokens(tokens, d, memories)
        context = None
        if d is not None:
            context = Crossbatch(d, negatives, doc_ids, gather, rank)
        elif memories:
            context = Streaming(memories, k, add_to_memory, doc_ids)
        windows = tokens.shape[1] if tokens.dim() == 3 else None
        x = self.embed(tokens.flatten(0, 1) if windows else tokens)  # (b [w], n, D)
        traces = {}
        for i, block in enumerate(self.blocks):
            x, layer_trace = block(x, context, trace)
            if layer_trace is not None:
                traces[i] = layer_trace
        logits = self.lm_head(self.norm_out(x))
        if windows:
            logits = rearrange(logits, "(b w) n v -> b w n v", w=windows)
        return ModelOutput(logits, traces)

    def _check_tokens(self, tokens, d, memories):
        if tokens.dtype not in (torch.long, torch.int, torch.int32, torch.int64):
            raise ValueError(f"tokens must be integer ids, got dtype {tokens.dtype}")
        if tokens.dim() not in (2, 3):
            raise ValueError(f"tokens must be (b, n) or (b, w, n), got shape {tuple(tokens.shape)}")
        n = tokens.shape[-1]
        if n > self.cfg.max_window:
            raise ValueError(f"window of {n} tokens is not allowed: at most max_window="
                             f"{self.cfg.max_window} (longer inputs: read them window by window with fot_edu.streaming.stream_logits)")
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.cfg.vocab_size):
            raise ValueError(f"token ids must be in 0..{self.cfg.vocab_size - 1}, got "
                             f"{int(tokens.min())}..{int(tokens.max())}")
        if d is not None and (tokens.dim() != 3 or tokens.shape[1] != 2):
            raise ValueError(f"crossbatch (d={d}) needs tokens (b, 2, n) = (C_prev, C_curr), "
                             f"got shape {tuple(tokens.shape)}")
        if d is not None and memories:
            raise ValueError("give either d (crossbatch) or memories (streaming), not both")
        if d is not None and not self.cfg.memory_layers:
            raise ValueError("crossbatch needs a model with memory layers (memory_layers is empty)")

    # -- long inputs -----------------------------------------------------------------------------

    @torch.no_grad()
    def prefill(self, tokens: torch.Tensor, memories: dict[int, KNNMemory], *, k: int | None = None,
                doc_ids: torch.Tensor | None = None) -> None:
        """Put the window ``tokens`` ``(b, n)`` into ``memories`` without computing its logits.

        Exact: the memories end up as after ``model(tokens, memories=memories, k=k)``. Only the
        layers up to the last memory layer run, and that layer only computes its keys and values
        (what it would have read does not change what it stores). With one memory layer nothing
        is searched at all, so filling a memory with known windows is several times faster than
        reading them.
        """
        self._check_tokens(tokens, None, memories)
        if tokens.dim() != 2:
            raise ValueError(f"prefill reads one window (b, n), got shape {tuple(tokens.shape)}")
        last = max(self.cfg.memory_layers, default=None)
        if last is None or not memories:
            return
        context = Streaming(memories, k, True, doc_ids)
        x = self.embed(tokens)
        for block in self.blocks[:last]:
            x, _ = block(x, context)
        if last in memories:
            block = self.blocks[last]
            _, keys, values = block.attn.qkv(block.norm_attn(x), context)
            memories[last].add(keys, values, doc_ids)

    def new_memories(self, batch_size: int, capacity: int, backend: str = "exact"):
        """One empty ``KNNMemory`` per memory layer, on the model's device."""
        device = self.embed.weight.device
        return {i: KNNMemory(batch_size, self.cfg.n_heads, self.cfg.head_dim, capacity, backend,
                             device=device) for i in self.cfg.memory_layers}
