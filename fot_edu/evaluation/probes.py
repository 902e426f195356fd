r"""Measurements behind the figures: what a memory layer stored, found and attended to.

Paper: Focused Transformer §3.3 (the distraction issue, Fig. 3), §3.1 and §6 (kNN lookup).

A memory layer holds keys from many documents: the own document's previous context
:math:`C_\text{prev}` and, at inference, whatever else was read before (distractors). A query of
the current context :math:`C_\text{curr}` needs the keys of its own :math:`C_\text{prev}`; the
others only steal attention mass. :func:`memory_snapshot` turns one such situation into numbers:
it reads a dictionary-lookup document with ``N`` distractor documents in a
:class:`~fot_edu.memory.KNNMemory` and records every memory key, every query, the top-``k``
neighbours and the attention weights. The other functions reduce snapshots (or models) to the
plain numbers and dicts that ``fot_edu.teaching.figures`` draws (kNN recall and speed on real keys:
``fot_edu.evaluation.knn_recall``):

===========================  ============================================================
function                     measures
===========================  ============================================================
:func:`attention_mass`       dense memory attention of the answer queries per document
:func:`similarities`         query-key cosines, own document vs distractors
:func:`entry_key_cosine`     how close the keys of different dictionary entries are
:func:`retrieval_precision`  share of the top-k found that is the own document
:func:`retrieval_rows`       what one query retrieved, rank by rank
:func:`r_d_curves`           the paper's r_d against d for several models (``distraction``)
:func:`distraction_curves`   retrieval precision and own-document mass as N grows
===========================  ============================================================

Nothing here prints or draws.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from fot_edu.config import TrainConfig
from fot_edu.crossbatch import context_mass
from fot_edu.data.dictionary import DictionaryVocab, dictionary_eval_batch
from fot_edu.evaluation.distraction import distraction_curve
from fot_edu.evaluation.memory_fill import fill_memories, memory_layer, stack_items, window_items

SHOWN_TOP_K = 8  # neighbours a snapshot keeps per query: what the figures and widgets show


@dataclass
class MemorySnapshot:
    """One dictionary document read with ``N`` distractors in memory (batch row 0, one layer).

    Memory slot ``s`` holds the key of token ``slot_pos[s]`` of context ``slot_doc[s]``:
    0 .. N-1 are the distractors, ``N`` is the own ``C_prev`` (read last, nearest to the query).
    """
    keys: torch.Tensor  # (h, M, dh) unit memory keys
    slot_doc: torch.Tensor  # (M,) 0..N-1 distractor j, N = own document
    slot_pos: torch.Tensor  # (M,) position of the key's token in its window
    slot_text: list  # (M,) text around each key
    queries: torch.Tensor  # (h, n, dh) unit queries of C_curr
    query_text: list  # (n,) text around each query
    answer_queries: list  # positions of C_curr that predict an answer (the "<v>" after "<q> key")
    true_slot: dict  # answer position -> memory slot just after the matching definition
    definition_slots: dict  # answer position -> the slots of that definition ("<k>" .. just after)
    topk_slots: torch.Tensor  # (h, n, k) memory slots found by the kNN search
    topk_weights: torch.Tensor  # (h, n, k) attention weight on each found slot
    doc_mass: torch.Tensor  # (h, n, N + 1) dense memory attention mass per context
    local_mass: torch.Tensor  # (h, n) dense attention mass on the local window
    num_distractors: int
    correct: torch.Tensor  # (n,) bool: argmax prediction right (only answer targets meaningful)

    @property
    def own(self) -> int:
        return self.num_distractors

    def is_own(self) -> torch.Tensor:
        return self.slot_doc == self.own


def _snippet(words: list, pos: int, width: int = 3) -> str:
    left = " ".join(words[max(0, pos - width):pos])
    right = " ".join(words[pos + 1:pos + 1 + width])
    return f"{left} [{words[pos]}] {right}".strip()


def _definition_v_positions(window: torch.Tensor, vocab: DictionaryVocab, key_len: int) -> dict:
    """``{key tuple: position of its '<v>'}`` for the entries of a window (definitions or asks)."""
    ids = window.tolist()
    found = {}
    for p, t in enumerate(ids):
        if t in (vocab.k, vocab.q) and p + key_len + 1 < len(ids) and ids[p + key_len + 1] == vocab.v:
            found[tuple(ids[p + 1:p + 1 + key_len])] = p + key_len + 1
    return found


@torch.no_grad()
def memory_snapshot(model, cfg: TrainConfig, num_distractors: int = 7, *, k: int = SHOWN_TOP_K,
                    seed: int = 0, layer: int | None = None) -> MemorySnapshot:
    """Read one dictionary document with ``num_distractors`` other documents in memory.

    The distractors' definition windows go into memory first, then the own ``C_prev``; ``C_curr``
    (the questions) reads it twice: with top-``k`` kNN retrieval (what was found and its weight)
    and with dense memory attention (how the mass splits between documents).
    """
    if cfg.data.task != "dictionary":
        raise ValueError(f"memory_snapshot needs a dictionary model, got task={cfg.data.task!r}")
    layer = memory_layer(model, layer)
    model = model.cpu().eval()
    vocab = DictionaryVocab(cfg.data.num_symbols)
    batch = dictionary_eval_batch(cfg.data, 1, num_distractors, seed=seed)
    contexts = torch.cat([batch.distractors, batch.tokens[:, :1]], dim=1)  # (1, N + 1, n)
    c, n = contexts.shape[1], contexts.shape[2]
    memories = fill_memories(stack_items([window_items(model, contexts[:, j], torch.tensor([j]))
                                          for j in range(c)]))
    query = batch.tokens[:, 1]
    dense = model(query, memories=memories, k=None, add_to_memory=False, trace=True)
    trace = dense.traces[layer]
    weights = trace.weights.float()  # (1, h, n, n_local + M); MT: memory softmax alone
    n_local = weights.shape[-1] - c * n
    doc_mass = context_mass(weights, n_local, c)[0]  # (h, n, c)
    local_mass = weights[0, ..., :n_local].sum(-1)
    found = memories[layer].search(trace.queries, k)
    knn = model(query, memories=memories, k=k, add_to_memory=False, trace=True).traces[layer]
    topk_weights = knn.weights[0, ..., -found.indices.shape[-1]:].float()

    words = [[vocab.name(t) for t in window.tolist()] for window in contexts[0]]
    q_words = [vocab.name(t) for t in query[0].tolist()]
    defs = _definition_v_positions(contexts[0, -1], vocab, cfg.data.key_len)
    asks = _definition_v_positions(query[0], vocab, cfg.data.key_len)
    # the trained memory layers read an entry at the token right after it: by then the previous-
    # token heads below have carried its key and its value there (probes.top1_offsets measures it)
    end = {key: min(v + cfg.data.value_len + 1, n - 1) for key, v in defs.items()}
    first = {key: v - cfg.data.key_len - 1 for key, v in defs.items()}
    true_slot = {p: (c - 1) * n + end[key] for key, p in sorted(asks.items(), key=lambda kv: kv[1])
                 if key in defs}
    definition_slots = {p: set(range((c - 1) * n + first[key], (c - 1) * n + end[key] + 1))
                        for key, p in asks.items() if key in defs}
    targets = batch.targets[0, 1]
    correct = dense.logits[0].argmax(-1) == targets
    return MemorySnapshot(
        keys=memories[layer].keys[0, :, :c * n].clone(),
        slot_doc=torch.arange(c).repeat_interleave(n), slot_pos=torch.arange(n).repeat(c),
        slot_text=[_snippet(words[j], p) for j in range(c) for p in range(n)],
        queries=trace.queries[0].float(), query_text=[_snippet(q_words, p) for p in range(n)],
        answer_queries=sorted(true_slot), true_slot=true_slot, definition_slots=definition_slots,
        topk_slots=found.indices[0],
        topk_weights=topk_weights, doc_mass=doc_mass, local_mass=local_mass,
        num_distractors=num_distractors, correct=correct)


def doc_label(snap: MemorySnapshot, doc: int) -> str:
    return "own document" if doc == snap.own else f"distractor {doc + 1}"


def attention_mass(snap: MemorySnapshot, head: int | None = None) -> dict:
    """Mean dense attention mass of the answer queries: local, own document, each distractor."""
    mass = snap.doc_mass[:, snap.answer_queries]  # (h, a, N + 1)
    local = snap.local_mass[:, snap.answer_queries]
    if head is not None:
        mass, local = mass[head:head + 1], local[head:head + 1]
    per_doc = mass.mean(dim=(0, 1)).tolist()
    return {"local": local.mean().item(), "own": per_doc[snap.own], "distractors": per_doc[:snap.own]}


def similarities(snap: MemorySnapshot, head: int = 0) -> dict:
    """Cosine of every answer query with every memory key: ``{"own": [...], "distractors": [...]}``."""
    q = snap.queries[head, snap.answer_queries]  # (a, dh)
    sim = q @ snap.keys[head].float().T  # (a, M)
    own = snap.is_own()
    return {"own": sim[:, own].flatten().tolist(), "distractors": sim[:, ~own].flatten().tolist()}


def entry_key_cosine(snap: MemorySnapshot, head: int = 0) -> float:
    """Mean cosine between the keys at which different dictionary entries are read (the slot just
    after each entry, own document and distractors).

    High when keys of different entries crowd together. A model can still tell them apart with
    a sharp temperature (the logit is ``tau * cosine``): notebook 03 measures both for the
    shipped ``dict-d1`` and ``dict-fot``.
    """
    n = int(snap.slot_pos.max()) + 1
    read_at = {s % n for s in snap.true_slot.values()}
    slots = [s for s in range(snap.keys.shape[1]) if int(snap.slot_pos[s]) in read_at]
    keys = snap.keys[head, slots].float()
    sim = keys @ keys.T
    off = ~torch.eye(len(slots), dtype=torch.bool)
    return sim[off].mean().item() if off.any() else float("nan")


def top1_offsets(snap: MemorySnapshot) -> dict:
    """Where each answer query's best memory key sits, per head: ``{offset: count}`` with the
    offset in tokens from the slot just after the asked definition (0 = that slot), or
    ``"other document"``. Shows which token of an entry the memory layer learned to read."""
    counts: dict = {}
    for query, slot in snap.true_slot.items():
        for top in snap.topk_slots[:, query, 0].tolist():
            where = top - slot if snap.slot_doc[top] == snap.own else "other document"
            counts[where] = counts.get(where, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def retrieval_precision(snap: MemorySnapshot) -> float:
    """Share of the answer queries' top-k memory slots that hold the own document's keys."""
    slots = snap.topk_slots[:, snap.answer_queries]  # (h, a, k)
    return (snap.slot_doc[slots] == snap.own).float().mean().item()


def retrieval_rows(snap: MemorySnapshot, query: int | None = None, head: int = 0) -> list:
    """The query's top-k: ``[{"rank", "snippet", "document", "cosine", "weight"}, ...]``."""
    query = snap.answer_queries[0] if query is None else query
    rows = []
    for rank, (slot, weight) in enumerate(zip(snap.topk_slots[head, query].tolist(),
                                              snap.topk_weights[head, query].tolist()), 1):
        cos = float(snap.queries[head, query] @ snap.keys[head, slot].float())
        rows.append({"rank": rank, "snippet": snap.slot_text[slot],
                     "document": doc_label(snap, int(snap.slot_doc[slot])),
                     "cosine": round(cos, 3), "weight": round(weight, 3),
                     "asked definition": "yes" if slot in snap.definition_slots.get(query, ())
                     else ""})
    return rows


def r_d_curves(models: dict, ds=(1, 2, 4, 8, 16), batches: int = 1) -> dict:
    """``{name: {d: r_d}}`` for several ``{name: (model, cfg)}`` (see ``distraction.distraction_curve``)."""
    return {name: distraction_curve(model.cpu(), cfg, ds, batches=batches)
            for name, (model, cfg) in models.items()}


def distraction_curves(models: dict, distractors=(1, 3, 7, 15, 31), k: int = SHOWN_TOP_K, seeds=(0,)):
    """``{"precision": {name: {N: p}}, "own_mass": {name: {N: m}}}`` as distractors grow."""
    out = {"precision": {}, "own_mass": {}}
    for name, (model, cfg) in models.items():
        prec, mass = {}, {}
        for num in distractors:
            snaps = [memory_snapshot(model, cfg, num, k=k, seed=s) for s in seeds]
            prec[num] = sum(retrieval_precision(s) for s in snaps) / len(snaps)
            mass[num] = sum(attention_mass(s)["own"] for s in snaps) / len(snaps)
        out["precision"][name], out["own_mass"][name] = prec, mass
    return out
