"""kNN lookup on real memory keys: how often each search backend finds the exact top-k, and how fast.

Paper: Focused Transformer §3.1 and §6 (kNN lookup; faiss for large memories). Notebook 02 and
``benchmarks/knn.py`` draw from it. :func:`collect_keys` takes a trained model's memory-layer keys
and queries from held-out documents; :func:`knn_benchmark` searches them with every backend of
``fot_edu.memory.KNNMemory``.
"""
from __future__ import annotations

import time

import torch

from fot_edu.data.batches import eval_documents
from fot_edu.evaluation.probes import SHOWN_TOP_K
from fot_edu.memory import KNNMemory


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


def knn_benchmark(keys, queries, sizes, k: int = SHOWN_TOP_K, num_queries: int = 64,
                  backends=("exact", "faiss", "faiss-hnsw", "faiss-ivf"), repeats: int = 3) -> dict:
    """Recall@k against exact search and milliseconds per search batch, for each memory size.

    Recall counts a found key as right when its score reaches the exact ``k``-th best score
    (within float rounding): real memories hold many identical keys (every ``<pad>`` of every
    window), and which of several tied keys an index returns is arbitrary, not a miss. Time: the
    best of ``repeats`` searches. Returns ``{"recall": {backend: {size: r}}, "ms": {...}}``.
    """
    h, m, dh = keys.shape
    q = queries[:, :num_queries][None]  # (1, h, nq, dh)
    out = {"recall": {b: {} for b in backends}, "ms": {b: {} for b in backends}}
    for size in sizes:
        size = min(size, m)
        kth_best = None
        for backend in backends:
            memory = KNNMemory(1, h, dh, size, backend)
            memory.add(keys[None, :, :size], keys[None, :, :size])
            memory.search(q, k)  # builds the faiss index once
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                found = memory.search(q, k)
                times.append(time.perf_counter() - t0)
            out["ms"][backend][size] = 1000 * min(times)
            if kth_best is None:  # the first backend is the reference (exact)
                kth_best = found.scores[..., -1:]
            hits = (found.scores >= kth_best - 1e-5).float()
            out["recall"][backend][size] = hits.mean().item()
    return out
