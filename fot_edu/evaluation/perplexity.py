r"""Perplexity with memory: what other documents' windows cost, and what a longer memory gives.

Paper: Focused Transformer §3.3 (the distraction issue) on real text, and §4.1/§5.1 (perplexity
against memory size, Fig. 5/6). Both score windows with :func:`nll_rows`.

**Against memory size** (:func:`perplexity_vs_memory`): held-out documents are streamed window by
window (``fot_edu.streaming``): each window's memory queries search the kNN memory, then its keys
join it. The same tokens are scored with a memory of 0, 1k, 4k, ... tokens of the document's own
earlier text.

**With distractors** (:func:`perplexity_with_distractors`):
each held-out window ``C_curr`` is read three ways: alone (``"no_memory"``), with its own
``C_prev`` in memory (N = 0), and with its own ``C_prev`` plus the windows of ``N`` other documents
(``fot_edu.evaluation.memory_fill`` builds the memories from windows computed once). A focused model loses little
when distractors join: its **rise** (perplexity with N minus with N = 0) is small, and its
**rise ratio** over a ``d = 1`` model of the same data says how much smaller. The windows and
distractors are fixed (``fot_edu.evaluation.sets.perplexity_eval_set``); the intervals resample files.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from fot_edu.config import TrainConfig
from fot_edu.data.batches import eval_documents, iter_stream_windows, pad_token
from fot_edu.data.tokenizer import IGNORE
from fot_edu.evaluation.distraction import distractor_counts
from fot_edu.evaluation.memory_fill import fill_memories, read_memories, stack_items, window_items
from fot_edu.evaluation.sets import perplexity_eval_set
from fot_edu.evaluation.stats import bootstrap, exp_ratio_of_sums
from fot_edu.model import FoTModel
from fot_edu.streaming import read_window


def nll_rows(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``(b, 2)``: per row, the summed negative log-likelihood of its targets and their count."""
    mask = targets != IGNORE
    nll = F.cross_entropy(logits.float().flatten(0, -2), targets.flatten(), reduction="none",
                          ignore_index=IGNORE).view(targets.shape)
    return torch.stack([nll.sum(-1), mask.sum(-1).float()], dim=-1).cpu()


def perplexities(rows: dict) -> dict:
    """``{key: (u, 2) nll sums and counts}`` -> perplexity, units counted, bootstrap interval."""
    rows = {key: torch.cat(r) if isinstance(r, list) else r for key, r in rows.items()}
    rows = {key: r[r[:, 1] > 0] for key, r in rows.items()}
    return {"perplexity": {key: math.exp(float(r[:, 0].sum()) / max(float(r[:, 1].sum()), 1))
                           for key, r in rows.items()},
            "n": {"perplexity": {key: len(r) for key, r in rows.items()}},
            "ci95": {"perplexity": {key: bootstrap(r, exp_ratio_of_sums) for key, r in rows.items()}}}


def _rise(units: torch.Tensor) -> torch.Tensor:
    """For units ``(nll N, tokens, nll 0, tokens)``: perplexity with N minus with 0."""
    return exp_ratio_of_sums(units[..., :2]) - exp_ratio_of_sums(units[..., 2:4])


def _rise_ratio(units: torch.Tensor) -> torch.Tensor:
    """For units of two models ``(rise units of a, rise units of b)``: a's rise over b's."""
    return _rise(units[..., :4]) / _rise(units[..., 4:])


