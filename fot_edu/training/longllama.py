r"""The LongLLaMA recipe: an existing model's layers become memory layers, then FoT continues.

Paper: Focused Transformer §4 (LongLLaMA: OpenLLaMA 3B/7B, memory layers 6, 12, 18 of 26, a short
continued training with crossbatch) and App. A.

A pre-trained vanilla model (every layer ordinary causal attention with RoPE) is turned into a
memory model by naming some of its layers memory layers; nothing else changes, and crossbatch
training (``fot_edu.crossbatch``) continues from these weights with ``Trainer(cfg,
init_state=weights)``, or by naming the base in the config (``TrainConfig.base``, as the presets
``text-d1`` and ``text-fot`` do: :func:`continuation_weights`). Two kinds of memory layer, chosen by ``position``:

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

from fot_edu.config import ModelConfig, TrainConfig
from fot_edu.training.checkpoint import load_checkpoint

__all__ = ["add_memory_layers", "continuation_weights"]


def add_memory_layers(weights: dict, cfg: ModelConfig, layers: tuple[int, ...],
                      position: str = "rope", tau_init: float | None = None
                      ) -> tuple[dict, ModelConfig]:
    """``(weights, config)`` of the memory model made from a vanilla model's ``weights``/``cfg``.

    ``layers``: indices of the layers that become memory layers; ``position``: ``"rope"``
    (LongLLaMA) or ``"none"`` (position-free, with a temperature per head, ``tau_init`` or the
    config's). Load the result with ``fot_edu.training.checkpoint.load_state_into`` or pass it to
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


def continuation_weights(cfg: TrainConfig, base=None) -> dict:
    """The weights a continuation starts from: the vanilla checkpoint ``base`` (default
    ``cfg.base``; a shipped name or a path) with ``cfg.model.memory_layers`` made memory layers of
    ``cfg.model.memory_position``'s kind. The base must be the same model but for its memory layers."""
    base = cfg.base if base is None else base
    if base is None:
        raise ValueError("base=None is not allowed here: name the vanilla checkpoint to continue "
                         "(TrainConfig.base or the base argument)")
    state = load_checkpoint(base)
    base_model = state["config"].model
    memory_fields = ("memory_layers", "memory_kind", "memory_position", "tau_init")
    mine = {k: v for k, v in dataclasses.asdict(cfg.model).items() if k not in memory_fields}
    theirs = {k: v for k, v in dataclasses.asdict(base_model).items() if k not in memory_fields}
    differ = {k: (theirs[k], mine[k]) for k in mine if mine[k] != theirs[k]}
    if differ:
        raise ValueError(f"base={str(base)!r} is another model: " + ", ".join(
            f"{k}={a!r} there, {b!r} here" for k, (a, b) in differ.items()))
    if state["config"].data.task != cfg.data.task:
        raise ValueError(f"base={str(base)!r} was trained on task {state['config'].data.task!r}, "
                         f"this continuation on {cfg.data.task!r}")
    weights, _ = add_memory_layers(state["model"], base_model, cfg.model.memory_layers,
                                   cfg.model.memory_position, cfg.model.tau_init)
    return weights
