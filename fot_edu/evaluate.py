r"""Measuring distraction, and what memory buys: r_d, accuracy and perplexity with distractors.

Paper: Focused Transformer §3.3 (the distraction issue, Fig. 3), §5.1-5.2 (perplexity and
dictionary lookup as memory grows).

**r_d.** Give a memory layer its own ``C_prev`` plus the ``C_prev`` of ``d - 1`` other documents,
exactly as crossbatch training does, and look at its attention weights :math:`w` on those extra
keys (local keys excluded):

.. math:: r_d = \frac{\sum_{j \in \text{own } C_\text{prev}} w_j}{\sum_{j \in \text{all } d \text{ contexts}} w_j},

averaged over queries and heads. A model that cannot tell its own context from the others spreads
the mass evenly, :math:`r_d \approx 1/d`; a focused one keeps it on its own document. The paper
shows that a model trained without crossbatch negatives (d=1) drifts towards 1/d as d grows, and
that FoT training keeps r_d high.

**With distractors in memory** (streaming inference): load the definition windows (or previous
contexts) of ``N`` other documents into a ``KNNMemory`` beside the own ``C_prev``, then read
``C_curr``. We report the value-token accuracy (dictionary) or perplexity (corpora), and the
share of memory attention that lands on the own document.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .config import TrainConfig
from .crossbatch import own_context_share
from .datasets import training_batch
from .model import FoTModel
from .dictionary import DictionaryEvalBatch, dictionary_eval_batch
from .stats import bootstrap, exp_ratio_of_sums, ratio_of_sums, wilson
from .tokenizer import IGNORE


def memory_layer(model: FoTModel, layer: int | None = None) -> int:
    """The index of a memory layer: ``layer`` checked, or the model's first memory layer."""
    layers = model.cfg.memory_layers
    if not layers:
        raise ValueError("this model has no memory layer (a vanilla model): nothing to measure")
    if layer is None:
        return layers[0]
    if layer not in layers:
        raise ValueError(f"layer={layer!r} is not a memory layer: choose one of {layers}")
    return layer


def _row_sums(values: torch.Tensor, query_mask: torch.Tensor | None) -> torch.Tensor:
    """``(b, 2)``: per row, the sum of ``(b, h, n)`` values over heads and masked queries, and how
    many there are (the units a bootstrap resamples)."""
    mask = torch.ones(values.shape[0], values.shape[2], dtype=torch.bool, device=values.device) \
        if query_mask is None else query_mask
    weights = mask[:, None, :].expand_as(values).float()
    return torch.stack([(values * weights).sum((1, 2)), weights.sum((1, 2))], dim=-1)


@torch.no_grad()
def distraction_ratio(model: FoTModel, tokens: torch.Tensor, d: int, *, query_mask=None,
                      layer: int | None = None, per_row: bool = False):
    """The paper's r_d on pairs ``tokens`` ``(b, 2, n)``: own ``C_prev`` plus ``d - 1`` others.

    ``query_mask`` ``(b, n)``: average only over these ``C_curr`` queries (e.g. answer positions).
    ``per_row=True``: the ``(b, 2)`` sums and counts per row instead of their pooled mean.
    """
    layer = memory_layer(model, layer)
    n = tokens.shape[-1]
    trace = model.eval()(tokens, d=d, trace=True).traces[layer]
    n_local = trace.weights.shape[-1] - d * n  # MT traces its memory softmax alone: no local part
    rows = _row_sums(own_context_share(trace.weights.float(), n_local, d), query_mask)
    return rows if per_row else (rows[:, 0].sum() / rows[:, 1].sum().clamp(min=1)).item()


@torch.no_grad()
def distraction_summary(model: FoTModel, cfg: TrainConfig, ds=(2, 4, 8, 16), *, batches: int = 2,
                        layer: int | None = None, device="cpu") -> dict:
    """``{"r_d": {d: r}, "n": {"r_d": {d: rows}}, "ci95": {"r_d": {d: [low, high]}}}`` on held-out
    pairs of the model's task, averaged over the ``C_curr`` queries that carry a target (the
    answer positions for the dictionary task); intervals by bootstrap over the documents (rows).

    The one implementation of r_d against d: the command line, the report and the dashboard all
    call it, so they print the same figure for the same model. The pairs are fixed (batches of
    ``max(32, max(ds))`` rows at eval steps 1000, 1001, ...), so r_d for one d does not depend
    on which other d are asked for.
    """
    model = model.to(device)
    values, rows = {d: 0.0 for d in ds}, {d: [] for d in ds}
    for i in range(batches):
        batch = training_batch(cfg.data, "eval", max(32, max(ds)), step=1000 + i,
                               seed=cfg.seed).to(device)
        mask = batch.targets[:, 1] != IGNORE
        for d in ds:
            sums = distraction_ratio(model, batch.tokens, d, query_mask=mask, layer=layer,
                                     per_row=True)
            values[d] += (sums[:, 0].sum() / sums[:, 1].sum().clamp(min=1)).item() / batches
            rows[d].append(sums.cpu())
    rows = {d: torch.cat(r) for d, r in rows.items()}
    return {"r_d": values, "n": {"r_d": {d: len(r) for d, r in rows.items()}},
            "ci95": {"r_d": {d: bootstrap(r, ratio_of_sums) for d, r in rows.items()}}}