@torch.no_grad()
def _perplexity_units(model: FoTModel, cfg: TrainConfig, distractors, *, batches, k, seed,
                      device, chunk: int = 64) -> dict:
    """``{setting: (units, 2)}`` nll sums and token counts per bootstrap unit."""
    counts = distractor_counts(distractors)
    pairs, units, pool, pool_ids, chosen = perplexity_eval_set(cfg, max(counts), batches=batches,
                                                               seed=seed)
    model = model.to(device).eval()
    sums = {name: torch.zeros(int(units.max()) + 1, 2, dtype=torch.float64)
            for name in ["no_memory", *counts]}
    memory = bool(model.cfg.memory_layers)
    pool_items = window_items(model, pool.to(device), pool_ids.to(device)) if memory else {}
    for start in range(0, len(units), chunk):
        rows = slice(start, start + chunk)
        tokens, targets = pairs.tokens[rows].to(device), pairs.targets[rows, 1].to(device)
        ids = pairs.doc_ids[rows].to(device)
        alone = nll_rows(model(tokens[:, 1]).logits, targets)
        results = {"no_memory": alone}
        if memory:
            items = [window_items(model, tokens[:, 0], ids)]
            items += [{layer: tuple(x[chosen[rows, t].to(device)] for x in parts)
                       for layer, parts in pool_items.items()} for t in range(max(counts))]
            stacked = stack_items(items)
            for num in counts:
                memories = fill_memories(stacked, (num + 1) * tokens.shape[-1])
                logits, _ = read_memories(model, memories, tokens[:, 1], ids, k, trace=False)
                results[num] = nll_rows(logits, targets)
        for name, part in results.items():
            sums[name].index_add_(0, units[rows], part.double())
        for num in ([] if memory else counts):  # no memory layer: reads C_curr alone anyway
            sums[num].index_add_(0, units[rows], alone.double())
    keep = sums["no_memory"][:, 1] > 0  # units outside a subset
    return {name: part[keep] for name, part in sums.items()}


@torch.no_grad()
def perplexity_with_distractors(model: FoTModel, cfg: TrainConfig, distractors=(0, 7, 15), *,
                                batches: int | None = None, k: int | None = None,
                                seed: int = 1234, device="cpu",
                                baseline: FoTModel | None = None) -> dict:
    """Perplexity of held-out ``C_curr`` windows with the own ``C_prev`` plus ``N`` other
    documents' windows in memory; ``"no_memory"``: ``C_curr`` read alone.

    The windows (:func:`perplexity_eval_set`): for a corpus every held-out window but each
    file's first (``batches`` keeps a fixed subset of ``16 * batches``), the same for every N;
    ``n`` counts files and the intervals resample them (bootstrap). ``"rise"`` (when N = 0 is
    asked for): perplexity with N distractors minus with the own ``C_prev`` alone, per N > 0,
    with a paired bootstrap over files. ``baseline`` (another model of the same data):
    ``"rise_ratio"``, this model's rise over the baseline's, on the same windows and distractors.

    On the shipped code models (9,823 windows of 53 files) the perplexity intervals are about
    +-0.22 (files differ), the rise's +-0.01 to +-0.02, the rise ratio's +-0.01. It takes 5
    minutes per memory model on one thread of an idle 2-core CPU (``batches=4``: seconds).
    """
    units = _perplexity_units(model, cfg, distractors, batches=batches, k=k, seed=seed,
                              device=device)
    out = perplexities(units)
    more = [num for num in distractors if num != 0] if 0 in distractors else []
    figures = {"rise": {num: torch.cat([units[num], units[0]], -1) for num in more}}
    if baseline is not None and more:
        base = _perplexity_units(baseline, cfg, distractors, batches=batches, k=k, seed=seed,
                                 device=device)
        figures["rise_ratio"] = {num: torch.cat([figures["rise"][num], base[num], base[0]], -1)
                                 for num in more}
    for name, per_num in figures.items():
        if not per_num:
            continue
        statistic = _rise if name == "rise" else _rise_ratio
        out[name] = {num: float(statistic(u[None].double())[0]) for num, u in per_num.items()}
        out["n"][name] = {num: len(u) for num, u in per_num.items()}
        out["ci95"][name] = {num: bootstrap(u, statistic) for num, u in per_num.items()}
    return {**{key: value for key, value in out.items() if key not in ("n", "ci95")},
            "n": out["n"], "ci95": out["ci95"]}


@dataclass(frozen=True)
class _Span:
    """The part of a document a memory size reads: ``tokens``/``targets`` from some offset on."""

    id: int
    tokens: torch.Tensor
    targets: torch.Tensor

    @property
    def num_tokens(self) -> int:
        return int(self.tokens.shape[0])


def relative_drop(units: torch.Tensor) -> torch.Tensor:
    """For units ``(nll with memory, tokens, nll without, tokens)``: 1 - perplexity ratio."""
    return 1 - exp_ratio_of_sums(units[..., :2]) / exp_ratio_of_sums(units[..., 2:4])


