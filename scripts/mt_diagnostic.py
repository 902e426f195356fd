"""Why the Memorizing Transformer fails on the dictionary task, measured: ``python scripts/mt_diagnostic.py``.

For the shipped ``dict-mt``, ``dict-d1`` and ``dict-fot``: the memory layer's keys at the slots
where dictionary entries are read (the token after each entry), for one held-out document with 7
distractor documents in memory (80 entries, ``probes.memory_snapshot``), and their mean pairwise
cosine per head (``probes.entry_key_cosine``): near 1 means the keys of different entries have
collapsed onto one direction, so no query can tell them apart. Beside it, each head's temperature
and, for MT, its gate ``sigmoid(b_h)`` (the share of the output that comes from memory).

Writes ``docs/records/mt-diagnostic-cpu.json`` (command, commit, machine, Python and torch versions).
"""
from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import machine  # noqa: E402
from fot_edu.checkpoint import load_model  # noqa: E402
from fot_edu.probes import entry_key_cosine, memory_snapshot  # noqa: E402

MODELS = ("dict-mt", "dict-d1", "dict-fot")
DISTRACTORS = 7


def diagnose(name: str) -> dict:
    model, cfg = load_model(name)
    snap = memory_snapshot(model, cfg, DISTRACTORS)
    attn = model.blocks[model.cfg.memory_layers[0]].attn
    heads = range(model.cfg.n_heads)
    out = {"entry_key_cosine": [round(entry_key_cosine(snap, h), 4) for h in heads],
           "entries": (DISTRACTORS + 1) * cfg.data.entries_per_window,
           "temperature": [round(t, 3) for t in attn.log_tau.exp().tolist()]}
    if hasattr(attn, "gate_bias"):
        out["gate"] = [round(g, 4) for g in torch.sigmoid(attn.gate_bias).tolist()]
    return out


def main() -> None:
    torch.set_num_threads(1)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip() or "unknown"
    models = {}
    for name in MODELS:
        models[name] = diagnose(name)
        print(name, models[name])
    record = {"command": "python scripts/mt_diagnostic.py", "commit": commit, "machine": machine(),
              "python": platform.python_version(), "torch": torch.__version__,
              "distractors": DISTRACTORS, "models": models}
    path = ROOT / "docs" / "records" / "mt-diagnostic-cpu.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"record: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
