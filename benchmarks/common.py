"""Shared helpers for the benchmark scripts: side-by-side timing and tables (the machine
description and records: ``fot_edu.evaluation.records``).

Every benchmark times its variants *interleaved* (A, B, C, A, B, C, ...) and reports medians and
ratios of medians, so that a noisy shared machine slows all variants alike and the ratios stay
meaningful even when the absolute numbers wander.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from fot_edu.evaluation.records import machine


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def compare(fns: dict, repeats: int = 5, warmup: int = 1, device="cpu") -> dict[str, float]:
    """Median seconds per call of each function, timed round-robin in the same run."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    sync(device)
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def time_once(fn, device="cpu") -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def rss_mib() -> float:
    """Resident set size of this process in MiB (Linux /proc; 0 elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def table(rows: list[dict], title: str) -> str:
    """A plain-text table from a list of dicts with the same keys."""
    if not rows:
        return f"{title}\n  (no rows)"
    cols = list(rows[0])
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = [title, "  ".join(c.rjust(w) for c, w in zip(cols, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(x.rjust(w) for x, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value == 0 or 0.01 <= abs(value) < 1e5:
            return f"{value:.3f}" if abs(value) < 100 else f"{value:,.0f}"
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def finish(name: str, ratios: dict, tables: list[str]) -> dict:
    """Print the tables, one summary line of ratios, and the ratios as JSON on the last line."""
    print(f"# {name} on {machine()}")
    for t in tables:
        print(t)
        print()
    rounded = {k: round(float(v), 3) for k, v in ratios.items()}
    print("summary: " + ", ".join(f"{k}={v}" for k, v in rounded.items()))
    print(json.dumps(rounded))
    sys.stdout.flush()
    return rounded


def quick_flag(argv=None):
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("FOT_BENCH_THREADS", 1)),
                        help="torch CPU threads (default 1: on a shared machine, OpenMP threads "
                             "that wait for a busy core make every timing erratic)")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    return args
