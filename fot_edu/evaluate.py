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
from tqdm.auto import tqdm

from .config import TrainConfig
from .crossbatch import own_context_share
from .datasets import eval_documents, iter_stream_windows, pad_token, training_batch
from .model import FoTModel
from .streaming import generate
from .dictionary import DictionaryEvalBatch, dictionary_eval_batch
from .passkey import filler_chars_for_tokens, passkey_prompt, score_passkey
from .tokenizer import IGNORE, decode, encode_tensor


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


def _mean_over(values: torch.Tensor, query_mask: torch.Tensor | None) -> float:
    """Mean of ``(b, h, n)`` values over heads and the queries where ``query_mask`` ``(b, n)``."""
    if query_mask is None:
        return values.mean().item()
    weights = query_mask[:, None, :].expand_as(values).float()
    return ((values * weights).sum() / weights.sum().clamp(min=1)).item()


@torch.no_grad()
def distraction_ratio(model: FoTModel, tokens: torch.Tensor, d: int, *, query_mask=None,
                      layer: int | None = None) -> float:
    """The paper's r_d on pairs ``tokens`` ``(b, 2, n)``: own ``C_prev`` plus ``d - 1`` others.

    ``query_mask`` ``(b, n)``: average only over these ``C_curr`` queries (e.g. answer positions).
    """
    layer = memory_layer(model, layer)
    n = tokens.shape[-1]
    trace = model.eval()(tokens, d=d, trace=True).traces[layer]
    n_local = trace.weights.shape[-1] - d * n  # MT traces its memory softmax alone: no local part
    ratio = own_context_share(trace.weights.float(), n_local, d)  # (b, h, n)
    return _mean_over(ratio, query_mask)


@torch.no_grad()
def distraction_curve(model: FoTModel, cfg: TrainConfig, ds=(2, 4, 8, 16), *, batches: int = 2,
                      layer: int | None = None, device="cpu") -> dict:
    """``{d: r_d}`` on held-out pairs of the model's task, averaged over the ``C_curr`` queries
    that carry a target (the answer positions for the dictionary task).

    The one implementation of r_d against d: the command line, the report and the dashboard all
    call it, so they print the same figure for the same model. The pairs are fixed (batches of
    ``max(32, max(ds))`` rows at eval steps 1000, 1001, ...), so r_d for one d does not depend
    on which other d are asked for.
    """
    model = model.to(device)
    values = {d: 0.0 for d in ds}
    for i in range(batches):
        batch = training_batch(cfg.data, "eval", max(32, max(ds)), step=1000 + i,
                               seed=cfg.seed).to(device)
        mask = batch.targets[:, 1] != IGNORE
        for d in ds:
            values[d] += distraction_ratio(model, batch.tokens, d, query_mask=mask,
                                           layer=layer) / batches
    return values


