"""Where passkey-fot's memory layer looks while it answers, with top-k and with dense memory.

    python experiments/passkey_attention.py                      # 32x and 64x, 50 prompts each
    python experiments/passkey_attention.py --lengths 4x --trials 5 --no-record

The prompts are those of ``eval passkey`` (``fot_edu.evaluation.passkey.passkey_prompts``, seed 0), read
as ``passkey_answers`` reads them (``fot_edu.streaming.generate``: everything before the last
window goes into memory, the local context stays between n/2 and n tokens), except that the
answer " K." is fed token by token (teacher forcing), so both readings are measured at the same
queries. At every query that predicts a digit of K, the memory layer's attention weights give,
per head, the mass on the key line's memory slots (the memory holds the whole prompt, so slot =
byte position) and on all of memory (the rest is on the local window). ``correct``: every
answer token was the model's argmax, i.e. greedy decoding answers " K.". Writes
``results/records/passkey-attention-cpu.json`` (machine, load, command).
"""
from __future__ import annotations

import argparse
import statistics
import sys

import torch

from fot_edu.data.passkey import passkey_line
from fot_edu.data.tokenizer import encode_tensor
from fot_edu.evaluation import TOP_K
from fot_edu.evaluation.passkey import passkey_prompts
from fot_edu.evaluation.records import RECORDS_DIR, Recording, write_record
from fot_edu.training.checkpoint import load_model

DIGITS = set(b"0123456789")


@torch.no_grad()
def key_line_mass(model, window: int, text: str, key: int, k: int | None) -> dict:
    """One prompt read with top-``k`` (or dense, ``k=None``) memory: the mass per head on the
    key line's slots at the digit-predicting queries (mean over digits), and whether every
    answer token was the argmax."""
    layer = model.cfg.memory_layers[0]
    tokens, answer = encode_tensor(text)[None], encode_tensor(f" {key}.")
    start = text.index(passkey_line(key))  # ASCII: a character is a byte is a slot
    end = start + len(passkey_line(key))
    memories = model.new_memories(1, tokens.shape[1] + len(answer))
    split = max(0, tokens.shape[1] - window)
    for first in range(0, split, window):  # as streaming.generate
        model.prefill(tokens[:, first:min(first + window, split)], memories, k=k)
    local, masses, in_memory, correct = tokens[:, split:], [], [], True
    for target in answer.tolist():
        out = model(local, memories=memories, k=k, add_to_memory=False, trace=True)
        correct &= int(out.logits[0, -1].argmax()) == target
        if target in DIGITS:
            trace, filled = out.traces[layer], len(memories[layer])
            weights = trace.weights[0, :, -1, local.shape[1]:].float()  # (h, slots) of memory
            if k is None:  # dense: memory slot j holds byte j
                slots = torch.arange(weights.shape[-1]).expand_as(weights)
            else:  # top-k: which slots each head retrieved for this query
                slots = memories[layer].search(trace.queries[:, :, -1:], k).indices[0, :, 0]
            on_line = (slots >= start) & (slots < end) & (slots < filled)
            masses.append((weights * on_line).sum(-1))
            in_memory.append(weights.sum(-1))  # the rest of the softmax is on the local window
        local = torch.cat([local, torch.tensor([[target]])], dim=1)
        if local.shape[1] > window:  # the older half becomes memory, as streaming.generate
            older = max(1, window // 2)
            model.prefill(local[:, :older], memories, k=k)
            local = local[:, older:]
    return {"correct": bool(correct), "key_line_mass": torch.stack(masses).mean(0).tolist(),
            "memory_mass": torch.stack(in_memory).mean(0).tolist(), "in_memory": end <= split}


def summary(rows: list) -> dict:
    heads = range(len(rows[0]["key_line_mass"]))
    mean = lambda sel, part="key_line_mass": [  # noqa: E731
        round(statistics.mean(r[part][h] for r in sel), 3) for h in heads] if sel else None
    return {"n": len(rows), "correct": sum(r["correct"] for r in rows),
            "key_line_mass": mean(rows),
            "key_line_mass_correct": mean([r for r in rows if r["correct"]]),
            "key_line_mass_wrong": mean([r for r in rows if not r["correct"]]),
            "memory_mass": mean(rows, "memory_mass")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="passkey-fot")
    parser.add_argument("--lengths", default="32x,64x")
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--k", type=int, default=TOP_K)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-record", action="store_true", help="print only, write no record")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, cfg = load_model(args.checkpoint)
    recording = Recording(seed=0)  # the prompts of `eval passkey`, seed 0
    readings = {f"top{args.k}": args.k, "dense": None}
    result = {}
    for spec, prompts in passkey_prompts(args.lengths.split(","), cfg.data.window, args.trials).items():
        rows = {name: [key_line_mass(model, cfg.data.window, text, key, k) for text, key in prompts]
                for name, k in readings.items()}
        top, dense = rows[f"top{args.k}"], rows["dense"]
        result[spec] = {name: summary(r) for name, r in rows.items()}
        result[spec]["top_k_higher"] = [sum(t["key_line_mass"][h] > d["key_line_mass"][h]
                                            for t, d in zip(top, dense))
                                        for h in range(len(top[0]["key_line_mass"]))]
        result[spec]["key_line_in_memory"] = sum(r["in_memory"] for r in top)
        for name, s in result[spec].items():
            print(spec, name, s, flush=True)
    if not args.no_record:
        path = write_record(RECORDS_DIR / "passkey-attention-cpu.json", recording,
                            checkpoint=args.checkpoint, trials=args.trials, lengths=result)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
