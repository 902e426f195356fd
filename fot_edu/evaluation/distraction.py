r"""Measuring distraction: r_d, and dictionary accuracy with distractors in memory.

Paper: Focused Transformer §3.3 (the distraction issue, Fig. 3), §5.1-5.2 (perplexity and
dictionary lookup as memory grows).

**r_d.** Give a memory layer its own ``C_prev`` plus the ``C_prev`` of ``d - 1`` other documents,
exactly as crossbatch training does, and look at its attention weights :math:`w` on those extra
keys (local keys excluded):

.. math:: r_d = \frac{\sum_{j \in \text{own } C_\text{prev}} w_j}{\sum_{j \in \text{all } d \text{ contexts}} w_j},

averaged over queries and heads. A model that cannot tell its own context from the others spreads
the mass evenly, :math:`r_d \approx 1/d`; a focused one keeps it on its own document. The paper
shows that a model trained without crossbatch negatives (d=1) drifts towards 1/d as d grows, and
that FoT training keeps r_d high. *Which queries*: the paper averages over all of them; in the
dictionary task most ``C_curr`` positions have nothing to look up, so we report r_d over the
answer queries (the positions that predict a value token, ``"r_d"``) and over every query
(``"r_d_all_queries"``).

**With distractors in memory** (streaming inference): load the definition windows (or previous
contexts) of ``N`` other documents into a ``KNNMemory`` beside the own ``C_prev``, then read
``C_curr`` (``fot_edu.evaluation.memory_fill``). We report the value accuracy (dictionary) or perplexity
(corpora), and the share of memory attention that lands on the own document.

**Fixed evaluation sets** (``fot_edu.evaluation.sets``): the own documents (windows) are fixed by a
seed and their index, not by the N or d asked for; distractors are drawn after them and nested
(N = 15 holds N = 7's plus 8 more). Every figure comes with its sample size ``n`` and a 95%
interval ``ci95`` (``fot_edu.evaluation.stats``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fot_edu.config import TrainConfig
from fot_edu.crossbatch import own_context_share
from fot_edu.data.batches import rows_available, training_batch
from fot_edu.data.dictionary import DictionaryEvalBatch, dictionary_eval_batch
from fot_edu.data.tokenizer import IGNORE
from fot_edu.evaluation.memory_fill import (fill_memories, memory_layer, read_memories, stack_items,
                                            window_items)
from fot_edu.evaluation.stats import bootstrap, ratio_of_sums, sum_by_group, wilson
from fot_edu.model import FoTModel

GROUP = 32  # rows per crossbatch group for r_d (d <= 32 draws its negatives inside the group)


def _row_sums(values: torch.Tensor, query_mask: torch.Tensor | None) -> torch.Tensor:
    """``(b, 2)``: per row, the sum of ``(b, h, n)`` values over heads and masked queries, and how
    many there are (the units a bootstrap resamples)."""
    mask = torch.ones(values.shape[0], values.shape[2], dtype=torch.bool, device=values.device) \
        if query_mask is None else query_mask
    weights = mask[:, None, :].expand_as(values).float()
    return torch.stack([(values * weights).sum((1, 2)), weights.sum((1, 2))], dim=-1)


def _pooled(sums: torch.Tensor) -> float:
    return float(sums[:, 0].sum() / sums[:, 1].sum().clamp(min=1))


def distractor_counts(distractors) -> list[int]:
    """The distinct N asked for, in increasing order (each memory is the previous one plus more)."""
    counts = sorted(set(distractors))
    if not counts or not all(isinstance(num, int) and num >= 0 for num in counts):
        raise ValueError(f"distractors={distractors!r} is not allowed: one or more integers >= 0")
    return counts


def _own_share(model: FoTModel, tokens: torch.Tensor, d: int, layer: int) -> torch.Tensor:
    """``(b, h, n)``: per ``C_curr`` query, the share of its crossbatch memory mass on the own
    ``C_prev`` (local keys excluded)."""
    n = tokens.shape[-1]
    trace = model.eval()(tokens, d=d, trace=True).traces[layer]
    n_local = trace.weights.shape[-1] - d * n  # MT traces its memory softmax alone: no local part
    return own_context_share(trace.weights.float(), n_local, d)


@torch.no_grad()
def distraction_ratio(model: FoTModel, tokens: torch.Tensor, d: int, *, query_mask=None,
                      layer: int | None = None, per_row: bool = False):
    """The paper's r_d on pairs ``tokens`` ``(b, 2, n)``: own ``C_prev`` plus ``d - 1`` others.

    ``query_mask`` ``(b, n)``: average only over these ``C_curr`` queries (e.g. answer positions;
    None: all of them, as the paper). ``per_row=True``: the ``(b, 2)`` sums and counts per row
    instead of their pooled mean.
    """
    rows = _row_sums(_own_share(model, tokens, d, memory_layer(model, layer)), query_mask)
    return rows if per_row else _pooled(rows)


@torch.no_grad()
def distraction_summary(model: FoTModel, cfg: TrainConfig, ds=(2, 4, 8, 16), *, batches: int = 2,
                        layer: int | None = None, device="cpu") -> dict:
    """r_d against d on ``32 * batches`` fixed held-out pairs, with intervals.

    Returns ``{"r_d": {d: r}, "n": {"r_d": {d: pairs}}, "ci95": {"r_d": {d: [low, high]}}}``;
    ``"r_d"`` averages over the ``C_curr`` queries that carry a target (the answer queries of the
    dictionary and retrieval tasks, every query of a corpus). For the dictionary and retrieval
    tasks ``"r_d_all_queries"`` adds the paper's average over every ``C_curr`` query. Intervals:
    bootstrap over the independent units: the pairs of a synthetic task, the documents of a
    corpus (``books``: its 64 pairs come from 8 documents, so the 8 are resampled, each with
    all its pairs; ``"n"`` still counts pairs).

    The one implementation of r_d against d: the command line, the report and the dashboard all
    call it, so they print the same figure for the same model. The pairs are fixed (groups of 32
    rows at eval steps 1000, 1001, ...) whatever d is asked for. For d <= 32 a row's ``d - 1``
    negatives are its neighbours in its group (as in training); a larger d takes them from the
    following rows of the next groups (for a corpus they may then include another window of the
    row's own file). Default: 64 pairs, which put r_d of the shipped models within +-0.01. A
    corpus with fewer held-out documents than 32 (``books``: 8) makes groups of that many, as
    many pairs in all, and refuses a d larger than a group.
    """
    model = model.to(device).eval()
    layer = memory_layer(model, layer)
    group, available = GROUP, rows_available(cfg.data, "eval")
    if available is not None and available < GROUP:  # books: 8 held-out documents
        group, batches = available, batches * GROUP // available  # as many pairs, smaller groups
        too_big = [d for d in ds if isinstance(d, int) and d > group]
        if too_big:
            raise ValueError(f"d={too_big[0]} is not allowed for corpus {cfg.data.task!r}: its "
                             f"held-out split has {group} documents, so d <= {group} (negatives "
                             f"must be other documents, not other windows of the own one)")
    groups = [training_batch(cfg.data, "eval", group, step=1000 + i, seed=cfg.seed)
              for i in range(batches)]
    tokens = torch.cat([g.tokens for g in groups]).to(device)
    masks = {"r_d": torch.cat([g.targets[:, 1] for g in groups]).to(device) != IGNORE}
    if cfg.data.task in ("dictionary", "retrieval"):
        masks["r_d_all_queries"] = None
    total = len(tokens)
    units = torch.cat([g.doc_ids for g in groups])  # a synthetic row is a document of its own
    rows = {name: {d: [] for d in ds} for name in masks}
    for d in ds:
        if not (isinstance(d, int) and 1 <= d <= total):
            raise ValueError(f"d={d!r} is not allowed: an integer in 1..{total} (the fixed pairs; "
                             f"raise batches for more)")
        for g in range(batches):
            own = torch.arange(g * group, (g + 1) * group, device=device)
            if d > group:  # the group, then the d - 1 rows after it, around the whole set
                own = torch.arange(g * group, (g + 1) * group + d - 1, device=device) % total
            share = _own_share(model, tokens[own], d, layer)[:group]
            for name, mask in masks.items():
                part = None if mask is None else mask[own[:group]]
                rows[name][d].append(_row_sums(share, part).cpu())
    out, n, ci95 = {}, {}, {}
    for name, per_d in rows.items():
        per_d = {d: torch.cat(r) for d, r in per_d.items()}
        out[name] = {d: _pooled(r) for d, r in per_d.items()}
        n[name] = {d: len(r) for d, r in per_d.items()}
        ci95[name] = {d: bootstrap(sum_by_group(r, units), ratio_of_sums) for d, r in per_d.items()}
    return {**out, "n": n, "ci95": ci95}


def distraction_curve(model: FoTModel, cfg: TrainConfig, ds=(2, 4, 8, 16), *, batches: int = 2,
                      layer: int | None = None, device="cpu") -> dict:
    """``{d: r_d}`` over the answer queries: :func:`distraction_summary`'s ``"r_d"``."""
    return distraction_summary(model, cfg, ds, batches=batches, layer=layer, device=device)["r_d"]


# ---------------------------------------------------------------------------------------------
# dictionary lookup with distractors

def value_hits(hit: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(b, 2)``: per row, the values answered right and the values asked.

    ``hit``/``mask`` ``(b, n)``: a scored position predicted right / is scored. A value is a run of
    consecutive scored positions (its ``value_len`` tokens); it is right only if every one is.
    """
    starts = mask & ~F.pad(mask[:, :-1], (1, 0), value=False)
    run = (starts.long().cumsum(1) - 1).clamp(min=0)  # which value of its row a position is in
    wrong = torch.zeros_like(run).scatter_add_(1, run, (mask & ~hit).long())
    values = starts.sum(1)
    asked = torch.arange(mask.shape[1], device=mask.device)[None, :] < values[:, None]
    return torch.stack([((wrong == 0) & asked).sum(1), values], dim=-1)


def _dictionary_rows(model: FoTModel, batch: DictionaryEvalBatch, k: int | None = None,
                     counts=None) -> dict:
    """``{N: (answers, own, own_all)}`` with the row's own ``C_prev`` and its first N distractors
    in memory (``counts``: default the batch's N). ``answers`` ``(b, 4)``: value tokens right,
    value tokens, values right, values; ``own``/``own_all`` ``(b, 2)``: the own-document share of
    memory attention summed over the answer queries / every query, and their counts (None
    without memory)."""
    tokens, targets = batch.tokens, batch.targets[:, 1]
    mask = targets != IGNORE
    if not mask.any():
        raise ValueError("no target tokens to score (every target is -100)")
    counts = (batch.distractors.shape[1],) if counts is None else counts

    def answers(logits):
        hit = (logits.argmax(-1) == targets) & mask
        return torch.cat([torch.stack([hit.sum(1), mask.sum(1)], -1), value_hits(hit, mask)],
                         -1).float()

    if not model.cfg.memory_layers:  # reads C_curr alone, whatever the memory would hold
        rows = answers(model(tokens[:, 1]).logits)
        return {num: (rows, None, None) for num in counts}
    items = [window_items(model, tokens[:, 0], batch.doc_ids)]
    b, most = len(tokens), max(counts)
    if most:  # every distractor window of the batch in one pass
        flat = window_items(model, batch.distractors[:, :most].flatten(0, 1),
                            batch.distractor_ids[:, :most].flatten())
        items += [{layer: tuple(x.unflatten(0, (b, most))[:, t] for x in parts)
                   for layer, parts in flat.items()} for t in range(most)]
    stacked, n, out = stack_items(items), tokens.shape[-1], {}
    for num in counts:
        memories = fill_memories(stacked, (num + 1) * n)
        logits, own = read_memories(model, memories, tokens[:, 1], batch.doc_ids, k)
        out[num] = (answers(logits), _row_sums(own, mask), _row_sums(own, None))
    return out


@torch.no_grad()
def read_dictionary_batch(model: FoTModel, batch: DictionaryEvalBatch, k: int | None = None):
    """Answer one (possibly hand-made) :class:`~fot_edu.data.dictionary.DictionaryEvalBatch`:
    ``(accuracy, r)`` with the row's distractors and own ``C_prev`` in memory.

    ``accuracy`` counts value tokens; ``r`` is the own-document share of memory attention at the
    answer queries (None for a model without memory layers, which reads ``C_curr`` alone).
    """
    answers, own, _ = next(iter(_dictionary_rows(model, batch, k).values()))
    return _pooled(answers), None if own is None else _pooled(own)


@torch.no_grad()
def dictionary_accuracy(model: FoTModel, cfg: TrainConfig, distractors=(0, 1, 3, 7, 15, 31, 63),
                        *, batch_size: int = 32, batches: int = 4, k: int | None = None,
                        seed: int = 1234, device="cpu") -> dict:
    """Accuracy and own-document attention mass ``r`` with N distractors in memory.

    The documents are the first ``batch_size * batches`` (default 128) of evaluation set
    ``seed``, the same for every N (``dictionary_eval_batch``). Returns, per N:

    * ``"accuracy"``: value tokens right (``n``: value tokens, Wilson interval);
    * ``"value_accuracy"``: whole values right, every token of the value (``n``: values, Wilson).
      Both are teacher-forced: each value token is predicted with the true previous tokens
      supplied, so a value is right when each of its tokens is, not when greedy decoding
      would write it out;
    * ``"r"``: the own document's share of memory attention averaged over the answer queries
      (the positions that predict a value token), ``"r_all_queries"`` over every ``C_curr``
      query (``n``: documents, bootstrap interval). Left out for N = 0, where all memory is the
      own document, and for models without memory.

    The defaults (128 documents, 2560 value tokens, 1280 values) put every shipped model's
    intervals within +-0.03 for the accuracies (Wilson's widest, at 0.5: +-0.019 for tokens,
    +-0.027 for values) and within +-0.02 for r.
    """
    counts = distractor_counts(distractors)
    parts = ("accuracy", "value_accuracy", "r", "r_all_queries")
    results, n, ci95 = ({p: {} for p in parts} for _ in range(3))
    model = model.to(device).eval()
    rows = {num: [] for num in counts}
    for i in range(batches):
        batch = dictionary_eval_batch(cfg.data, batch_size, max(counts), seed=seed,
                                      first=i * batch_size).to(device)
        for num, part in _dictionary_rows(model, batch, k, counts).items():
            rows[num].append(part)
    for num in distractors:
        answers = torch.cat([r[0] for r in rows[num]]).cpu()
        for name, col in (("accuracy", 0), ("value_accuracy", 2)):
            total = int(answers[:, col + 1].sum())
            results[name][num] = float(answers[:, col].sum()) / total
            n[name][num], ci95[name][num] = total, wilson(results[name][num], total)
        if rows[num][0][1] is not None and num > 0:
            for name, col in (("r", 1), ("r_all_queries", 2)):
                own = torch.cat([r[col] for r in rows[num]]).cpu()
                results[name][num] = _pooled(own)
                n[name][num], ci95[name][num] = len(own), bootstrap(own, ratio_of_sums)
    for name in ("r", "r_all_queries"):
        if not results[name]:
            for part in (results, n, ci95):
                part.pop(name)
    return {**results, "n": n, "ci95": ci95}
