"""When does the text models' architecture learn to copy inside its window? Recorded.

    python experiments/copy_emergence.py --arm synthetic [--steps 2000] [--every 200]
    python experiments/copy_emergence.py --arm strings
    python experiments/copy_emergence.py --arm synthetic --steps 50000 --every 2500 --device cuda  # a GPU

LongLLaMA's recipe extends a skill its base already has: finding an earlier occurrence and
copying what followed (``fot_edu.evaluation.copying``). ``text-vanilla`` does not have it after its 2000
steps of book text (``results/records/text-diagnostic-cpu.json``). This script trains the same
model (the ``text-vanilla`` preset: same architecture, optimiser and schedule, from scratch) on
data that rewards copying as much as data can, and measures the copy gap on held-out book text
and on random strings every ``--every`` steps, then passkey at 1x without memory (50 prompts):

* ``synthetic``: every row random printable bytes with a random string written twice in each
  window (``with_repeats(share=1, background="random")``): the classic setting in which small
  transformers learn to copy.
* ``strings``: book text in which half the rows carry such strings (``share=0.5``): copying
  pays, but text statistics compete for the same steps.

Writes ``results/records/copy-emergence-<arm>-<cpu|gpu>.json`` (command, seed, commit, machine,
seconds); a run of other than 2000 steps adds its steps to the name.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from fot_edu.evaluation.copying import copy_gap, with_repeats  # noqa: E402
from fot_edu.evaluation.passkey import passkey_accuracy  # noqa: E402
from fot_edu.training.objective import default_batch_fn, with_task_vocab  # noqa: E402
from fot_edu.training.presets import preset  # noqa: E402
from fot_edu.training.train import Trainer  # noqa: E402

ARMS = {"synthetic": dict(share=1.0, background="random"), "strings": dict(share=0.5, background="text")}


def probe(model, cfg) -> dict:
    out = {content: copy_gap(model, cfg, content=content) for content in ("text", "random")}
    model.train()
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arm", choices=sorted(ARMS), required=True)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--every", type=int, default=200)
    parser.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cfg = with_task_vocab(dataclasses.replace(preset("text-vanilla"), steps=args.steps,
                                              eval_every=args.steps, checkpoint_every=args.steps))
    plain = default_batch_fn(cfg, "train")
    arm = ARMS[args.arm]

    def batch_fn(step: int):
        return with_repeats(plain(step), arm["share"], np.random.default_rng([cfg.seed, step, 11]),
                            background=arm["background"])

    trainer = Trainer(cfg, device=args.device, batch_fn=batch_fn,
                      eval_batch_fn=default_batch_fn(cfg, "eval"))
    gpu = trainer.device.type == "cuda"
    start = time.perf_counter()
    curve = [{"step": 0, **probe(trainer.model, cfg)}]
    while not trainer.done:
        row = trainer.step()
        if (row["step"] + 1) % args.every == 0 or trainer.done:
            curve.append({"step": row["step"] + 1, "loss": row["loss"], **probe(trainer.model, cfg)})
            print(json.dumps({"step": curve[-1]["step"], "text_gap": round(curve[-1]["text"]["gap"], 4),
                              "random_gap": round(curve[-1]["random"]["gap"], 4)}), flush=True)
    model = trainer.result().model
    passkey = passkey_accuracy(model, cfg, ["1x"], trials=50, memory=False)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip() or "unknown"
    record = {"command": f"python experiments/copy_emergence.py --arm {args.arm} --steps {args.steps} "
                         f"--every {args.every}" + (" --device cuda" if gpu else ""),
              "seed": cfg.seed, "commit": commit,
              "machine": (torch.cuda.get_device_name() + ", " if gpu else "")
                         + f"{platform.machine()}, {os.cpu_count()} cores, 1 torch thread, torch "
                           f"{torch.__version__}, python {platform.python_version()}",
              "seconds": round(time.perf_counter() - start, 1), "arm": {args.arm: arm},
              "config": "text-vanilla preset, from scratch, steps=%d" % args.steps,
              "curve": curve, "passkey_1x_no_memory": passkey}
    name = f"copy-emergence-{args.arm}" + ("" if args.steps == 2000 else f"-{args.steps}")
    out = args.out or ROOT / "docs" / "records" / f"{name}-{'gpu' if gpu else 'cpu'}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
