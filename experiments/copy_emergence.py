"""When does the text models' architecture learn to copy inside its window? Recorded.

    python experiments/copy_emergence.py --arm synthetic [--steps 2000] [--every 200]
    python experiments/copy_emergence.py --arm strings
    python experiments/copy_emergence.py --arm synthetic --steps 50000 --every 2500 --device cuda  # a GPU
    python experiments/copy_emergence.py --arm curriculum --steps 1600 --smear-keys 2 --save runs/base.pt

LongLLaMA's recipe extends a skill its base already has: finding an earlier occurrence and
copying what followed (``fot_edu.evaluation.copying``). ``text-plain-vanilla`` does not have it after its 2000
steps of book text (``results/records/text-diagnostic-cpu.json``). This script trains the same
model (the ``text-plain-vanilla`` preset: same architecture, optimiser and schedule, from scratch) on
data that rewards copying as much as data can, and measures the copy gap on held-out book text
and on random strings every ``--every`` steps, then passkey at 1x without memory (50 prompts):

* ``synthetic``: every row random printable bytes with a random string written twice in each
  window (``with_repeats(share=1, background="random")``): the classic setting in which small
  transformers learn to copy.
* ``strings``: book text in which half the rows carry such strings (``share=0.5``): copying
  pays, but text statistics compete for the same steps.
* ``curriculum``: copy first: ``synthetic`` for the first ``--synthetic-steps`` (800), then
  ``strings``, under one learning-rate schedule.
* ``phrases``: book text in which half the rows carry a phrase of 24 bytes of text and a random
  string after it, twice in a window: finding the phrase again predicts the string from its first
  byte on, as finding "The pass key is" predicts a passkey's first digit. ``phrase-curriculum``:
  ``synthetic`` first, then ``phrases``.

Each arm is a ``DataConfig.repeats`` schedule (``fot_edu.data.repeats``), so a preset can name it.

``--smear-keys 2`` (or ``0,1,2,3``) smears the keys of those layers (``fot_edu.smear``);
``--qk-conv 0,1,2,3`` convolves their queries and keys over the last 4 tokens (``fot_edu.qk_conv``;
``--qk-conv-width 8``: the last 8);
the default is neither, the preset's architecture. Each probe also records the induction score of every
layer and head (``fot_edu.evaluation.copying.induction_scores``), which says *where* copying formed.
``--save PATH`` keeps the trained model as a checkpoint (a base for ``experiments/text_recipe.py``).

Writes ``results/records/copy-emergence-<arm>[-smear<layers>][-qkconv<layers>[-w<width>]]-<cpu|gpu>.json`` (``fot_edu.evaluation.records``); a run of other than 2000 steps adds its steps to the name.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from fot_edu.evaluation.copying import copy_gap, induction_scores
from fot_edu.evaluation.passkey import passkey_accuracy
from fot_edu.evaluation.records import RECORDS_DIR, Recording, write_record
from fot_edu.training.checkpoint import save_checkpoint
from fot_edu.training.objective import with_task_vocab
from fot_edu.training.presets import preset
from fot_edu.training.train import Trainer

ARMS = ("curriculum", "phrase-curriculum", "strings", "synthetic", "phrases")
CURRICULA = {"curriculum": "strings", "phrase-curriculum": "phrases"}  # synthetic first, then this


def schedule(arm: str, synthetic_steps: int) -> tuple:
    """The arm as a ``DataConfig.repeats`` schedule (``fot_edu.data.repeats.MIXES``)."""
    if arm in CURRICULA:
        return ((0, "synthetic"), (synthetic_steps, CURRICULA[arm]))
    return ((0, arm),)


def probe(model, cfg) -> dict:
    out = {content: copy_gap(model, cfg, content=content) for content in ("text", "random")}
    out["induction"] = induction_scores(model)
    model.train()
    return out


def layers(spec: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in spec.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{spec!r} is not allowed: layer indices separated by "
                                         f"commas, e.g. 2 or 0,1,2,3") from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arm", choices=ARMS, required=True)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--every", type=int, default=200)
    parser.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--smear-keys", type=layers, default=(), help="layers with smeared keys")
    parser.add_argument("--qk-conv", type=layers, default=(),
                        help="layers with convolved queries and keys (fot_edu.qk_conv)")
    parser.add_argument("--qk-conv-width", type=int, default=4, help="tokens each convolution mixes")
    parser.add_argument("--synthetic-steps", type=int, default=800, help="curriculum: copy-first steps")
    parser.add_argument("--save", type=Path, help="write the trained model here (a checkpoint)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    base = preset("text-plain-vanilla")
    cfg = with_task_vocab(base.replace(steps=args.steps, eval_every=args.steps, checkpoint_every=args.steps,
                                       model__smear_keys=args.smear_keys, model__qk_conv=args.qk_conv,
                                       model__qk_conv_width=args.qk_conv_width,
                                       data__repeats=schedule(args.arm, args.synthetic_steps)))
    trainer = Trainer(cfg, device=args.device)
    gpu = trainer.device.type == "cuda"
    smear, conv = (",".join(map(str, layers)) for layers in (args.smear_keys, args.qk_conv))
    recording = Recording(seed=cfg.seed, device=trainer.device, command=(
        f"python experiments/copy_emergence.py --arm {args.arm} --steps {args.steps} "
        f"--every {args.every}" + (" --device cuda" if gpu else "")
        + (f" --smear-keys {smear}" if smear else "") + (f" --qk-conv {conv}" if conv else "")
        + (f" --qk-conv-width {args.qk_conv_width}" if args.qk_conv_width != 4 else "")
        + (f" --synthetic-steps {args.synthetic_steps}" if args.arm in CURRICULA else "")))
    curve = [{"step": 0, **probe(trainer.model, cfg)}]
    name = (f"copy-emergence-{args.arm}" + (f"-smear{smear.replace(',', '')}" if smear else "")
            + (f"-qkconv{conv.replace(',', '')}" if conv else "")
            + (f"-w{args.qk_conv_width}" if args.qk_conv_width != 4 else "")
            + ("" if args.steps == 2000 else f"-{args.steps}"))
    out = args.out or RECORDS_DIR / f"{name}-{'gpu' if gpu else 'cpu'}.json"

    def write(passkey=None) -> None:
        """The record so far: written after every probe, so a run cut short keeps its curve
        (``"finished": false`` and no passkey until the last step)."""
        write_record(out, recording, arm={args.arm: cfg.data.repeats},
                     config="text-plain-vanilla preset, from scratch, steps=%d, smear_keys=%s, qk_conv=%s, qk_conv_width=%d"
                            % (args.steps, list(args.smear_keys), list(args.qk_conv), args.qk_conv_width),
                     curve=curve, passkey_1x_no_memory=passkey, finished=passkey is not None)

    while not trainer.done:
        row = trainer.step()
        if (row["step"] + 1) % args.every == 0 or trainer.done:
            curve.append({"step": row["step"] + 1, "loss": row["loss"], **probe(trainer.model, cfg)})
            print(json.dumps({"step": curve[-1]["step"], "text_gap": round(curve[-1]["text"]["gap"], 4),
                              "random_gap": round(curve[-1]["random"]["gap"], 4)}), flush=True)
            write()
    model = trainer.result().model
    write(passkey_accuracy(model, cfg, ["1x"], trials=50, memory=False))
    if args.save:
        save_checkpoint(args.save, model, cfg, step=args.steps, extra={"record": recording.command})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
