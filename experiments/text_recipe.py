"""Does a copying base give the LongLLaMA recipe something to extend? One base, two continuations,
every figure of the issue's targets, recorded.

    python experiments/copy_emergence.py --arm curriculum --steps 1600 --smear-keys 2 --save runs/base-smear2.pt
    python experiments/text_recipe.py --base runs/base-smear2.pt --name smear2 [--data cross]

The base is any vanilla ``books`` checkpoint of the ``text-vanilla`` architecture (``--save`` of
``experiments/copy_emergence.py``: e.g. the copy-first curriculum, with or without smeared keys).
Its layers ``--memory-layers`` (default 2, as ``text-plain-d1``/``-fot``; the shipped ``text-d1``/``text-fot``: 0) become LongLLaMA memory
layers (RoPE kept, ``fot_edu.training.longllama``) and two continuations train for 10% of the base's
steps, with ``text-d1``'s and ``text-fot``'s settings (lr 1e-3, 20 warm-up steps; FoT: d = 1,
then 4 from a quarter of the steps, 8 from half). ``--data``: what the continuations read:
``plain`` book pairs; ``strings`` (half the rows carry a string written twice inside a window);
``cross`` (half the rows carry a string in ``C_prev`` that recurs in ``C_curr``: only reading
the previous window predicts it); ``cross-phrase`` (the same with the 24 bytes of text before the
string copied with it, a passkey's shape): the ``DataConfig.repeats`` mixes of ``fot_edu.data.repeats``.

Measured, per model: the copy gap (random and text spans), induction scores per layer and head;
the base's passkey at 1x without memory, its learned smear shares and its copying with the
smearing switched off; per continuation: r_8 (``eval distraction --d 8``),
perplexity against a single-document memory of 0, 1k, 4k, 16k tokens (dense, and with top-32
lookup as at inference), the rise with 7 distractor books (and the ratio of FoT's rise to d=1's),
passkey with top-32 memory at 1x and 16x.
Writes ``results/records/text-recipe-<name>-cpu.json`` (``fot_edu.evaluation.records``)
and the continuations to ``runs/text-recipe-<name>-{d1,fot}.pt``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from fot_edu.evaluation import TOP_K
from fot_edu.evaluation.copying import copy_gap, induction_scores
from fot_edu.evaluation.distraction import distraction_summary
from fot_edu.evaluation.passkey import passkey_accuracy
from fot_edu.evaluation.perplexity import perplexity_vs_memory, perplexity_with_distractors
from fot_edu.evaluation.records import RECORDS_DIR, Recording, write_record
from fot_edu.training.checkpoint import load_checkpoint, load_model, save_checkpoint
from fot_edu.training.objective import with_task_vocab
from fot_edu.training.presets import preset
from fot_edu.training.train import Trainer, starting_weights

DATA = {"plain": (), "strings": ((0, "strings"),), "cross": ((0, "cross"),),  # DataConfig.repeats
        "cross-phrase": ((0, "cross-phrase"),)}
MEMORY_TOKENS = (0, 1024, 4096, 16384)


def copying(model, cfg) -> dict:
    out = {content: copy_gap(model, cfg, content=content) for content in ("random", "text")}
    return {**out, "induction": induction_scores(model)}


def without_smearing(model, cfg) -> dict:
    """The base's copying with every smear share set to 1 (``sigmoid(40)``: keys unsmeared), the
    rest unchanged: does its copying run through smeared keys? (Should a memory layer keep them?)"""
    saved = {i: b.attn.smear_logit.detach().clone() for i, b in enumerate(model.blocks)
             if hasattr(b.attn, "smear_logit")}
    if not saved:
        return {}
    with torch.no_grad():
        for i in saved:
            model.blocks[i].attn.smear_logit.fill_(40.0)
        out = {"layers": sorted(saved), "random": copy_gap(model, cfg, content="random"),
               "induction": induction_scores(model)}
        for i, logit in saved.items():
            model.blocks[i].attn.smear_logit.copy_(logit)
    return out


def continuation_config(base: Path, base_cfg, kind: str, layers, steps: int, data: str):
    """``text-d1``/``text-fot`` (``fot_edu.training.presets``) with this base, its model, these
    layers and ``data`` (a name of ``DATA``)."""
    cfg = preset(f"text-{kind}")
    model = base_cfg.model.__class__(**{**base_cfg.model.__dict__, "memory_layers": tuple(layers),
                                        "memory_position": "rope"})
    schedule = ((0, 1), (steps // 4, 4), (steps // 2, 8)) if kind == "fot" else ()
    return with_task_vocab(cfg.replace(model=model, base=str(base), steps=steps, d_schedule=schedule,
                                       eval_every=steps, checkpoint_every=steps,
                                       data__repeats=DATA[data]))


def memory_figures(model, cfg, baseline=None, trials: int = 50) -> dict:
    out = {"r_8": distraction_summary(model, cfg, (8,)),
           f"passkey_top{TOP_K}": passkey_accuracy(model, cfg, ["1x", "16x"], trials=trials, k=TOP_K),
           "perplexity_vs_memory": perplexity_vs_memory(model, cfg, MEMORY_TOKENS),
           f"perplexity_vs_memory_top{TOP_K}": perplexity_vs_memory(model, cfg, MEMORY_TOKENS, k=TOP_K)}
    out["perplexity_distractors"] = perplexity_with_distractors(model, cfg, (0, 7), baseline=baseline)
    return out


def write(args, recording, state, layers, steps, results, done=False) -> Path:
    """The record as it stands (also after the base and each continuation: a run cut short
    keeps what it measured; ``"finished"`` says whether every model was measured)."""
    return write_record(RECORDS_DIR / f"text-recipe-{args.name}-cpu.json", recording,
                        base_command=state["extra"].get("record"), continuation_steps=steps,
                        base_steps=state["step"], memory_layers=list(layers), data=args.data,
                        results=results, finished=done)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=Path, required=True, help="a vanilla books checkpoint")
    parser.add_argument("--name", required=True, help="the record's name: text-recipe-NAME-cpu.json")
    parser.add_argument("--memory-layers", default="2", help="comma-separated layer indices")
    parser.add_argument("--data", choices=sorted(DATA), default="plain")
    parser.add_argument("--steps", type=int, help="continuation steps (default: 10%% of the base's)")
    parser.add_argument("--kinds", default="d1,fot", help="continuations: d1, fot or both")
    parser.add_argument("--trials", type=int, default=50, help="passkey prompts per length")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    layers = tuple(int(x) for x in args.memory_layers.split(","))
    state = load_checkpoint(args.base)
    steps = args.steps or max(1, state["step"] // 10)
    base_model, base_cfg = load_model(args.base)
    recording = Recording(seed=base_cfg.seed, command=(
        f"python experiments/text_recipe.py --base {args.base} --name {args.name} "
        f"--memory-layers {args.memory_layers} --data {args.data}"
        + (f" --steps {args.steps}" if args.steps else "")
        + (f" --kinds {args.kinds}" if args.kinds != "d1,fot" else "")
        + (f" --trials {args.trials}" if args.trials != 50 else "")))
    results = {"base": {**copying(base_model, base_cfg), "passkey_1x_no_memory": passkey_accuracy(
        base_model, base_cfg, ["1x"], trials=50, memory=False),
        "smear_share": {i: torch.sigmoid(b.attn.smear_logit).tolist() for i, b in
                        enumerate(base_model.blocks) if hasattr(b.attn, "smear_logit")},
        "without_smearing": without_smearing(base_model, base_cfg)}}
    print("base", json.dumps(results["base"]["random"]), results["base"]["induction"]["scores"], flush=True)
    write(args, recording, state, layers, steps, results)
    models = {}
    for kind in args.kinds.split(","):
        cfg = continuation_config(args.base, base_cfg, kind, layers, steps, args.data)
        trainer = Trainer(cfg, init_state=starting_weights(cfg))
        began = time.perf_counter()
        while not trainer.done:
            row = trainer.step()
        model = trainer.result().model.eval()
        path = Path("runs") / f"text-recipe-{args.name}-{kind}.pt"
        path.parent.mkdir(exist_ok=True)
        save_checkpoint(path, model, cfg, step=steps)
        models[kind] = (model, cfg)
        results[kind] = {"train_seconds": round(time.perf_counter() - began, 1), "last_loss": row["loss"],
                         **copying(model, cfg), **memory_figures(model, cfg, models.get("d1", (None,))[0],
                                                                args.trials)}
        print(kind, json.dumps({k: v for k, v in results[kind].items()
                                if k in ("r_8", "passkey_top32", "train_seconds")}), flush=True)
        write(args, recording, state, layers, steps, results)
    print(f"wrote {write(args, recording, state, layers, steps, results, done=True)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
