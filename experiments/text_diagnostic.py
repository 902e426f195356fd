"""Why the text-* models read little from memory: two measurements, recorded.

    python experiments/text_diagnostic.py [--out results/records/text-diagnostic-cpu.json]

1. **Copying inside the window.** Memory retrieval is copying from far away: a query finds the
   earlier occurrence of what it reads and takes what followed. A model that cannot do that
   inside its own window has nothing for a memory layer to extend (``fot_edu.evaluation.copying.copy_gap``:
   64 rows of 100 bytes of held-out book text, 56 other bytes, the same 100 bytes again, all in
   one window; the loss on the second copy against the first; bootstrap over the rows); the same
   with spans of random printable bytes (``random_copying``), which nothing but copying predicts;
   and the induction score of every layer and head (``copying.induction_scores``: where copying lives).
   Passkey inside one window (``passkey_in_window``: 50 prompts of one window's length, memory
   off): copying that starts after a phrase of text, as a passkey's first digit must.
2. **Where a memory layer's attention goes** (crossbatch reading, d = 8, the held-out pairs of
   ``distraction.distraction_summary``): the share of the layer's attention on local keys and on the
   memory (the 8 previous windows), r_8 (own previous window's share of the memory part), and
   the largest weight any query gives one memory key.

Models: the six shipped ``text-*`` checkpoints by default, the copying base and its continuations and
the plain-key negative control (``--runs DIR`` reads DIR/NAME/checkpoint.pt; ``--names`` chooses).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from fot_edu.data.batches import training_batch
from fot_edu.evaluation.copying import copy_gap, induction_scores
from fot_edu.evaluation.distraction import distraction_summary
from fot_edu.evaluation.passkey import passkey_accuracy
from fot_edu.evaluation.records import RECORDS_DIR, Recording, write_record
from fot_edu.training.checkpoint import load_model

NAMES = ("text-plain-vanilla", "text-plain-d1", "text-plain-fot", "text-vanilla", "text-d1", "text-fot")


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
    parser.add_argument("--names", default=",".join(NAMES), help="models, separated by commas (default: all six)")
    parser.add_argument("--out", type=Path, default=RECORDS_DIR / "text-diagnostic-cpu.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    recording = Recording(seed=0)
    results = {}
    for name in args.names.split(","):
        model, cfg = load_model(args.runs / name / "checkpoint.pt" if args.runs else name)
        results[name] = {"copying": copy_gap(model, cfg), "random_copying": copy_gap(model, cfg, content="random"),
                         "induction": induction_scores(model),
                         "passkey_in_window": passkey_accuracy(model, cfg, [str(cfg.data.window)], trials=50,
                                                               memory=False)}
        if model.cfg.memory_layers:
            results[name]["memory_attention"] = memory_attention(model, cfg)
        print(name, json.dumps(results[name]))
    print(f"wrote {write_record(args.out, recording, results=results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
