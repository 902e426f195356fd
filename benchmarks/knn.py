"""kNN retrieval: KNNMemory's exact search vs a bare matmul + top-k, and faiss indexes.

1. ``KNNMemory(backend="exact").search`` against ``(q @ K^T).topk(k)`` on the same keys: the
   store's overhead (masking, gathering keys and values). Target: at most 1.2x.
2. faiss: an exact flat index and two approximate ones (HNSW graph, IVF clusters) at 64k and 1M
   keys: build time, query time and recall@k against the exact answer.

The keys are **real model keys**: the unit keys of the memory layer (head 0) of a trained model,
computed over corpus text, and the queries are that layer's unit queries on other text. Trained
model: ``fot_edu/shipped/checkpoints/dict-fot.pt`` when it exists (streaming its task's documents), else a
``code-fot`` model trained here for a few dozen steps on the standard-library code corpus. Random
unit vectors are measured too, for comparison: real keys are clustered, which is what makes
approximate search both useful and harder to get right.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from common import compare, finish, quick_flag, table

from fot_edu.data.batches import eval_documents
from fot_edu.memory import KNNMemory
from fot_edu.training.checkpoint import CHECKPOINT_DIR, load_model
from fot_edu.training.presets import preset
from fot_edu.training.train import train

K = 32


def trained_model(quick: bool):
    """(model, cfg, how) — the shipped dict-fot checkpoint, or a briefly trained code model."""
    path = CHECKPOINT_DIR / "dict-fot.pt"
    if path.exists():
        model, cfg = load_model(path)
        return model, cfg, f"checkpoint {path.name}"
    steps = 20 if quick else 60
    cfg = preset("code-fot").replace(steps=steps, batch_size=8, warmup_steps=5, eval_every=10_000,
                                     checkpoint_every=10_000)
    result = train(cfg, progress=False, device="cpu", eval_batch_fn=None)
    last = result.history[-1]["loss"]
    return result.model, result.config, f"code-fot trained here for {steps} steps (loss {last:.2f})"


@torch.no_grad()
def memory_layer_qk(model, cfg, count: int, head: int = 0):
    """``count`` unit keys and unit queries of the first memory layer, from eval documents.

    Only the layers up to the memory layer's projection run: its keys do not depend on memory.
    """
    layer = model.cfg.memory_layers[0]
    n = cfg.data.window
    tokens = torch.cat([d.tokens for d in eval_documents(cfg.data)])
    need = 2 * count  # half for keys, half (plus) for queries
    if tokens.numel() < need:
        tokens = tokens.repeat(need // tokens.numel() + 1)
    windows = tokens[: need // n * n].view(-1, n)
    keys, queries = [], []
    for chunk in windows.split(256):
        x = model.embed(chunk)
        for block in model.blocks[:layer]:
            x, _ = block(x)
        attn = model.blocks[layer].attn
        qkv = attn.to_qkv(model.blocks[layer].norm_attn(x)).view(*chunk.shape, 3, model.cfg.n_heads, -1)
        queries.append(F.normalize(qkv[:, :, 0, head], dim=-1).flatten(0, 1))
        keys.append(F.normalize(qkv[:, :, 1, head], dim=-1).flatten(0, 1))
    keys, queries = torch.cat(keys), torch.cat(queries)
    half = keys.shape[0] // 2
    return keys[:count].contiguous(), queries[half:].contiguous()


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    hits = sum(len(set(f) & set(e)) for f, e in zip(found.tolist(), exact.tolist()))
    return hits / exact.size


def faiss_rows(keys: torch.Tensor, queries: torch.Tensor, label: str, hnsw: bool):
    import faiss

    n, dh = keys.shape
    xb, xq = keys.numpy().astype(np.float32), queries.numpy().astype(np.float32)
    t0 = time.perf_counter()
    exact_idx = (queries @ keys.T).topk(K, dim=-1).indices.numpy()
    exact_s = time.perf_counter() - t0
    rows = [{"keys": label, "index": "torch exact", "build s": 0.0,
             "query us/q": 1e6 * exact_s / len(xq), f"recall@{K}": 1.0}]
    nlist = int(4 * n ** 0.5)
    candidates = [("faiss flat", lambda: faiss.IndexFlatIP(dh), None),
                  (f"faiss IVF{nlist} nprobe16",
                   lambda: faiss.IndexIVFFlat(faiss.IndexFlatIP(dh), dh, nlist, faiss.METRIC_INNER_PRODUCT),
                   lambda ix: setattr(ix, "nprobe", 16))]
    if hnsw:
        def set_ef(ix):
            ix.hnsw.efSearch = 64
        candidates.append(("faiss HNSW32 ef64",
                           lambda: faiss.IndexHNSWFlat(dh, 32, faiss.METRIC_INNER_PRODUCT), set_ef))
    out = {}
    for name, make, tune in candidates:
        t0 = time.perf_counter()
        index = make()
        if not index.is_trained:
            index.train(xb[np.random.default_rng(0).choice(n, min(n, 32 * nlist), replace=False)])
        index.add(xb)
        build = time.perf_counter() - t0
        if tune:
            tune(index)
        t0 = time.perf_counter()
        _, idx = index.search(xq, K)
        query = time.perf_counter() - t0
        r = recall(idx, exact_idx)
        rows.append({"keys": label, "index": name, "build s": build,
                     "query us/q": 1e6 * query / len(xq), f"recall@{K}": r})
        out[name.split()[1]] = (r, query / exact_s)
    return rows, out


def run(quick: bool, device="cpu", bf16=False):
    import faiss

    faiss.omp_set_num_threads(torch.get_num_threads())
    torch.manual_seed(0)
    model, cfg, how = trained_model(quick)
    model = model.float().eval()
    big = 131_072 if quick else 1_048_576
    keys_all, queries_all = memory_layer_qk(model, cfg, big)
    dh = keys_all.shape[1]
    nq = 256 if quick else 1024
    queries = queries_all[:nq]

    # 1. KNNMemory vs bare matmul + topk, same keys, same queries (one row, one head)
    store_rows, ratios = [], {}
    for size in (65_536, big):
        keys = keys_all[:size]
        memory = KNNMemory(1, 1, dh, size)
        memory.add(keys.view(1, 1, size, dh), keys.view(1, 1, size, dh))
        q4, kt = queries.view(1, 1, nq, dh), keys.T.contiguous()
        secs = compare({"KNNMemory.search": lambda: memory.search(q4, K),
                        "matmul+topk": lambda: (queries @ kt).topk(K, dim=-1)},
                       repeats=3 if quick else 5)
        ratio = secs["KNNMemory.search"] / secs["matmul+topk"]
        store_rows.append({"keys": size, "queries": nq, "KNNMemory ms": 1e3 * secs["KNNMemory.search"],
                           "matmul+topk ms": 1e3 * secs["matmul+topk"], "ratio": ratio})
        ratios[f"knnmemory_over_bare_{size // 1024}k"] = ratio

    # 2. faiss on real keys (64k and big) and random unit keys (64k)
    faiss_table = []
    for size in (65_536, big):
        rows, out = faiss_rows(keys_all[:size], queries, f"model {size // 1024}k", hnsw=size == 65_536 or not quick)
        faiss_table += rows
        for name, (r, speed) in out.items():
            ratios[f"recall_{name.lower()}_{size // 1024}k"] = r
            ratios[f"{name.lower()}_query_over_torch_{size // 1024}k"] = speed
    rand = F.normalize(torch.randn(65_536, dh), dim=-1)
    rows, out = faiss_rows(rand, F.normalize(torch.randn(nq, dh), dim=-1), "random 64k", hnsw=not quick)
    faiss_table += rows
    for name, (r, _) in out.items():
        ratios[f"recall_{name.lower()}_random_64k"] = r
    note = "" if big == 1_048_576 else " (--quick: 1M reduced to 128k; HNSW on model keys at 64k only)"
    return [table(store_rows, f"KNNMemory exact search vs bare matmul+topk, k={K}, dh={dh}, fp32"),
            table(faiss_table, f"faiss on {how}: keys of memory layer head 0, k={K}{note}")], ratios


if __name__ == "__main__":
    args = quick_flag()
    tables, ratios = run(args.quick, args.device, args.bf16)
    finish("knn", ratios, tables)
