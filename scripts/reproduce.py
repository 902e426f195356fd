"""Retrain every preset from scratch, re-evaluate it, and print the new figures beside the
shipped ones (``make reproduce``). ``--ship`` replaces fot_edu/shipped/checkpoints/ with the new results.

    python scripts/reproduce.py                       # all presets, into runs/
    python scripts/reproduce.py dict-fot dict-d1      # some of them
    python scripts/reproduce.py --eval-only --ship    # re-evaluate existing runs/ and ship them
    python scripts/reproduce.py dict-fot --shipped --ship  # re-evaluate fot_edu/shipped/checkpoints/dict-fot.pt
    python scripts/reproduce.py text-vanilla text-d1 text-fot --device cuda  # train on a GPU
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from fot_edu.evaluation import TOP_K
from fot_edu.evaluation.distraction import dictionary_accuracy, distraction_summary
from fot_edu.evaluation.passkey import passkey_accuracy, passkey_paired
from fot_edu.evaluation.perplexity import perplexity_vs_memory, perplexity_with_distractors
from fot_edu.evaluation.records import RESULTS_DIR
from fot_edu.training.checkpoint import CHECKPOINT_DIR, export_weights, load_model
from fot_edu.training.longllama import continuation_weights
from fot_edu.training.presets import preset
from fot_edu.training.train import train

PRESETS = ["dict-fot", "dict-d1", "dict-vanilla", "dict-mt",
           "code-fot", "code-d1", "code-vanilla", "code-mt", "passkey-fot",
           "text-vanilla", "text-d1", "text-fot",  # a base first: the others continue it
           "text-plain-vanilla", "text-plain-d1", "text-plain-fot"]
RESULTS = RESULTS_DIR / "checkpoints.json"
PASSKEY_LENGTHS = ("1x", "4x", "16x", "32x", "64x")
PASSKEY_TRIALS = 50  # prompts per length, the same for every reading
MEMORY_TOKENS = (0, 1024, 4096, 16384)  # text-*: single-document memory sizes (dense reading)
SIZES = ("n", "ci95", "paired")  # beside the figures in a record; not figures themselves


def evaluate(path) -> dict:
    model, cfg = load_model(path)
    figures = {}
    # the commands' default sample sizes: 128 dictionary documents; every held-out code window
    if cfg.data.task == "dictionary":
        figures.update(dictionary_accuracy(model, cfg, (0, 1, 3, 7, 15, 31, 63)))
    else:
        # books holds 8 held-out documents, so at most 7 distractors
        counts = (0, 7) if cfg.data.task == "books" else (0, 7, 15)
        figures.update(perplexity_with_distractors(model, cfg, counts))
    if cfg.data.task == "books":  # the text-* models: §5.1's perplexity against memory size, and
        # passkey (base: streamed with no memory; continuations: top-32 kNN memory)
        sizes = MEMORY_TOKENS if model.cfg.memory_layers else (0,)
        sweep = perplexity_vs_memory(model, cfg, sizes, score_from=MEMORY_TOKENS[-1])
        figures["perplexity_vs_memory"] = sweep["perplexity"]
        for part in ("n", "ci95"):
            figures.setdefault(part, {})["perplexity_vs_memory"] = sweep[part]["perplexity"]
        if sweep.get("drop"):  # only with memory sizes beside 0
            figures["memory_drop"] = sweep["drop"]
            for part in ("n", "ci95"):
                figures[part]["memory_drop"] = sweep[part]["drop"]
        name = "passkey_top32" if model.cfg.memory_layers else "passkey_no_memory"
        res = passkey_accuracy(model, cfg, PASSKEY_LENGTHS, trials=PASSKEY_TRIALS,
                               **({"k": TOP_K} if model.cfg.memory_layers else {"memory": False}))
        figures[name] = res["accuracy"]
        for part in ("n", "ci95"):
            figures[part][name] = res[part]["accuracy"]
    if cfg.data.task == "retrieval":  # one prompt set read three ways: paired prompt by prompt
        answers = {}
        for name, kwargs in ((f"passkey_top{TOP_K}", {"k": TOP_K}), ("passkey_dense", {}),
                             ("passkey_no_memory", {"memory": False})):
            res = passkey_accuracy(model, cfg, PASSKEY_LENGTHS, trials=PASSKEY_TRIALS,
                                   examples=answers.setdefault(name, []), **kwargs)
            figures[name] = res["accuracy"]
            for part in ("n", "ci95"):
                figures.setdefault(part, {})[name] = res[part]["accuracy"]
        # only_a: prompts top-32 answered and dense did not; only_b: the reverse; p: McNemar
        figures["paired"] = {"passkey_top32_vs_dense": passkey_paired(answers["passkey_top32"],
                                                                      answers["passkey_dense"])}
    if model.cfg.memory_layers:  # r_d, and for the dictionary r_d_all_queries
        ds = (2, 4, 8) if cfg.data.task == "books" else (2, 4, 8, 16)  # books: 8 held-out docs
        summary = distraction_summary(model, cfg, ds)
        for part in ("n", "ci95"):
            figures.setdefault(part, {}).update(summary.pop(part))
        figures.update(summary)
    sizes = {part: figures.pop(part) for part in SIZES if part in figures}
    out = {m: {str(k): round(v, 4) for k, v in vals.items()} for m, vals in figures.items()}
    for part, metrics in sizes.items():  # as in `eval --json`: n and ci95 beside the figures
        out[part] = {m: {str(k): v for k, v in vals.items()} for m, vals in metrics.items()}
    return out


def write_readme(shipped: dict) -> None:
    """fot_edu/shipped/checkpoints/README.md: for each checkpoint the command, seed, wall time, machine and
    its evaluation figures, regenerated from results/checkpoints.json."""
    lines = ["# Shipped checkpoints", "",
             "Small trained models so notebooks and classrooms need not train first. Load one by name:",
             "`fot_edu.training.checkpoint.load_model(\"dict-fot\")` or `--checkpoint dict-fot`. Each file holds",
             "weights, config and training history (no optimizer state), written by",
             "`python scripts/reproduce.py NAME --ship`; `make reproduce` retrains them all and prints",
             "new figures beside these. Figures: dictionary `accuracy` (value tokens) and",
             "`value_accuracy` (whole values) with N distractor documents in memory (dense memory",
             "attention), `r`/`r_all_queries` the own document's share of memory attention at the",
             "answer queries / every query; `r_d` (and `r_d_all_queries`) the paper's distraction",
             "ratio (§3.3); `perplexity` with N distractor contexts in memory and its `rise` over",
             "N = 0; `perplexity_vs_memory` the same tokens of each held-out book with a memory of M",
             "tokens of its own text, `memory_drop` = 1 - ppl(M) / ppl(0); `passkey_*` the share of",
             "passkey prompts answered at each length. Rows `95%` and `n`: the interval (Wilson for",
             "shares, bootstrap otherwise) and what it counts (tokens, values, documents, pairs,",
             "prompts).", ""]
    for name, rec in sorted(shipped.items()):
        lines += [f"## {name}", "", f"- command: `{rec['command']}` (seed {rec['seed']})",
                  f"- training wall time: {rec['train_seconds']} s on {rec['machine']}"]
        if rec.get("eval_machine"):
            lines.append(f"- figures measured on {rec['eval_machine']} in {rec['eval_seconds']} s")
        lines.append("")
        figures = {m: v for m, v in rec["figures"].items() if m not in SIZES}
        ci95, n = rec["figures"].get("ci95", {}), rec["figures"].get("n", {})
        for metric, values in figures.items():
            lines.append(f"| {metric} | " + " | ".join(values) + " |")
            lines.append("|---" * (len(values) + 1) + "|")
            lines.append("| | " + " | ".join(f"{v:.3f}" for v in values.values()) + " |")
            if metric in ci95:
                lines.append("| 95% | " + " | ".join(f"{low:.2f}-{high:.2f}" for low, high
                                                    in ci95[metric].values()) + " |")
            if metric in n:
                lines.append("| n | " + " | ".join(str(c) for c in n[metric].values()) + " |")
            lines.append("")
        for pair, lengths in rec["figures"].get("paired", {}).items():
            first, second = pair.removeprefix("passkey_").split("_vs_")
            lines += [f"{pair}, prompt by prompt (answered by one reading only; exact McNemar p):", ""]
            lines += [f"- {spec}: {first} only {c['only_a']}, {second} only {c['only_b']}, "
                      f"p = {c['p']}" for spec, c in lengths.items()]
            lines.append("")
    (CHECKPOINT_DIR / "README.md").write_text("\n".join(lines))


def ship_record(name: str, record: dict, merge: bool = False) -> dict:
    """Replace ``name``'s entry in results/checkpoints.json, and nothing else: under a lock, the file is read
    again just before writing (other runs may have shipped other entries meanwhile), then
    replaced atomically; fot_edu/shipped/checkpoints/README.md is regenerated from it. Returns all entries.
    ``merge``: update the entry's fields with ``record``'s, keeping the others (re-evaluation)."""
    tag = hashlib.sha1(str(RESULTS.resolve()).encode()).hexdigest()[:12]
    lock = Path(tempfile.gettempdir()) / f"fot_edu-results-{tag}.lock"
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        shipped = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        shipped[name] = {**shipped.get(name, {}), **record} if merge else record
        fd, tmp = tempfile.mkstemp(prefix="results.", suffix=".tmp", dir=RESULTS.parent)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(shipped, indent=1) + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, RESULTS)
        write_readme(shipped)
    return shipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("presets", nargs="*", default=PRESETS)
    parser.add_argument("--runs", default="runs", help="training folders (default runs/)")
    parser.add_argument("--eval-only", action="store_true", help="skip training, evaluate runs/")
    parser.add_argument("--shipped", action="store_true", help="skip training, evaluate the shipped "
                        "fot_edu/shipped/checkpoints/NAME.pt in place; with --ship, replace only its figures "
                        "(and eval machine/time) in results/checkpoints.json, keeping command, seed, training "
                        "time and machine; the .pt file is left as it is")
    parser.add_argument("--ship", action="store_true", help="copy weights + figures to fot_edu/shipped/checkpoints/")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="train on this device (default cpu; cuda "
                        "retrains on a GPU, with bf16 autocast). Evaluation runs on the CPU, so "
                        "the figures do not depend on where a model was trained")
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
        if not (args.eval_only or args.shipped):
            start = time.perf_counter()
            cfg, init = preset(name), None
            fresh_base = Path(args.runs) / str(cfg.base) / "checkpoint.pt"
            if cfg.base is not None and fresh_base.exists():  # continue the base trained here
                init = continuation_weights(cfg, base=fresh_base)
            train(cfg, out_dir=run_dir, resume=True, device=args.device, init_state=init)
            seconds = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        figures = evaluate(CHECKPOINT_DIR / f"{name}.pt" if args.shipped else run_dir / "checkpoint.pt")
        eval_seconds = round(time.perf_counter() - start, 1)
        print(f"\n== {name}  (train wall time: {seconds} s, evaluation {eval_seconds} s)")
        old = shipped.get(name, {}).get("figures", {})
        for metric, values in figures.items():
            if metric in SIZES:
                continue
            for key, value in values.items():
                before = old.get(metric, {}).get(key)
                print(f"  {metric:>12} {key:>9}  new {value:8.4f}   shipped "
                      f"{'-' if before is None else f'{before:8.4f}'}")
        if args.ship:
            here = (f"{platform.machine()} CPU, {torch.get_num_threads()} torch threads, "
                    f"torch {torch.__version__}, fp32")
            trained_here = here if args.device == "cpu" else (
                f"{torch.cuda.get_device_name()} ({args.device}), bf16 autocast, torch {torch.__version__}")
            if args.shipped:  # the training record stays; it is re-read just before writing
                shipped = ship_record(name, {"eval_machine": here, "eval_seconds": eval_seconds,
                                             "figures": figures}, merge=True)
                continue
            base = preset(name).base
            command = f"python -m fot_edu train --preset {name}"
            if base is not None:
                command += f" --base {Path(args.runs) / base / 'checkpoint.pt'}"
            record = {"command": command, "seed": preset(name).seed,
                      "train_seconds": seconds or shipped.get(name, {}).get("train_seconds"),
                      "machine": args.trained_on or trained_here,
                      "eval_machine": here, "eval_seconds": eval_seconds,
                      "figures": figures}
            CHECKPOINT_DIR.mkdir(parents=True, exist_ok=True)
            export_weights(run_dir / "checkpoint.pt", CHECKPOINT_DIR / f"{name}.pt", extra=record)
            shipped = ship_record(name, record)


if __name__ == "__main__":
    main()
