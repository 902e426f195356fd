"""Training-step throughput: crossbatch FoT (d=8) vs a plain step of the same model vs no memory.

All three variants run forward + backward + AdamW on the same ``(b, 2, n)`` token batch:

* ``fot_d8``: crossbatch, C_curr's memory layer attends to its own C_prev and 7 others' (§3.2);
* ``plain``: the same model, memory layer attending only its own window (``model(tokens)``);
* ``memory_off``: a model of the same size with no memory layer (RoPE everywhere).

Target: the FoT step takes at most 1.3x the plain step.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from common import compare, finish, quick_flag, table

from fot_edu.config import ModelConfig
from fot_edu.model import FoTModel


def make_step(model, tokens, targets, d, autocast):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        with autocast():
            out = model(tokens, d=d)
            loss = F.cross_entropy(out.logits.float().flatten(0, -2), targets.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def run(quick: bool, device="cpu", bf16=False, d=8):
    torch.manual_seed(0)
    b, n = (16, 64) if quick else (32, 64)
    size = dict(vocab_size=256, d_model=128, n_layers=3, n_heads=4, d_ff=512)
    if device != "cpu" and not quick:
        b, n = 64, 512
        size.update(d_model=512, n_layers=6, n_heads=8, d_ff=2048, max_window=512)
    tokens = torch.randint(0, 256, (b, 2, n), device=device)
    targets = torch.randint(0, 256, (b, 2, n), device=device)
    dtype = torch.bfloat16 if bf16 else None
    autocast = (lambda: torch.autocast(torch.device(device).type, dtype=dtype)) if bf16 \
        else contextlib.nullcontext
    with_memory = FoTModel(ModelConfig(**size, memory_layers=(size["n_layers"] * 2 // 3 - 1,))).to(device)
    no_memory = FoTModel(ModelConfig(**size, memory_layers=())).to(device)
    steps = {
        f"fot_d{d}": make_step(with_memory, tokens, targets, d, autocast),
        "plain": make_step(with_memory, tokens, targets, None, autocast),
        "memory_off": make_step(no_memory, tokens, targets, None, autocast),
    }
    secs = compare(steps, repeats=5 if quick else 10, warmup=2, device=device)
    rows = [{"variant": name, "ms/step": 1e3 * s, "tokens/s": tokens.numel() / s,
             "vs plain": s / secs["plain"]} for name, s in secs.items()]
    ratios = {"fot_over_plain": secs[f"fot_d{d}"] / secs["plain"],
              "fot_over_memory_off": secs[f"fot_d{d}"] / secs["memory_off"],
              "plain_over_memory_off": secs["plain"] / secs["memory_off"]}
    title = (f"train step, b={b}, n={n} (x2 windows), d_model={size['d_model']}, "
             f"{size['n_layers']} layers, {device}{' bf16' if bf16 else ' fp32'} (time ratio: lower is better)")
    return [table(rows, title)], ratios


if __name__ == "__main__":
    args = quick_flag()
    tables, ratios = run(args.quick, args.device, args.bf16)
    finish("train_step", ratios, tables)