@torch.no_grad()
def perplexity_vs_memory(model: FoTModel, cfg: TrainConfig, memory_tokens=(0, 1024, 4096, 16384), *,
                         score_from: int | None = None, num_docs: int | None = None,
                         max_tokens_per_doc: int | None = None, batch_size: int = 8,
                         k: int | None = None, device="cpu", progress: bool = False) -> dict:
    """Perplexity of held-out documents against the size of a single-document memory (§5.1).

    Every memory size scores **the same tokens**: each document's windows from ``score_from``
    tokens on (default: the largest size, rounded up to whole windows), up to
    ``max_tokens_per_doc`` (default: the whole document). A memory of ``M`` tokens (a FIFO, so it
    holds the ``M`` tokens before the window read) starts reading ``M`` tokens before
    ``score_from``, so it is full when scoring starts; ``M = 0`` reads the window alone. Documents
    shorter than ``score_from`` plus one window are left out; ``num_docs`` keeps the first ones.

    Returns ``{"perplexity": {M: p}, "drop": {M: 1 - p(M) / p(0)}, "n": ..., "ci95": ...}``:
    ``n`` counts documents, the intervals resample them (bootstrap; ``drop`` paired, the same
    documents for both sizes). ``drop`` needs 0 among the sizes.
    """
    sizes = sorted({int(m) for m in memory_tokens})
    if not sizes or sizes[0] < 0:
        raise ValueError(f"memory_tokens={memory_tokens!r} is not allowed: token counts >= 0")
    n = cfg.data.window
    start = score_from if score_from is not None else -(-sizes[-1] // n) * n
    if not (isinstance(start, int) and start >= sizes[-1] and start % n == 0):
        raise ValueError(f"score_from={score_from!r} is not allowed: a multiple of the window "
                         f"({n}) of at least the largest memory size ({sizes[-1]})")
    end = max_tokens_per_doc
    if end is not None and end < start + n:
        raise ValueError(f"max_tokens_per_doc={end!r} is not allowed: at least score_from + one "
                         f"window = {start + n}")
    docs = [d for d in eval_documents(cfg.data, "eval") if d.num_tokens >= start + n]
    docs = docs[:num_docs] if num_docs is not None else docs
    if not docs:
        raise ValueError(f"no held-out document of {cfg.data.task!r} is longer than score_from + "
                         f"one window ({start + n} tokens): lower the memory sizes or score_from")
    model = model.to(device).eval()
    memory_model = bool(model.cfg.memory_layers)
    sums = {}
    for size in tqdm(sizes, desc="memory sizes", disable=not progress):
        begin = start - -(-size // n) * n  # whole windows, so windows line up with score_from
        spans = [_Span(d.id, d.tokens[begin:end], d.targets[begin:end]) for d in docs]
        memories = model.new_memories(batch_size, size) if size and memory_model else {}
        offset = torch.zeros(batch_size, dtype=torch.long)
        per_doc = {d.id: torch.zeros(2, dtype=torch.float64) for d in docs}
        for step in iter_stream_windows(spans, batch_size, n, pad_token(cfg.data)):
            offset = torch.where(step.new_doc, 0, offset + n)
            out = read_window(model, step.tokens.to(device), memories, k=k,
                              doc_ids=step.doc_ids.to(device), reset=step.new_doc)
            rows = nll_rows(out.logits, step.targets.to(device)).double()
            for r in torch.nonzero(step.active & (offset + begin >= start)).flatten().tolist():
                per_doc[int(step.doc_ids[r])] += rows[r]
        sums[size] = torch.stack([per_doc[d.id] for d in docs])
    out = perplexities(sums)
    if 0 in sums:
        paired = {size: torch.cat([sums[size], sums[0]], -1) for size in sizes if size}
        out["drop"] = {size: float(relative_drop(u[None])[0]) for size, u in paired.items()}
        out["n"]["drop"] = {size: len(u) for size, u in paired.items()}
        out["ci95"]["drop"] = {size: bootstrap(u, relative_drop) for size, u in paired.items()}
    return {**{key: value for key, value in out.items() if key not in ("n", "ci95")},
            "n": out["n"], "ci95": out["ci95"]}
