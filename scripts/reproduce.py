"""Retrain every preset from scratch, re-evaluate it, and print the new figures beside the
shipped ones (``make reproduce``). ``--ship`` replaces data/checkpoints/ with the new results.

    python scripts/reproduce.py                       # all presets, into runs/
    python scripts/reproduce.py dict-fot dict-d1      # some of them
    python scripts/reproduce.py --eval-only --ship    # re-evaluate existing runs/ and ship them
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from fot_edu.checkpoint import CHECKPOINT_DIR, export_weights, load_model
from fot_edu.config import preset
from fot_edu.evaluate import dictionary_accuracy, distraction_curve, perplexity_with_distractors
from fot_edu.long_context import passkey_accuracy
from fot_edu.train import train

PRESETS = ["dict-fot", "dict-d1", "dict-vanilla", "dict-mt",
           "code-fot", "code-d1", "code-vanilla", "code-mt", "passkey-fot"]
RESULTS = CHECKPOINT_DIR / "results.json"


def evaluate(path) -> dict:
    model, cfg = load_model(path)
    figures = {}
    if cfg.data.task == "dictionary":
        figures.update(dictionary_accuracy(model, cfg, (0, 1, 3, 7, 15, 31, 63), batches=2))
    else:
        figures.update(perplexity_with_distractors(model, cfg, (0, 7, 15), batches=2))
    if cfg.data.task == "retrieval":
        lengths = ("1x", "4x", "16x", "32x")
        for name, kwargs in (("passkey_top32", {"k": 32}), ("passkey_dense", {}),
                             ("passkey_no_memory", {"memory": False})):
            figures[name] = passkey_accuracy(model, cfg, lengths, trials=10, **kwargs)["accuracy"]
    if model.cfg.memory_layers:
        figures["r_d"] = distraction_curve(model, cfg, (2, 4, 8, 16), batches=2)
    return {m: {str(k): round(v, 4) for k, v in vals.items()} for m, vals in figures.items()}


def write_readme(shipped: dict) -> None:
    """data/checkpoints/README.md: for each checkpoint the command, seed, wall time, machine and
    its evaluation figures, regenerated from results.json."""
    lines = ["# Shipped checkpoints", "",
             "Small trained models so notebooks and classrooms need not train first. Load one by name:",
             "`fot_edu.checkpoint.load_model(\"dict-fot\")` or `--checkpoint dict-fot`. Each file holds",
             "weights, config and training history (no optimizer state), written by",
             "`python scripts/reproduce.py NAME --ship`; `make reproduce` retrains them all and prints",
             "new figures beside these. Figures: dictionary `accuracy`/`r` with N distractor documents",
             "in memory (dense memory attention), `r_d` the paper's distraction ratio (§3.3),",
             "`perplexity` with N distractor contexts in memory.", ""]
    for name, rec in sorted(shipped.items()):
        lines += [f"## {name}", "", f"- command: `{rec['command']}` (seed {rec['seed']})",
                  f"- training wall time: {rec['train_seconds']} s on {rec['machine']}", ""]
        for metric, values in rec["figures"].items():
            lines.append(f"| {metric} | " + " | ".join(values) + " |")
            lines.append("|---" * (len(values) + 1) + "|")
            lines.append("| | " + " | ".join(f"{v:.3f}" for v in values.values()) + " |")
            lines.append("")
    (CHECKPOINT_DIR / "README.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("presets", nargs="*", default=PRESETS)
    parser.add_argument("--runs", default="runs", help="training folders (default runs/)")
    parser.add_argument("--eval-only", action="store_true", help="skip training, evaluate runs/")
    parser.add_argument("--ship", action="store_true", help="copy weights + figures to data/checkpoints/")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--trained-on", help="with --eval-only: the machine the run was trained on, "
                                             "for the record (default: this one)")
    parser.add_argument("--train-seconds", type=float, help="with --eval-only: its training wall time")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    shipped = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for name in args.presets:
        run_dir = Path(args.runs) / name
        seconds = args.train_seconds
        if not args.eval_only:
            start = time.perf_counter()
            train(preset(name), out_dir=run_dir, resume=True, device="cpu")
            seconds = round(time.perf_counter() - start, 1)
        figures = evaluate(run_dir / "checkpoint.pt")
        print(f"\n== {name}  (train wall time: {seconds} s)")
        old = shipped.get(name, {}).get("figures", {})
        for metric, values in figures.items():
            for key, value in values.items():
                before = old.get(metric, {}).get(key)
                print(f"  {metric:>12} {key:>9}  new {value:8.4f}   shipped "
                      f"{'-' if before is None else f'{before:8.4f}'}")
        if args.ship:
            record = {"command": f"python -m fot_edu train --preset {name}", "seed": preset(name).seed,
                      "train_seconds": seconds or shipped.get(name, {}).get("train_seconds"),
                      "machine": args.trained_on or (
                          f"{platform.machine()} CPU, {torch.get_num_threads()} torch threads, "
                          f"torch {torch.__version__}, fp32"),
                      "figures": figures}
            CHECKPOINT_DIR.mkdir(parents=True, exist_ok=True)
            export_weights(run_dir / "checkpoint.pt", CHECKPOINT_DIR / f"{name}.pt", extra=record)
            shipped = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}  # others may have written
            shipped[name] = record
            RESULTS.write_text(json.dumps(shipped, indent=1) + "\n")
            write_readme(shipped)


if __name__ == "__main__":
    main()