def answer_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Share of target tokens (targets != -100) predicted exactly by argmax."""
    mask = targets != IGNORE
    if not mask.any():
        raise ValueError("no target tokens to score (every target is -100)")
    return (logits.argmax(-1)[mask] == targets[mask]).float().mean().item()


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


@torch.no_grad()
def read_dictionary_batch(model: FoTModel, batch: DictionaryEvalBatch, k: int | None = None):
    """Answer one (possibly hand-made) :class:`~fot_edu.dictionary.DictionaryEvalBatch`:
    ``(accuracy, r)`` with the row's distractors and own ``C_prev`` in memory.

    ``r`` is the own-document share of memory attention at the answer queries (None for a model
    without memory layers, which reads ``C_curr`` alone).
    """
    tokens, targets = batch.tokens, batch.targets
    if not model.cfg.memory_layers:
        return answer_accuracy(model(tokens[:, 1]).logits, targets[:, 1]), None
    contexts = torch.cat([batch.distractors, tokens[:, :1]], dim=1)
    ids = torch.cat([batch.distractor_ids, batch.doc_ids[:, None]], dim=1)
    logits, own = read_with_memory(model, contexts, ids, tokens[:, 1], batch.doc_ids, k)
    return answer_accuracy(logits, targets[:, 1]), _mean_over(own, targets[:, 1] != IGNORE)


@torch.no_grad()
def dictionary_accuracy(model: FoTModel, cfg: TrainConfig, distractors=(0, 1, 3, 7, 15, 31, 63),
                        *, batch_size: int = 32, batches: int = 2, k: int | None = None,
                        seed: int = 1234, device="cpu") -> dict:
    """Value-token accuracy and own-document attention mass ``r`` with N distractors in memory.

    Returns ``{"accuracy": {N: a}, "r": {N: r}}`` (``r`` is left out for N = 0, where all
    memory is the own document, and for models without memory). ``r`` averages over the
    answer queries only (the positions that predict a value token).
    """
    results = {"accuracy": {}, "r": {}}
    model = model.to(device).eval()
    for num in distractors:
        accs, rs = [], []
        for i in range(batches):
            batch = dictionary_eval_batch(cfg.data, batch_size, num, seed=seed + i).to(device)
            acc, r = read_dictionary_batch(model, batch, k)
            accs.append(acc)
            if r is not None:
                rs.append(r)
        results["accuracy"][num] = sum(accs) / len(accs)
        if rs and num > 0:
            results["r"][num] = sum(rs) / len(rs)
    return results


@torch.no_grad()
def perplexity_with_distractors(model: FoTModel, cfg: TrainConfig, distractors=(0, 7, 15), *,
                                batches: int = 4, k: int | None = None, seed: int = 1234,
                                device="cpu") -> dict:
    """Perplexity of held-out ``C_curr`` windows with the own ``C_prev`` plus ``N`` other
    documents' ``C_prev`` in memory; ``"no_memory"``: ``C_curr`` read alone."""
    model = model.to(device).eval()
    batch_size = max(16, max(distractors) + 1)
    totals = {"no_memory": [0.0, 0]} | {num: [0.0, 0] for num in distractors}
    for i in range(batches):
        batch = training_batch(cfg.data, "eval", batch_size, step=seed + i, seed=cfg.seed)
        tokens, targets, doc_ids = (t.to(device) for t in (batch.tokens, batch.targets, batch.doc_ids))
        mask = targets[:, 1] != IGNORE
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
            nll = F.cross_entropy(logits.float()[mask], targets[:, 1][mask], reduction="sum")
            totals[name][0] += nll.item()
            totals[name][1] += int(mask.sum())
    return {"perplexity": {name: math.exp(s / max(c, 1)) for name, (s, c) in totals.items()}}


@torch.no_grad()
def perplexity_vs_memory(model: FoTModel, cfg: TrainConfig, memory_tokens=(0, 256, 1024, 4096), *,
                         multi_doc: bool = False, num_docs: int = 8, batch_size: int = 4,
                         max_tokens_per_doc: int = 4096, k: int | None = None,
                         device="cpu") -> dict:
    """Perplexity of long held-out documents streamed window by window, against memory size.

    ``memory_tokens`` = capacity of the FIFO memory (0: no memory). Single-document mode
    (``multi_doc=False``) clears a row's memory when its document ends; multi-document mode
    keeps it, so earlier documents stay in memory as distractors.
    """
    model = model.to(device).eval()
    docs = eval_documents(cfg.data, "eval", count=num_docs)
    result = {}
    for capacity in memory_tokens:
        memories = model.new_memories(batch_size, capacity) if capacity and model.cfg.memory_layers else {}
        nll, count = 0.0, 0
        for step in iter_stream_windows(docs, batch_size, cfg.data.window, pad_token(cfg.data),
                                        max_tokens_per_doc=max_tokens_per_doc):
            if not multi_doc and step.new_doc.any():
                for memory in memories.values():
                    memory.clear(step.new_doc)
            tokens, targets = step.tokens.to(device), step.targets.to(device)
            logits = model(tokens, memories=memories, k=k, doc_ids=step.doc_ids.to(device)).logits
            mask = targets != IGNORE
            nll += F.cross_entropy(logits.float()[mask], targets[mask], reduction="sum").item()
            count += int(mask.sum())
        result[capacity] = math.exp(nll / max(count, 1))
    return {"perplexity": result}


