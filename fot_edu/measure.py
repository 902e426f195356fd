r"""Small measurements behind the notebooks' plots: r_d curves, retrieval precision, kNN recall
and speed. (Perplexity against memory size and passkey accuracy live in ``fot_edu.evaluate``.)

Paper: Focused Transformer §3.3 (r_d, Fig. 3), §3.1 and §6 (kNN lookup), §5.1 (perplexity as
memory grows), Fig. 1 (passkey). Each function returns plain dicts ``{x: value}`` that
``fot_edu.viz`` plots; none of them prints or draws.
"""
from __future__ import annotations

import time

import torch

from . import viz
from .datasets import eval_documents
from .evaluate import distraction_curve
from .runtime import one_thread
from .memory import KNNMemory


def train_live(cfg, callback=None):
    """``train(cfg)`` without a progress bar, one CPU thread for tiny models; returns the result."""
    from .train import train

    with one_thread(cfg.model.d_model <= 64 and not torch.cuda.is_available()):
        return train(cfg, progress=False, callback=callback)


def r_d_curves(models: dict, ds=(1, 2, 4, 8, 16), batches: int = 1) -> dict:
    """``{name: {d: r_d}}`` for several ``{name: (model, cfg)}`` (see ``evaluate.distraction_curve``)."""
    return {name: distraction_curve(model.cpu(), cfg, ds, batches=batches)
            for name, (model, cfg) in models.items()}


def retrieval_precision(snap: viz.MemorySnapshot) -> float:
    """Share of the answer queries' top-k memory slots that hold the own document's keys."""
    slots = snap.topk_slots[:, snap.answer_queries]  # (h, a, k)
    return (snap.slot_doc[slots] == snap.own).float().mean().item()


def distraction_curves(models: dict, distractors=(1, 3, 7, 15, 31), k: int = 8, seeds=(0,)):
    """``{"precision": {name: {N: p}}, "own_mass": {name: {N: m}}}`` as distractors grow."""
    out = {"precision": {}, "own_mass": {}}
    for name, (model, cfg) in models.items():
        prec, mass = {}, {}
        for num in distractors:
            snaps = [viz.memory_snapshot(model, cfg, num, k=k, seed=s) for s in seeds]
            prec[num] = sum(retrieval_precision(s) for s in snaps) / len(snaps)
            mass[num] = sum(viz.attention_mass(s)["own"] for s in snaps) / len(snaps)
        out["precision"][name], out["own_mass"][name] = prec, mass
    return out


@torch.no_grad()
def collect_keys(model, cfg, windows: int = 64, layer: int | None = None):
    """Real memory-layer keys and queries: ``(h, m, dh)`` each, from held-out documents."""
    layer = layer or model.cfg.memory_layers[0]
    docs = eval_documents(cfg.data, "eval", count=max(1, windows // 4), windows=4)
    n = cfg.data.window
    chunks = torch.cat([d.tokens[: (d.num_tokens // n) * n].view(-1, n) for d in docs])[:windows]
    trace = model.cpu().eval()(chunks, trace=True).traces[layer]
    keys = trace.keys.permute(1, 0, 2, 3).flatten(1, 2)  # (h, windows * n, dh)
    queries = trace.queries.permute(1, 0, 2, 3).flatten(1, 2)
    return keys, queries


def knn_benchmark(keys, queries, sizes, k: int = 8, num_queries: int = 64,
                  backends=("exact", "faiss", "faiss-hnsw", "faiss-ivf")) -> dict:
    """Recall@k against exact search and milliseconds per search batch, for each memory size.

    Returns ``{"recall": {backend: {size: r}}, "ms": {backend: {size: t}}}``.
    """
    h, m, dh = keys.shape
    q = queries[:, :num_queries][None]  # (1, h, nq, dh)
    out = {"recall": {b: {} for b in backends}, "ms": {b: {} for b in backends}}
    for size in sizes:
        size = min(size, m)
        exact = None
        for backend in backends:
            memory = KNNMemory(1, h, dh, size, backend)
            memory.add(keys[None, :, :size], keys[None, :, :size])
            memory.search(q, k)  # builds the faiss index once
            t0 = time.perf_counter()
            found = memory.search(q, k)
            out["ms"][backend][size] = 1000 * (time.perf_counter() - t0)
            if exact is None:
                exact = found.indices
            hits = (found.indices[..., :, None] == exact[..., None, :]).any(-1).float()
            out["recall"][backend][size] = hits.mean().item()
    return out
