"""Reading a window with a memory assembled from chosen windows (evaluation with distractors).

A memory is a set of (key, value) pairs, each tagged with the document it came from. To ask
"how does the model read ``C_curr`` with its own ``C_prev`` and N other documents in memory",
we compute once what each window would store (:func:`window_items`: the window read on its own,
with an empty memory), stack the windows we want (:func:`stack_items`, own first) and hand the
model memories that hold exactly those slots (:func:`fill_memories`; the first ``(N + 1) * n``
slots give the memory for N distractors, without copying). With one memory layer, as every
preset, a window's stored keys do not depend on the memory at all, so this is exactly what
streaming the windows one after the other stores, at a fraction of the cost (tested).

Smeared keys and convolved queries and keys (``ModelConfig.smear_keys``, ``qk_conv`` on a memory
layer; ``fot_edu.smear``, ``fot_edu.qk_conv``): a window read on its own mixes its first key (its
first ``W - 1`` queries and keys) with zeros. That is what crossbatch training stores (each
``C_prev`` read from zeros), and what streaming stores for a document's first window; for a later
window streaming mixes in the raw tokens of the window before. The query read by
:func:`read_memories` starts from zeros too, where training and streaming continue the window
before it. So for such a memory layer one key (``W - 1`` keys and queries) per window can differ
from streaming; none without them.
"""
from __future__ import annotations

import torch

from fot_edu.memory import KNNMemory
from fot_edu.model import FoTModel


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


@torch.no_grad()
def window_items(model: FoTModel, windows: torch.Tensor, doc_ids: torch.Tensor,
                 chunk: int = 32) -> dict:
    """``{layer: (keys, values, doc_ids)}``: what each window ``(b, n)`` puts into each memory
    layer when read on its own with an empty memory (keys/values ``(b, h, n, dh)``, ids
    ``(b, n)``). Windows are independent, so they go through ``chunk`` at a time."""
    parts = []
    for rows in torch.arange(len(windows)).split(chunk):
        memories = model.new_memories(len(rows), windows.shape[1])
        model.prefill(windows[rows], memories, doc_ids=doc_ids[rows])
        parts.append({layer: (m.keys, m.values, m.doc_ids) for layer, m in memories.items()})
    return {layer: tuple(torch.cat([p[layer][j] for p in parts]) for j in range(3))
            for layer in parts[0]}


def stack_items(items: list[dict]) -> dict:
    """``items`` (from :func:`window_items`) one after the other: ``{layer: (keys, values,
    doc_ids)}`` with ``c * n`` slots, the first item's first."""
    return {layer: tuple(torch.cat([item[layer][j] for item in items], dim=2 if j < 2 else 1)
                         for j in range(3)) for layer in items[0]}


def fill_memories(stacked: dict, slots: int | None = None) -> dict:
    """Memories holding the first ``slots`` (default all) of :func:`stack_items`'s slots, no copy."""
    return {layer: KNNMemory.holding(keys[:, :, :slots], values[:, :, :slots], ids[:, :slots])
            for layer, (keys, values, ids) in stacked.items()}


def read_memories(model: FoTModel, memories: dict, query, query_ids, k=None, layer=None, trace=True):
    """Read ``query`` ``(b, n)`` with ``memories``: logits and (``trace``) the share of memory
    attention per query on the query's own document ``(b, h, n)``."""
    out = model(query, memories=memories, k=k, doc_ids=query_ids, add_to_memory=False, trace=trace)
    if not trace:
        return out.logits, None
    trace = out.traces[memory_layer(model, layer)]
    docs = trace.memory_docs  # (b, M) dense or (b, h, n, k) top-k
    memory_weights = trace.weights.float()[..., -docs.shape[-1]:]
    if docs.dim() == 2:
        docs = docs[:, None, None, :].expand_as(memory_weights)
    own = (memory_weights * (docs == query_ids.view(-1, 1, 1, 1))).sum(-1)
    return out.logits, own / memory_weights.sum(-1).clamp(min=1e-12)


@torch.no_grad()
def read_with_memory(model: FoTModel, contexts: torch.Tensor, context_ids: torch.Tensor,
                     query: torch.Tensor, query_ids: torch.Tensor, k: int | None = None,
                     layer: int | None = None):
    """Put ``contexts`` ``(b, c, n)`` into fresh memories, then read ``query`` ``(b, n)``.

    Each context window goes through the model on its own (its keys computed in its own local
    context) and is added to memory with its document id ``context_ids`` ``(b, c)``. Returns the
    query's logits ``(b, n, vocab)`` and the share of memory attention per query that lands on
    the query's own document, ``(b, h, n)``.
    """
    items = [window_items(model, contexts[:, j], context_ids[:, j]) for j in range(contexts.shape[1])]
    return read_memories(model, fill_memories(stack_items(items)), query, query_ids, k, layer)