def parse_length(spec: str, window: int) -> int:
    """``"4096"`` -> 4096 tokens; ``"32x"`` -> 32 times the training context (``2 * window``:
    C_prev + C_curr, what the model saw at once in training)."""
    text = str(spec).strip()
    try:
        tokens = int(float(text[:-1]) * 2 * window) if text.endswith("x") else int(text)
    except ValueError:
        tokens = None
    if tokens is None or tokens < 1:
        raise ValueError(f"length={spec!r} is not allowed: a token count like 4096 or a multiple "
                         f"of the training context like 32x")
    return tokens


@torch.no_grad()
def passkey_answers(model: FoTModel, cfg: TrainConfig, prompts, *, k: int | None = None,
                    memory: bool = True, device="cpu", progress: bool = False,
                    desc: str = "passkey") -> list[dict]:
    """Greedy answers to ``prompts`` ``[(text, key), ...]`` (any wording: build your own with
    :func:`fot_edu.passkey.passkey_prompt`): ``[{"key", "generated", "correct"}, ...]``.

    With ``memory`` the prompt before its last window goes into memory (top-``k``, or dense with
    ``k=None``) and the model answers from there. ``memory=False``: the vanilla reading, the
    model sees only the last ``2 n`` tokens of the prompt (its training context, C_prev + C_curr)
    in one window.
    """
    if cfg.model.vocab_size != 256:
        raise ValueError(f"passkey needs a byte-level model (vocab_size 256), this checkpoint has "
                         f"vocab_size={cfg.model.vocab_size} (task {cfg.data.task!r})")
    model = model.to(device).eval()
    answers = []
    for text, key in tqdm(prompts, desc=desc, disable=not progress):
        tokens = encode_tensor(text)[None].to(device)
        if memory:
            new = generate(model, tokens, max_new_tokens=8, window=cfg.data.window, k=k)
        else:  # one window, no store: 8 new tokens still fit in the training context
            context = 2 * cfg.data.window
            new = generate(model, tokens[:, -(context - 8):], max_new_tokens=8, window=context)
        generated = decode(new[0])
        answers.append({"key": key, "generated": generated, "correct": score_passkey(generated, key)})
    return answers


def passkey_accuracy(model: FoTModel, cfg: TrainConfig, lengths=("1x", "4x", "16x", "32x"), *,
                     trials: int = 10, k: int | None = None, seed: int = 0, device="cpu",
                     progress: bool = False, examples: list | None = None,
                     memory: bool = True) -> dict:
    """Passkey retrieval (Fig. 1) with the exact evaluation template: greedy decoding after the
    prompt has been streamed into memory; correct when the generated number equals the key.
    ``trials`` prompts per length (seeds ``seed .. seed + trials - 1``); ``examples``: a list that
    receives ``{"length", "key", "generated", "correct"}`` for every trial; ``memory``: see
    :func:`passkey_answers`."""
    if not (isinstance(trials, int) and trials >= 1):
        raise ValueError(f"trials={trials!r} is not allowed: a positive integer")
    # every length checked before the first prompt is read (a bad one fails at once)
    fillers = {}
    for spec in lengths:
        tokens = parse_length(spec, cfg.data.window)
        try:
            fillers[str(spec)] = filler_chars_for_tokens(tokens)
        except ValueError as err:
            raise ValueError(f"length={spec!r} ({tokens} tokens) is too short: {err}") from None
    result = {}
    for spec, filler_chars in fillers.items():
        prompts = [passkey_prompt(filler_chars, seed=seed + t) for t in range(trials)]
        answers = passkey_answers(model, cfg, prompts, k=k, memory=memory, device=device,
                                  progress=progress, desc=f"passkey {spec}")
        result[spec] = sum(a["correct"] for a in answers) / trials
        if examples is not None:
            examples.extend({"length": spec, **a} for a in answers)
    return {"accuracy": result}
