"""What a training step minimises: the language-model loss of one batch in each mode, the
held-out loss, and the batches of a config's task.

Paper: Focused Transformer §3.2 (crossbatch: the ordinary LM loss, no new loss and no new
parameters); Wu et al. 2022 §3 for the Memorizing Transformer's stream mode.

The loss knows nothing about the task: a crossbatch batch is ``(b, 2, n)`` token windows
(``C_prev``, ``C_curr`` of ``b`` documents) with next-token targets, and the loss is the ordinary
language-modelling loss over both windows. What differs between the models is only
what their memory layers attend:

==============================  =======================================================
model                           memory layers attend
==============================  =======================================================
vanilla (``mode="plain"``)      nothing beyond the window
FoT (``"crossbatch"``)          own ``C_prev`` + ``d - 1`` other documents' ``C_prev``,
                                differentiably (``d = 1``: the FoT paper's baseline)
MT (``"stream"``, kind ``mt``)  top-``k`` of a memory of the row's earlier windows,
                                detached, through the MT gate
==============================  =======================================================
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from fot_edu.config import TrainConfig
from fot_edu.data.batches import held_out_rows, training_batch, training_stream, vocab_size
from fot_edu.data.repeats import scheduled_repeats
from fot_edu.data.tokenizer import IGNORE
from fot_edu.model import FoTModel
from fot_edu.runtime import autocast
from fot_edu.streaming import read_window


def with_task_vocab(cfg: TrainConfig) -> TrainConfig:
    """The config with ``model.vocab_size`` set to what the data task needs."""
    return cfg.replace(model__vocab_size=vocab_size(cfg.data))


def batch_loss(model: FoTModel, cfg: TrainConfig, batch, step: int, gather=None, rank: int = 0,
               memories=None):
    """LM loss of one batch in the config's mode: ``(loss, logits)``. ``gather``, ``rank``: this
    batch is rank ``rank``'s rows and negatives come from every rank (``fot_edu.training.distributed``).
    Stream mode: ``batch`` is one window of the stream, read into ``memories``."""
    tokens, targets = batch.tokens, batch.targets
    if cfg.mode == "plain":
        out = model(tokens)
    elif cfg.mode == "stream":
        out = read_window(model, tokens, memories, k=cfg.memory_k, doc_ids=batch.doc_ids,
                          reset=batch.new_doc)
    else:
        out = model(tokens, d=cfg.d_at(step), negatives=cfg.negatives, doc_ids=batch.doc_ids,
                    gather=gather, rank=rank)
    logits = out.logits.float()
    if not (targets != IGNORE).any():
        if cfg.mode == "stream":  # this rank's rows ask nothing now, others may: a zero loss
            return logits.sum() * 0.0, logits
        raise ValueError(f"batch has no target tokens (every target is {IGNORE})")
    loss = F.cross_entropy(logits.flatten(0, -2), targets.flatten(), ignore_index=IGNORE)
    return loss, logits


def default_batch_fn(cfg: TrainConfig, split: str) -> Callable[[int], object]:
    """Batches of the config's task; held-out batches of a small split may have fewer rows
    (``batches.held_out_rows``: books holds 8 documents). Training batches carry the repeated
    strings ``cfg.data.repeats`` schedules (``fot_edu.data.repeats``); held-out ones never do."""
    if cfg.mode == "stream":
        return training_stream(cfg.data, split, cfg.batch_size, seed=cfg.seed)
    rows = cfg.batch_size if split != "eval" else held_out_rows(
        cfg.data, cfg.batch_size, cfg.d_max)
    if split == "train" and cfg.data.repeats:  # data that pays for copying (fot_edu.data.repeats)
        return lambda step: scheduled_repeats(training_batch(cfg.data, split, rows, step, seed=cfg.seed),
                                              cfg.data.repeats, step, cfg.seed)
    return lambda step: training_batch(cfg.data, split, rows, step, seed=cfg.seed)


def has_targets(batch) -> bool:
    return bool((batch.targets != IGNORE).any())


@torch.no_grad()
def evaluate_loss(model, cfg: TrainConfig, batch_fn, step: int, device) -> float:
    """Mean LM loss over ``cfg.eval_batches`` held-out batches (d as at ``step``). Stream mode:
    over the first ``2 * eval_batches`` windows of the held-out stream that hold targets (as many
    windows as crossbatch's pairs), read into fresh memories."""
    model.eval()
    losses, index = [], 0
    memories = model.new_memories(cfg.batch_size, cfg.memory_capacity) if cfg.mode == "stream" else None
    while len(losses) < cfg.eval_batches * (2 if memories is not None else 1):
        batch = batch_fn(index).to(device)
        index += 1
        if memories is not None and not has_targets(batch):
            read_window(model, batch.tokens, memories, k=cfg.memory_k, doc_ids=batch.doc_ids,
                        reset=batch.new_doc, logits=False)
            continue
        with autocast(device):
            losses.append(batch_loss(model, cfg, batch, step, memories=memories)[0].item())
    model.train()
    return sum(losses) / len(losses)