def distraction_curve(model: FoTModel, cfg: TrainConfig, ds=(2, 4, 8, 16), *, batches: int = 2,
                      layer: int | None = None, device="cpu") -> dict:
    """``{d: r_d}``: :func:`distraction_summary` without its intervals."""
    return distraction_summary(model, cfg, ds, batches=batches, layer=layer, device=device)["r_d"]


@torch.no_grad()
def read_with_memory(model: FoTModel, contexts: torch.Tensor, context_ids: torch.Tensor,
                     query: torch.Tensor, query_ids: torch.Tensor, k: int | None = None,
                     layer: int | None = None):
    """Stream ``contexts`` ``(b, c, n)`` into fresh memories, then read ``query`` ``(b, n)``.

    Each context window goes through the model on its own (its keys computed in its own local
    context) and is added to memory with its document id ``context_ids`` ``(b, c)``. Returns the
    query's logits ``(b, n, vocab)`` and the share of memory attention per query that lands on
    the query's own document, ``(b, h, n)``.
    """
    layer = memory_layer(model, layer)
    b, c, n = contexts.shape
    memories = model.new_memories(b, max(1, c * n))
    for j in range(c):
        model.prefill(contexts[:, j], memories, k=k, doc_ids=context_ids[:, j])
    out = model(query, memories=memories, k=k, doc_ids=query_ids, add_to_memory=False, trace=True)
    trace = out.traces[layer]
    weights = trace.weights.float()
    memory_weights = weights[..., weights.shape[-1] - _num_memory_slots(trace):]
    docs = trace.memory_docs  # (b, M) dense or (b, h, n, k) top-k
    if docs.dim() == 2:
        docs = docs[:, None, None, :].expand_as(memory_weights)
    own = (memory_weights * (docs == query_ids.view(b, 1, 1, 1))).sum(-1)
    return out.logits, own / memory_weights.sum(-1).clamp(min=1e-12)


def _num_memory_slots(trace) -> int:
    docs = trace.memory_docs
    return docs.shape[-1]


def _dictionary_rows(model: FoTModel, batch: DictionaryEvalBatch, k: int | None = None):
    """Per row: ``(correct, answers)`` value tokens ``(b, 2)`` and the own-document share of
    memory attention at the answer queries ``(b, 2)`` as sums and counts (None without memory)."""
    tokens, targets = batch.tokens, batch.targets[:, 1]
    mask = targets != IGNORE
    if not model.cfg.memory_layers:
        logits, own = model(tokens[:, 1]).logits, None
    else:
        contexts = torch.cat([batch.distractors, tokens[:, :1]], dim=1)
        ids = torch.cat([batch.distractor_ids, batch.doc_ids[:, None]], dim=1)
        logits, own = read_with_memory(model, contexts, ids, tokens[:, 1], batch.doc_ids, k)
    if not mask.any():
        raise ValueError("no target tokens to score (every target is -100)")
    correct = ((logits.argmax(-1) == targets) & mask).sum(1)
    answers = torch.stack([correct, mask.sum(1)], dim=-1).float()
    return answers, None if own is None else _row_sums(own, mask)


@torch.no_grad()
def read_dictionary_batch(model: FoTModel, batch: DictionaryEvalBatch, k: int | None = None):
    """Answer one (possibly hand-made) :class:`~fot_edu.dictionary.DictionaryEvalBatch`:
    ``(accuracy, r)`` with the row's distractors and own ``C_prev`` in memory.

    ``r`` is the own-document share of memory attention at the answer queries (None for a model
    without memory layers, which reads ``C_curr`` alone).
    """
    answers, own = _dictionary_rows(model, batch, k)
    pooled = lambda sums: (sums[:, 0].sum() / sums[:, 1].sum().clamp(min=1)).item()  # noqa: E731
    return pooled(answers), None if own is None else pooled(own)


