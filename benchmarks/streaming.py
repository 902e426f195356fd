"""Long-document evaluation throughput: a memory layer (top-k and dense) vs local attention only.

A ``code-fot``-sized model (3 layers, d_model 128, 4 heads, one memory layer) reads one document
window by window (b=1, n=128), as in ``fot_edu.streaming.stream_logits``. Its memory is already
full with M items (4k, 64k, 256k tokens), so every window searches M keys per head, then pushes
its own keys in and the oldest out (FIFO). Variants, timed side by side on the same windows:

* ``local``: the same model with no memory (``model(window)``: memory layer sees its window only);
* ``top-k``: exact kNN search, k=32 per query and head (``KNNMemory.search``), then eq. 1;
* ``dense``: all M items in one softmax (k = all memory, what LongLLaMA's code does).

Target: top-k at 64k keeps at least 0.5x of the local-only tokens/s.

Also: 1M tokens of keys streamed through a fixed-capacity memory, to show that the memory stays
at capacity and the process's resident memory stays flat.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from common import compare, finish, quick_flag, rss_mib, table  # noqa: E402  (sets sys.path)

from fot_edu.config import preset
from fot_edu.memory import KNNMemory
from fot_edu.model import FoTModel

TOP_K = 32


def fill(memories, size, generator):
    for memory in memories.values():
        b, h, dh = memory.batch_size, memory.num_heads, memory.head_dim
        for start in range(0, size, 65_536):
            count = min(65_536, size - start)
            keys = F.normalize(torch.randn(b, h, count, dh, generator=generator), dim=-1)
            memory.add(keys.to(memory.keys.device), keys.to(memory.keys.device))


def run(quick: bool, device="cpu", bf16=False):
    torch.manual_seed(0)
    cfg = preset("code-fot").model
    model = FoTModel(cfg).to(device).eval()
    n, b = 128, 1
    sizes = (4096, 65_536, 262_144)
    g = torch.Generator().manual_seed(0)
    windows = torch.randint(0, 256, (8, b, n), generator=g).to(device)
    autocast = (lambda: torch.autocast(torch.device(device).type, dtype=torch.bfloat16)) if bf16 \
        else contextlib.nullcontext
    rows, ratios = [], {}
    for size in sizes:
        memories = model.new_memories(b, size)
        fill(memories, size, g)
        counter = iter(range(10**9))

        @torch.no_grad()
        def step(**kw):
            with autocast():
                return model(windows[next(counter) % len(windows)], **kw)

        secs = compare({"local": lambda: step(),
                        "top-k": lambda: step(memories=memories, k=TOP_K),
                        "dense": lambda: step(memories=memories, k=None)},
                       repeats=2 if quick or size > 65_536 else 4, device=device)
        assert len(next(iter(memories.values()))) == size  # full, and FIFO kept it full
        for name, s in secs.items():
            rows.append({"memory": size, "variant": name, "ms/window": 1e3 * s,
                         "tokens/s": b * n / s, "vs local": secs["local"] / s})
        ratios[f"topk_over_local_{size // 1024}k"] = secs["local"] / secs["top-k"]
        ratios[f"dense_over_local_{size // 1024}k"] = secs["local"] / secs["dense"]
        del memories

    rss_rows, growth = bounded_memory_stream(1_048_576)
    ratios["rss_growth_mib_1m_tokens"] = growth
    title = (f"streaming evaluation, b={b}, n={n}, d_model={cfg.d_model}, {cfg.n_heads} heads, "
             f"k={TOP_K}, {device}{' bf16' if bf16 else ' fp32'} (vs local: throughput ratio, higher is better)")
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
