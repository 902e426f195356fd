"""Command line: ``python -m fot_edu {train,eval,demo,data} --help``."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .config import PRESETS, preset


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def cmd_train(args) -> int:
    from .train import train

    cfg = preset(args.preset)
    changes = {k: v for k, v in (("steps", args.steps), ("seed", args.seed),
                                 ("batch_size", args.batch_size)) if v is not None}
    if changes:
        cfg = cfg.replace(**changes)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out_dir = Path(args.out or Path("runs") / args.preset)
    result = train(cfg, out_dir=out_dir, resume=args.resume, device=args.device,
                   progress=not args.quiet)
    last = result.history[-1]
    speed = sum(r["tokens_per_s"] for r in result.history[-50:]) / len(result.history[-50:])
    print(f"trained {args.preset}: {len(result.history)} steps, final loss {last['loss']:.4f}, "
          f"~{speed:,.0f} tokens/s; checkpoint: {result.checkpoint}")
    return 0


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
        return
    for metric, values in result.items():
        print(metric)
        for key, value in values.items():
            print(f"  {key:>10}  {value:.4f}")


def cmd_eval(args) -> int:
    from .checkpoint import load_model
    from .runtime import default_device

    device = default_device(args.device)
    model, cfg = load_model(args.checkpoint, device=device)
    if args.what == "dictionary":
        from .evaluate import dictionary_accuracy

        if cfg.data.task != "dictionary":
            raise SystemExit(f"checkpoint {args.checkpoint!r} was trained on {cfg.data.task!r}, not dictionary")
        res = dictionary_accuracy(model, cfg, args.distractors, k=args.k, batches=args.batches,
                                  device=device)
    elif args.what == "distraction":
        from .evaluate import distraction_curve

        res = {"r_d": distraction_curve(model, cfg, args.d, batches=args.batches, device=device)}
    elif args.what == "passkey":
        from .evaluate import passkey_accuracy

        res = passkey_accuracy(model, cfg, args.lengths.split(","), trials=args.trials, k=args.k,
                               device=device, progress=not args.json, memory=not args.no_memory)
    else:  # perplexity
        from .evaluate import perplexity_vs_memory, perplexity_with_distractors

        if cfg.data.task == "dictionary":
            raise SystemExit("perplexity is for corpus checkpoints; use `eval dictionary` here")
        if args.memory_tokens:
            res = {}
            for mode in ("single", "multi"):
                sweep = perplexity_vs_memory(model, cfg, args.memory_tokens, k=args.k, device=device,
                                             multi_doc=mode == "multi", num_docs=args.docs,
                                             max_tokens_per_doc=args.doc_tokens)
                res[f"perplexity_{mode}_doc"] = sweep["perplexity"]
        else:
            res = perplexity_with_distractors(model, cfg, args.distractors, k=args.k,
                                              batches=args.batches, device=device)
    _print({m: {str(k): v for k, v in vals.items()} for m, vals in res.items()}, args.json)
    return 0


def cmd_demo(args) -> int:
    """A one-minute tour: with ``--out report.html`` a standalone HTML report of the headline
    plots (shipped checkpoints when present, else short training runs); without it, train the tiny
    preset with and without crossbatch negatives and print how each one holds up against
    distractors."""
    if args.out:
        from .report import write_report

        path = write_report(args.out)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, no network needed to open it)")
        return 0
    from .evaluate import dictionary_accuracy
    from .train import train

    rows = []
    for name, cfg in (("d=1", preset("tiny-fot").replace(d_schedule=())),
                      ("FoT d=1->2", preset("tiny-fot"))):
        cfg = cfg.replace(steps=args.steps)
        result = train(cfg, progress=not args.quiet, device=args.device)
        res = dictionary_accuracy(result.model, result.config, (0, 3, 7), batch_size=16, batches=1)
        rows.append((name, res))
    print(f"{'model':>12}  " + "  ".join(f"acc N={n:<3}" for n in (0, 3, 7)) + "  r(N=7)")
    for name, res in rows:
        accs = "  ".join(f"{res['accuracy'][n]:>9.3f}" for n in (0, 3, 7))
        print(f"{name:>12}  {accs}  {res['r'][7]:.3f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fot_edu", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a named preset", description="Train a preset; "
                       f"presets: {', '.join(sorted(PRESETS))}")
    p.add_argument("--preset", required=True, choices=sorted(PRESETS), metavar="NAME",
                   help=f"one of {', '.join(sorted(PRESETS))}")
    p.add_argument("--out", help="checkpoint folder (default runs/PRESET)")
    p.add_argument("--steps", type=int, help="override the preset's number of steps")
    p.add_argument("--batch-size", type=int, help="override b, documents per step")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="cpu, cuda (default: cuda if available; $FOT_EDU_DEVICE)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--threads", type=int, help="CPU threads for torch (1 is often fastest for "
                   "tiny models on a busy or 2-core machine)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint", description="Evaluate a checkpoint "
                       "(a path or a shipped name); a table by default, JSON with --json")
    what = p.add_subparsers(dest="what", required=True)
    for name, helptext, default in (
            ("dictionary", "value accuracy and own-document attention r with N distractors",
             "0,1,3,7,15,31,63"),
            ("distraction", "the paper's r_d (§3.3) for several d", None),
            ("perplexity", "perplexity with N distractor documents in memory", "0,7,15")):
        q = what.add_parser(name, help=helptext, description=helptext)
        q.add_argument("--checkpoint", required=True, help="path or shipped name, e.g. dict-fot")
        if default:
            q.add_argument("--distractors", type=_ints, default=_ints(default), help=f"default {default}")
            q.add_argument("--k", type=int, default=None, help="top-k retrieval (default: all memory)")
        else:
            q.add_argument("--d", type=_ints, default=_ints("2,4,8,16"), help="default 2,4,8,16")
        if name == "perplexity":
            q.add_argument("--memory-tokens", type=_ints, default=None,
                           help="instead: sweep a streaming memory's capacity, e.g. 0,512,2048 "
                                "(single- and multi-document)")
            q.add_argument("--docs", type=int, default=8, help="documents streamed in the sweep")
            q.add_argument("--doc-tokens", type=int, default=4096, help="tokens kept per document")
        q.add_argument("--batches", type=int, default=2, help="evaluation batches (default 2)")
        q.add_argument("--device")
        q.add_argument("--json", action="store_true", help="print JSON instead of a table")
    q = what.add_parser("passkey", help="passkey retrieval accuracy against prompt length",
                        description="passkey retrieval (paper Fig. 1) with the exact template")
    q.add_argument("--checkpoint", required=True, help="path or shipped name of a byte-level model")
    q.add_argument("--lengths", default="1x,4x,16x,32x",
                   help="token counts or multiples of the training context (2 windows), e.g. 32x")
    q.add_argument("--trials", type=int, default=10)
    q.add_argument("--k", type=int, default=None, help="top-k retrieval (default: all memory)")
    q.add_argument("--no-memory", action="store_true",
                   help="vanilla reading: only the last 2 windows of the prompt, no memory")
    q.add_argument("--device")
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("demo", help="a one-minute tour: d=1 vs FoT against distractors")
    p.add_argument("--steps", type=int, default=300, help="training steps per model (default 300)")
    p.add_argument("--device")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--out", metavar="report.html", help="write a standalone HTML report of the "
                   "headline plots instead (plotly embedded, opens offline)")
    p.set_defaults(func=cmd_demo)

    from .datasets import register_cli

    register_cli(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
