"""What each command of ``python -m fot_edu`` does, given its parsed arguments (the parser is
``fot_edu.cli.parser``). Each returns an exit code; a bad value raises ``ValueError``, which the
command line prints as one line.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from tqdm.auto import tqdm

from fot_edu.cli.serve import run_lab, run_present
from fot_edu.data.corpora import DATA_DIR
from fot_edu.data.corpus_build import build_corpora
from fot_edu.data.summary import corpus_summary, format_summary
from fot_edu.evaluation.distraction import dictionary_accuracy, distraction_summary
from fot_edu.evaluation.passkey import passkey_accuracy
from fot_edu.evaluation.perplexity import perplexity_vs_memory, perplexity_with_distractors
from fot_edu.runtime import default_device, fast_mode
from fot_edu.teaching import exercises
from fot_edu.teaching.handouts import strip_solutions
from fot_edu.teaching.race import RaceConfig, race
from fot_edu.teaching.race_board import race_table, start_summary
from fot_edu.teaching.report import tour, write_report
from fot_edu.training.checkpoint import load_model
from fot_edu.training.distributed import torchrun_process
from fot_edu.training.presets import preset
from fot_edu.training.train import train


def set_threads(args) -> None:
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)


def cmd_train(args) -> int:
    """Train a preset; under torchrun every rank runs this, rank 0 alone prints and saves."""
    cfg = preset(args.preset)
    changes = {k: v for k, v in (("steps", args.steps), ("seed", args.seed),
                                 ("batch_size", args.batch_size),
                                 ("crossbatch_scope", args.crossbatch_scope),
                                 ("base", getattr(args, "base", None))) if v is not None}
    if changes:
        cfg = cfg.replace(**changes)
    set_threads(args)
    out_dir = Path(args.out or Path("runs") / args.preset)
    with torchrun_process(args.device) as (ranks, device):
        result = train(cfg, out_dir=out_dir, resume=args.resume, device=device,
                       progress=not args.quiet, ranks=ranks)
    if not ranks.main:
        return 0
    last = result.history[-1]
    speed = sum(r["tokens_per_s"] for r in result.history[-50:]) / len(result.history[-50:])
    where = f" on {ranks.world_size} ranks ({ranks.backend})" if ranks.several else ""
    print(f"trained {args.preset}{where}: {len(result.history)} steps, final loss "
          f"{last['loss']:.4f}, ~{speed:,.0f} tokens/s; checkpoint: {result.checkpoint}")
    return 0


# what each figure of an `eval` table measures, and what its n counts (the interval's unit)
LABELS = {
    "dictionary": {
        "accuracy": ("value tokens right (each predicted with the true previous token: "
                     "teacher forcing); N distractor documents in memory", "value tokens"),
        "value_accuracy": ("whole values right: every token of the value (teacher forcing)",
                           "values"),
        "r": ("own-document share of memory attention, averaged over the answer queries",
              "documents"),
        "r_all_queries": ("own-document share of memory attention, averaged over every C_curr "
                          "query", "documents")},
    "distraction": {
        "r_d": ("r_d (§3.3) averaged over the queries with a target (dictionary: the answer "
                "queries)", "pairs"),
        "r_d_all_queries": ("r_d averaged over every C_curr query (the paper's average)", "pairs")},
    "perplexity": {
        "perplexity": ("perplexity of C_curr: no_memory read alone, N with the own C_prev and N "
                       "distractors in memory", "documents"),
        "rise": ("perplexity with N distractors minus with the own C_prev alone (N = 0)",
                 "documents"),
        "rise_ratio": ("this model's rise over the baseline's, on the same windows", "documents")},
    "memory": {  # eval perplexity --memory-tokens
        "perplexity": ("perplexity of the same tokens of each held-out document (from the largest "
                       "M on) with a memory of the M tokens of its own text before them", "documents"),
        "drop": ("1 - perplexity with M / with no memory: the share memory takes off (paired)",
                 "documents")},
}
KEY_NAMES = {"dictionary": "N", "distraction": "d", "perplexity": "N", "passkey": "length",
             "memory": "M"}


def print_result(result: dict, as_json: bool, labels: dict | None = None, key_name: str = "") -> None:
    """JSON on one line, or a table: each figure with its 95% interval and sample size
    (``labels``: ``{metric: (what it is, what n counts)}``)."""
    if as_json:
        print(json.dumps(result))
        return
    n, ci95, labels = result.get("n", {}), result.get("ci95", {}), labels or {}
    for metric, values in result.items():
        if metric in ("n", "ci95"):
            continue
        what, unit = labels.get(metric, ("", ""))
        print(f"{metric}: {what}" if what else metric)
        print(f"  {key_name:>10}  {'value':>8}  {'95% interval':>18}  n{f' ({unit})' if unit else ''}")
        for key, value in values.items():
            low, high = ci95.get(metric, {}).get(key, (None, None))
            interval = f"[{low:.4f}, {high:.4f}]" if low is not None else ""
            count = n.get(metric, {}).get(key, "")
            print(f"  {key:>10}  {value:8.4f}  {interval:>18}  {count}")


def cmd_eval(args) -> int:
    device = default_device(args.device)
    model, cfg = load_model(args.checkpoint, device=device)
    set_threads(args)
    note = None
    sizes = {} if getattr(args, "batches", None) is None else {"batches": args.batches}
    if args.what == "dictionary":
        if cfg.data.task != "dictionary":
            raise ValueError(f"checkpoint {args.checkpoint!r} was trained on task {cfg.data.task!r}, "
                             f"not dictionary: use `eval perplexity` or `eval passkey`")
        res = dictionary_accuracy(model, cfg, args.distractors, k=args.k, device=device, **sizes)
        if not model.cfg.memory_layers:
            note = "r (attention on the own document) is left out: this model has no memory layer"
    elif args.what == "distraction":
        res = distraction_summary(model, cfg, args.d, device=device, **sizes)
    elif args.what == "passkey":
        res = passkey_accuracy(model, cfg, args.lengths.split(","), trials=args.trials, k=args.k,
                               seed=args.seed, device=device, progress=not args.json,
                               memory=not args.no_memory)
    else:  # perplexity
        if cfg.data.task == "dictionary":
            raise ValueError("perplexity is for corpus checkpoints; use `eval dictionary` here")
        if args.memory_tokens:
            res = perplexity_vs_memory(model, cfg, args.memory_tokens, k=args.k, device=device,
                                       num_docs=args.docs, max_tokens_per_doc=args.doc_tokens,
                                       progress=not args.json)
        else:
            baseline = None
            if args.baseline:
                baseline, other = load_model(args.baseline, device=device)
                if other.data != cfg.data:
                    raise ValueError(f"baseline {args.baseline!r} was trained on other data than "
                                     f"{args.checkpoint!r}: the rise ratio needs the same windows")
                if not other.model.memory_layers:
                    raise ValueError(f"baseline {args.baseline!r} has no memory layer: its rise with "
                                     "distractors is 0, so a ratio over it is undefined")
            res = perplexity_with_distractors(model, cfg, args.distractors, k=args.k, device=device,
                                              baseline=baseline, **sizes)
    table = "memory" if getattr(args, "memory_tokens", None) else args.what
    print_result(_str_keys(res), args.json, LABELS.get(table), KEY_NAMES.get(table, ""))
    if note and not args.json:
        print(f"({note})")
    return 0


def _str_keys(result: dict) -> dict:
    """JSON keys are strings: ``{metric: {N: value}}`` -> ``{metric: {"N": value}}``, and the same
    one level down in ``n`` and ``ci95`` (``{part: {metric: {N: ...}}}``)."""
    out = {}
    for part, values in result.items():
        if part in ("n", "ci95"):
            out[part] = {metric: {str(k): v for k, v in inner.items()} for metric, inner in values.items()}
        else:
            out[part] = {str(k): v for k, v in values.items()}
    return out


def cmd_demo(args) -> int:
    """The shipped d=1 and FoT models against distractors: a terminal table, an HTML report, or
    (``--train``) the live race."""
    set_threads(args)
    if args.train:
        args.steps, args.quiet, args.json = None, False, False
        return cmd_race(args)
    if args.out:
        path = write_report(args.out)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, no network needed to open it)")
    else:
        print(tour(device=default_device(args.device)))
    return 0


def cmd_race(args) -> int:
    """d = 1 against FoT, trained side by side from one untrained model, then evaluated."""
    cfg = RaceConfig.smoke() if fast_mode() else RaceConfig()
    if args.steps:
        cfg = dataclasses.replace(cfg, steps=args.steps)
    bar = tqdm(total=2 * cfg.steps, desc="race", disable=args.quiet, dynamic_ncols=True)
    losses = {}

    def show(event, data):
        if event == "step":
            losses[data["run"]] = data["loss"]
            bar.update(1)
            bar.set_postfix_str("  ".join(f"{run} loss {loss:.2f}" for run, loss in losses.items()))
        elif event == "live":
            bar.write(f"step {data['step']:>4}  {data['run']:>4}: accuracy with "
                      f"{cfg.live_distractors} distractors {data['accuracy']:.2f}")
        elif event == "start":
            bar.write(start_summary(data, cfg.live_distractors))
        elif event == "evaluating":
            bar.close()

    result = race(cfg, device=args.device, threads=args.threads, callback=show)
    bar.close()
    if not args.json:
        print(race_table(result))
    print(json.dumps(result.to_json()) if args.json else "")
    return 0


def cmd_data_show(args) -> int:
    summary = corpus_summary(args.corpus, large=args.large, sample_chars=args.chars)
    print(json.dumps(summary, indent=1) if args.json else format_summary(summary))
    return 0


def cmd_data_build(args) -> int:
    if not args.large and not (args.code or args.books_source or args.proofs_source):
        raise ValueError("nothing to do: pass --large, or --code/--books-source/--proofs-source "
                         f"to rebuild the committed files in {DATA_DIR}")
    report = build_corpora(args.out, args.books_source, args.proofs_source, large=args.large,
                           code=args.code)
    for name, what in report.items():
        print(f"{name}: {what}")
    return 0


def cmd_exercises(args) -> int:
    if args.exercises_command == "list":
        for name in exercises.names():
            exercise = getattr(exercises, name)
            print(f"{exercise.name}{exercise.signature}  (fot_edu.teaching.exercises.{name}.check(fn))")
        return 0
    for path in strip_solutions(args.src, args.dst):
        print(f"wrote {path}")
    return 0


def cmd_present(args) -> int:
    return run_present(args.app, args.voila_args, port=args.port, no_browser=args.no_browser)


def cmd_lab(args) -> int:
    return run_lab(args.lab_args)
