"""Long-document evaluation throughput: a memory layer (top-k and dense) vs local attention only.

The shipped ``code-fot`` checkpoint (3 layers, d_model 128, 4 heads, one memory layer) reads one
document window by window (b=1, n=128), as in ``fot_edu.streaming.stream_logits``. Its memory is
already full with M items (4k, 64k, 256k tokens), so every window searches M keys per head, then
pushes its own keys in and the oldest out (FIFO). Variants, timed side by side on the same windows:

* ``local``: the same model with no memory (``model(window)``: memory layer sees its window only);
* ``top-k``: exact kNN search, k=32 per query and head (``KNNMemory.search``), then eq. 1;
* ``top-k ivf``: the same with approximate, incremental search (``KNNMemory`` backend
  ``"faiss-ivf"``: nprobe 16 of 105 lists at 4k, of 1024 at 64k and 256k); the recall@32
  column compares its neighbours with exact top-k's on the same memory, for the queries of two
  of the timed windows (``ivf_recall_*`` in the JSON);
* ``dense``: all M items in one softmax (k = all memory, what LongLLaMA's code does).

The memory holds **real model keys**: the memory layer's unit keys and values of the M tokens of
standard-library code (eval split) that come right before the timed windows. They are computed
by running only the layers below the memory layer: no layer below it reads memory, so these are
exactly the items streaming would have stored. Real keys matter for ``top-k ivf``: IVF finds
neighbours well when keys are clustered, as a trained model's are, and poorly on random vectors
(``knn.py`` shows both), so random keys would misstate its recall.

Target: top-k at 64k keeps at least 0.5x of the local-only tokens/s.

Also: 1M tokens of keys streamed through a fixed-capacity memory, to show that the memory stays
at capacity and the process's resident memory stays flat.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from common import compare, finish, quick_flag, rss_mib, table
from einops import rearrange

from fot_edu.data.batches import eval_documents
from fot_edu.evaluation import TOP_K
from fot_edu.memory import KNNMemory
from fot_edu.training.checkpoint import load_model


@torch.no_grad()
def memory_layer_items(model, tokens: torch.Tensor, n: int):
    """Unit keys and values ``(h, L, dh)`` of the first memory layer for ``tokens`` ``(L,)``,
    read as windows of ``n``: the layers below it, then its key/value projection."""
    layer = model.cfg.memory_layers[0]
    block = model.blocks[layer]
    keys, values = [], []
    for chunk in tokens.view(-1, n).split(256):
        x = model.embed(chunk)
        for below in model.blocks[:layer]:
            x, _ = below(x)
        qkv = block.attn.to_qkv(block.norm_attn(x))
        _, k, v = rearrange(qkv, "c n (three h dh) -> three h (c n) dh", three=3, h=model.cfg.n_heads)
        keys.append(F.normalize(k, dim=-1))
        values.append(v)
    return torch.cat(keys, dim=1), torch.cat(values, dim=1)


def fill(memories, keys, values):
    """Push ``(h, M, dh)`` keys/values into every ``(b=1)`` memory, 64k at a time."""
    for memory in memories.values():
        for start in range(0, keys.shape[1], 65_536):
            chunk = slice(start, start + 65_536)
            memory.add(keys[None, :, chunk], values[None, :, chunk])


@torch.no_grad()
def recall_at_k(model, windows, exact, approx) -> float:
    """Share of exact top-k neighbours that the approximate memories also return."""
    hits = []
    for window in windows:
        traces = model(window, trace=True).traces
        for layer, memory in exact.items():
            q = traces[layer].queries  # (b, h, n, dh) unit queries
            want, got = memory.search(q, TOP_K).indices, approx[layer].search(q, TOP_K).indices
            hits.append((want[..., None] == got[..., None, :]).any(-1).float().mean())
    return float(torch.stack(hits).mean())


def _faiss_for(device):
    """faiss when it can serve this device (faiss-cpu: the CPU only), else None: no IVF row."""
    if torch.device(device).type != "cpu":
        return None
    try:
        import faiss
    except ImportError:
        return None
    faiss.omp_set_num_threads(torch.get_num_threads())
    return faiss


def run(quick: bool, device="cpu", bf16=False):
    with_ivf = _faiss_for(device) is not None
    torch.manual_seed(0)
    model, train_cfg = load_model("code-fot", device)
    cfg = model.cfg
    n, b = 128, 1
    sizes = (4096, 65_536, 262_144)
    tokens = torch.cat([d.tokens for d in eval_documents(train_cfg.data)]).to(device)
    keys, values = memory_layer_items(model, tokens[:max(sizes)], n)
    windows = tokens[max(sizes):max(sizes) + 8 * n].view(8, b, n)  # the text that follows
    autocast = (lambda: torch.autocast(torch.device(device).type, dtype=torch.bfloat16)) if bf16 \
        else contextlib.nullcontext
    rows, ratios = [], {}
    for size in sizes:
        memories = model.new_memories(b, size)
        ivf_memories = model.new_memories(b, size, "faiss-ivf") if with_ivf else None
        for mem in (memories, ivf_memories):  # the size tokens just before the windows
            if mem is not None:
                fill(mem, keys[:, -size:], values[:, -size:])
        recall = recall_at_k(model, windows[:2], memories, ivf_memories) if with_ivf else None
        counter = iter(range(10**9))

        @torch.no_grad()
        def step(**kw):
            with autocast():
                return model(windows[next(counter) % len(windows)], **kw)

        variants = {"local": lambda: step(),
                    "top-k": lambda: step(memories=memories, k=TOP_K),
                    "top-k ivf": lambda: step(memories=ivf_memories, k=TOP_K),
                    "dense": lambda: step(memories=memories, k=None)}
        if not with_ivf:
            del variants["top-k ivf"]
        secs = compare(variants, repeats=2 if quick or size > 65_536 else 4, device=device)
        for mem in (memories, ivf_memories):  # full, and FIFO kept it full
            assert mem is None or len(next(iter(mem.values()))) == size
        for name, s in secs.items():
            rows.append({"memory": size, "variant": name, "ms/window": 1e3 * s,
                         "tokens/s": b * n / s, "vs local": secs["local"] / s,
                         f"recall@{TOP_K}": {"top-k": 1.0, "top-k ivf": recall}.get(name)})
        ratios[f"topk_over_local_{size // 1024}k"] = secs["local"] / secs["top-k"]
        ratios[f"dense_over_local_{size // 1024}k"] = secs["local"] / secs["dense"]
        if with_ivf:
            ratios[f"topkivf_over_local_{size // 1024}k"] = secs["local"] / secs["top-k ivf"]
            ratios[f"ivf_recall_{size // 1024}k"] = recall
        del memories, ivf_memories

    rss_rows, growth = bounded_memory_stream(1_048_576)
    ratios["rss_growth_mib_1m_tokens"] = growth
    title = (f"streaming evaluation, code-fot checkpoint, memory of its own keys, b={b}, n={n}, "
             f"d_model={cfg.d_model}, {cfg.n_heads} heads, k={TOP_K}, {device}"
             f"{' bf16' if bf16 else ' fp32'} (vs local: throughput ratio, higher is better; "
             f"recall@{TOP_K}: vs exact top-k)")
    return [table(rows, title),
            table(rss_rows, "1M tokens of keys through KNNMemory(capacity=65,536, b=1, h=4, dh=32)")], ratios


def bounded_memory_stream(total: int, capacity: int = 65_536, chunk: int = 8192):
    memory = KNNMemory(1, 4, 32, capacity)
    g = torch.Generator().manual_seed(1)
    rows, baseline = [], None
    for i, start in enumerate(range(0, total, chunk)):
        keys = torch.randn(1, 4, chunk, 32, generator=g)
        memory.add(keys, keys)
        memory.search(keys[:, :, :8], TOP_K)
        done = start + chunk
        if baseline is None and done >= 2 * capacity:  # after the first wrap-arounds
            baseline = rss_mib()
        if done in (capacity, 2 * capacity, total // 2, total):
            rows.append({"tokens streamed": done, "items in memory": len(memory),
                         "RSS MiB": rss_mib()})
    return rows, rss_mib() - baseline


if __name__ == "__main__":
    args = quick_flag()
    tables, ratios = run(args.quick, args.device, args.bf16)
    finish("streaming", ratios, tables)
