"""Why the text-* models read little from memory: two measurements, recorded.

    python scripts/text_diagnostic.py [--out docs/records/text-diagnostic-cpu.json]

1. **Copying inside the window.** Memory retrieval is copying from far away: a query finds the
   earlier occurrence of what it reads and takes what followed. A model that cannot do that
   inside its own window has nothing for a memory layer to extend (``fot_edu.copying.copy_gap``:
   64 rows of 100 bytes of held-out book text, 56 other bytes, the same 100 bytes again, all in
   one window; the loss on the second copy against the first; bootstrap over the rows).
2. **Where a memory layer's attention goes** (crossbatch reading, d = 8, the held-out pairs of
   ``evaluate.distraction_summary``): the share of the layer's attention on local keys and on the
   memory (the 8 previous windows), r_8 (own previous window's share of the memory part), and
   the largest weight any query gives one memory key.

Models: data/checkpoints/text-* by default (``--runs DIR`` reads DIR/NAME/checkpoint.pt).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from fot_edu.checkpoint import load_model  # noqa: E402
from fot_edu.copying import copy_gap  # noqa: E402
from fot_edu.datasets import training_batch  # noqa: E402
from fot_edu.evaluate import distraction_summary  # noqa: E402

NAMES = ("text-vanilla", "text-d1", "text-fot")


@torch.no_grad()
def memory_attention(model, cfg, d: int = 8) -> dict:
    """Attention of the memory layer's queries over local keys and d previous windows."""
    layer = model.cfg.memory_layers[0]
    n = cfg.data.window
    batch = training_batch(cfg.data, "eval", d, step=1000, seed=cfg.seed)
    weights = model.eval()(batch.tokens, d=d, trace=True).traces[layer].weights.float()
    local, memory = weights[..., :-d * n], weights[..., -d * n:]
    return {"local_mass": local.sum(-1).mean().item(), "memory_mass": memory.sum(-1).mean().item(),
            "largest_memory_weight": memory.max().item(),
            "r_8": distraction_summary(model, cfg, (d,))["r_d"][d], "rows": d}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, help="read DIR/NAME/checkpoint.pt instead of the shipped")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "records" / "text-diagnostic-cpu.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    results = {}
    for name in NAMES:
        model, cfg = load_model(args.runs / name / "checkpoint.pt" if args.runs else name)
        results[name] = {"copying": copy_gap(model, cfg)}
        if model.cfg.memory_layers:
            results[name]["memory_attention"] = memory_attention(model, cfg)
        print(name, json.dumps(results[name]))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip() or "unknown"
    record = {"command": "python scripts/text_diagnostic.py" + (f" --runs {args.runs}" if args.runs else ""),
              "commit": commit, "machine": f"{platform.machine()}, {os.cpu_count()} cores, 1 torch "
              f"thread, torch {torch.__version__}, python {platform.python_version()}",
              "seconds": round(time.perf_counter() - start, 1), "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
