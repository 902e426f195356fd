"""How close does a training step come to the machine's matmul speed?

FLOPs of one crossbatch training step (d=8, forward + backward) are counted by
``torch.utils.flop_counter.FlopCounterMode`` (matmuls and attention; elementwise work counts
zero). The step's achieved FLOP/s is divided by the best FLOP/s of square matmuls (256..1024 on
a CPU) timed in the same run, in fp32 and in bf16 autocast. The optimizer step is timed too but adds no counted FLOPs.

Why the fraction is well below 1 on a small model: the matrices are small (d_model 128, head
dim 32), so each matmul is short and memory-bound; LayerNorm, GELU, softmax, RoPE, the
normalisation of q and k, the crossbatch gather and the AdamW update are elementwise passes over
memory that count no FLOPs but take time; and each of the ~100 operators of a step pays a fixed
dispatch cost in Python and ATen. On CPUs without native bf16 units, bf16 autocast adds casts
around every matmul and can be slower than fp32.
"""
from __future__ import annotations

import contextlib

import torch
from common import compare, finish, quick_flag, table
from torch.utils.flop_counter import FlopCounterMode
from train_step import make_step

from fot_edu.config import ModelConfig
from fot_edu.model import FoTModel


def matmul_flops_per_s(size: int, autocast, device, repeats: int) -> float:
    """A square fp32 matmul under the same autocast as the step (bf16: it computes in bf16)."""
    a = torch.randn(size, size, device=device)
    bm = torch.randn(size, size, device=device)

    def mm():
        with autocast():
            return a @ bm
    secs = compare({"mm": mm}, repeats=repeats, warmup=2, device=device)["mm"]
    return 2 * size ** 3 / secs


def run(quick: bool, device="cpu", bf16=None):
    torch.manual_seed(0)
    b, n, d = (16, 64, 8)
    size = dict(vocab_size=256, d_model=128, n_layers=3, n_heads=4, d_ff=512, memory_layers=(1,))
    if device != "cpu" and not quick:
        b, n = 64, 512
        size.update(d_model=512, n_layers=6, n_heads=8, d_ff=2048, max_window=512, memory_layers=(3,))
    model = FoTModel(ModelConfig(**size)).to(device)
    tokens = torch.randint(0, 256, (b, 2, n), device=device)
    targets = torch.randint(0, 256, (b, 2, n), device=device)
    kind = torch.device(device).type
    rows, ratios = [], {}
    for label, dtype in (("fp32", torch.float32), ("bf16 autocast", torch.bfloat16)):
        autocast = contextlib.nullcontext if dtype == torch.float32 else \
            (lambda: torch.autocast(kind, dtype=torch.bfloat16))
        step = make_step(model, tokens, targets, d, autocast)
        counter = FlopCounterMode(display=False)
        with counter:
            step()
        flops = counter.get_total_flops()
        slow = dtype == torch.bfloat16 and device == "cpu"  # ~10x slower without bf16 units
        sizes = (8192,) if device != "cpu" else (256, 512) if slow else (256, 512, 1024)
        peak = max(matmul_flops_per_s(s, autocast, device, 3 if quick else 6) for s in sizes)
        secs = compare({"step": step}, repeats=(1 if slow else 3) if quick else 6, warmup=1,
                       device=device)["step"]
        achieved = flops / secs
        rows.append({"precision": label, "GFLOP/step": flops / 1e9, "ms/step": 1e3 * secs,
                     "step GFLOP/s": achieved / 1e9, "matmul GFLOP/s": peak / 1e9,
                     "fraction": achieved / peak})
        ratios["fraction_fp32" if dtype == torch.float32 else "fraction_bf16"] = achieved / peak
        ratios["matmul_bf16_over_fp32" if dtype != torch.float32 else "_fp32_peak"] = peak
    fp32_peak = ratios.pop("_fp32_peak")
    ratios["matmul_bf16_over_fp32"] = ratios["matmul_bf16_over_fp32"] / fp32_peak
    ratios["step_bf16_over_fp32_time"] = rows[1]["ms/step"] / rows[0]["ms/step"]
    title = (f"crossbatch step d={d}, b={b}, n={n} (x2), d_model={size['d_model']}, {device}; "
             "matmul: best of square sizes 256..1024 (cpu) or 8192 (cuda), same autocast")
    return [table(rows, title)], ratios


if __name__ == "__main__":
    args = quick_flag()
    tables, ratios = run(args.quick, args.device)
    finish("fraction_of_peak", ratios, tables)
