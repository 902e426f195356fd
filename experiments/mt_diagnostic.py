"""Why the Memorizing Transformer fails on the dictionary task, measured: ``python experiments/mt_diagnostic.py``.

For the shipped ``dict-mt``, ``dict-d1`` and ``dict-fot``: the memory layer's keys at the slots
where dictionary entries are read (the token after each entry), for one held-out document with 7
distractor documents in memory (80 entries, ``probes.memory_snapshot``), and their mean pairwise
cosine per head (``probes.entry_key_cosine``): near 1 means the keys of different entries have
collapsed onto one direction, so no query can tell them apart. Beside it, each head's temperature
and, for MT, its gate ``sigmoid(b_h)`` (the share of the output that comes from memory).

Writes ``results/records/mt-diagnostic-cpu.json`` (``fot_edu.evaluation.records``).
"""
from __future__ import annotations

import torch

from fot_edu.evaluation.probes import entry_key_cosine, memory_snapshot
from fot_edu.evaluation.records import RECORDS_DIR, Recording, write_record
from fot_edu.training.checkpoint import load_model

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
    recording = Recording(seed=0)  # memory_snapshot's dictionary documents: seed 0
    models = {}
    for name in MODELS:
        models[name] = diagnose(name)
        print(name, models[name])
    path = write_record(RECORDS_DIR / "mt-diagnostic-cpu.json", recording, distractors=DISTRACTORS,
                        models=models)
    print(f"record: {path}")


if __name__ == "__main__":
    main()