@torch.no_grad()
def dictionary_accuracy(model: FoTModel, cfg: TrainConfig, distractors=(0, 1, 3, 7, 15, 31, 63),
                        *, batch_size: int = 32, batches: int = 2, k: int | None = None,
                        seed: int = 1234, device="cpu") -> dict:
    """Value-token accuracy and own-document attention mass ``r`` with N distractors in memory.

    Returns ``{"accuracy": {N: a}, "r": {N: r}, "n": {...}, "ci95": {...}}`` (``r`` is left out
    for N = 0, where all memory is the own document, and for models without memory). ``r``
    averages over the answer queries only (the positions that predict a value token). ``n``:
    value tokens for the accuracy (Wilson interval), documents for ``r`` (bootstrap interval).
    """
    results = {"accuracy": {}, "r": {}}
    n, ci95 = {"accuracy": {}, "r": {}}, {"accuracy": {}, "r": {}}
    model = model.to(device).eval()
    for num in distractors:
        answers, own = [], []
        for i in range(batches):
            batch = dictionary_eval_batch(cfg.data, batch_size, num, seed=seed + i).to(device)
            rows, shares = _dictionary_rows(model, batch, k)
            answers.append(rows.cpu())
            if shares is not None:
                own.append(shares.cpu())
        answers = torch.cat(answers)
        total = int(answers[:, 1].sum())
        results["accuracy"][num] = float(answers[:, 0].sum()) / total
        n["accuracy"][num], ci95["accuracy"][num] = total, wilson(results["accuracy"][num], total)
        if own and num > 0:
            own = torch.cat(own)
            results["r"][num] = float(own[:, 0].sum() / own[:, 1].sum())
            n["r"][num], ci95["r"][num] = len(own), bootstrap(own, ratio_of_sums)
    if not results["r"]:
        for part in (results, n, ci95):
            part.pop("r")
    return {**results, "n": n, "ci95": ci95}


def nll_rows(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``(b, 2)``: per row, the summed negative log-likelihood of its targets and their count."""
    mask = targets != IGNORE
    nll = F.cross_entropy(logits.float().flatten(0, -2), targets.flatten(), reduction="none",
                          ignore_index=IGNORE).view(targets.shape)
    return torch.stack([nll.sum(-1), mask.sum(-1).float()], dim=-1).cpu()


def perplexities(rows: dict) -> dict:
    """``{key: (u, 2) nll sums and counts}`` -> perplexity, windows counted, bootstrap interval."""
    rows = {key: torch.cat(r) if isinstance(r, list) else r for key, r in rows.items()}
    rows = {key: r[r[:, 1] > 0] for key, r in rows.items()}
    return {"perplexity": {key: math.exp(float(r[:, 0].sum()) / max(float(r[:, 1].sum()), 1))
                           for key, r in rows.items()},
            "n": {"perplexity": {key: len(r) for key, r in rows.items()}},
            "ci95": {"perplexity": {key: bootstrap(r, exp_ratio_of_sums) for key, r in rows.items()}}}


@torch.no_grad()
def perplexity_with_distractors(model: FoTModel, cfg: TrainConfig, distractors=(0, 7, 15), *,
                                batches: int = 4, k: int | None = None, seed: int = 1234,
                                device="cpu") -> dict:
    """Perplexity of held-out ``C_curr`` windows with the own ``C_prev`` plus ``N`` other
    documents' ``C_prev`` in memory; ``"no_memory"``: ``C_curr`` read alone. ``n`` counts the
    windows; the intervals resample them."""
    model = model.to(device).eval()
    batch_size = max(16, max(distractors) + 1)
    rows = {"no_memory": []} | {num: [] for num in distractors}
    for i in range(batches):
        batch = training_batch(cfg.data, "eval", batch_size, step=seed + i, seed=cfg.seed)
        tokens, targets, doc_ids = (t.to(device) for t in (batch.tokens, batch.targets, batch.doc_ids))
        settings = [("no_memory", None)] + [(num, num) for num in distractors]
        for name, num in settings:
            if num is None or not model.cfg.memory_layers:
                logits = model(tokens[:, 1]).logits
            else:
                others = (torch.arange(batch_size, device=device)[:, None]
                          + torch.arange(1, num + 1, device=device)[None, :]) % batch_size
                contexts = torch.cat([tokens[others, 0], tokens[:, None, 0]], dim=1)
                ids = torch.cat([doc_ids[others], doc_ids[:, None]], dim=1)
                logits, _ = read_with_memory(model, contexts, ids, tokens[:, 1], doc_ids, k)
            rows[name].append(nll_rows(logits, targets[:, 1]))
    return perplexities(rows)
