r"""The LongLLaMA recipe: an existing model's layers become memory layers, then FoT continues.

Paper: Focused Transformer §4 (LongLLaMA: OpenLLaMA 3B/7B, memory layers 6, 12, 18 of 26, a short
continued training with crossbatch) and App. A.

A pre-trained vanilla model (every layer ordinary causal attention with RoPE) is turned into a
memory model by naming some of its layers memory layers; nothing else changes, and crossbatch
training (``fot_edu.crossbatch``) continues from these weights with ``Trainer(cfg,
init_state=weights)``. Two kinds of memory layer, chosen by ``position``:

* ``"rope"``: LongLLaMA's. The layer keeps RoPE for its window and its plain dot-product logits;
  memory keys are stored unrotated (as if at position 0). It adds no parameter, so until
  something is put in memory it computes exactly what the pre-trained layer did: the fine-tuning
  starts from the base model's own behaviour.
* ``"none"``: this package's (``fot_edu.model``): no position, unit queries and keys, a learned
  temperature per head (started at ``tau_init``). The layer's function changes at once (cosines
  instead of rotated dot products), so the continued training must first repair it.
"""
from __future__ import annotations

import dataclasses
import math

import torch

from .config import ModelConfig

__all__ = ["add_memory_layers"]


def add_memory_layers(weights: dict, cfg: ModelConfig, layers: tuple[int, ...],
                      position: str = "rope", tau_init: float | None = None
                      ) -> tuple[dict, ModelConfig]:
    """``(weights, config)`` of the memory model made from a vanilla model's ``weights``/``cfg``.

    ``layers``: indices of the layers that become memory layers; ``position``: ``"rope"``
    (LongLLaMA) or ``"none"`` (position-free, with a temperature per head, ``tau_init`` or the
    config's). Load the result with ``fot_edu.checkpoint.load_state_into`` or pass it to
    ``Trainer(..., init_state=weights)``.
    """
    if cfg.memory_layers:
        raise ValueError(f"memory_layers={cfg.memory_layers!r} is not allowed here: the base "
                         "model must be vanilla (no memory layers yet)")
    layers = tuple(layers)
    if not layers:
        raise ValueError("layers=() is not allowed: name at least one layer to become a memory layer")
    new_cfg = dataclasses.replace(cfg, memory_layers=layers, memory_kind="fot",
                                  memory_position=position,
                                  tau_init=cfg.tau_init if tau_init is None else tau_init)
    new = dict(weights)
    if position == "none":
        for i in layers:
            new[f"blocks.{i}.attn.log_tau"] = torch.full((cfg.n_heads,), math.log(new_cfg.tau_init))
    return new, new_cfg
