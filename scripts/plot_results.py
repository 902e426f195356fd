"""The README's result figures, drawn from ``data/checkpoints/results.json`` (one PNG a finding).

    python scripts/plot_results.py            # -> docs/results/*.png
    python scripts/plot_results.py --out DIR

Every number comes from the shipped record that ``scripts/reproduce.py --ship`` wrote; nothing is
measured here. A figure whose checkpoints are missing from the record is skipped with a note.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "data" / "checkpoints" / "results.json"
STYLE = {"fot": ("#1f77b4", "-o"), "d1": ("#d62728", "-s"), "mt": ("#9467bd", "-^"),
         "vanilla": ("#7f7f7f", "--x")}
LABELS = {"fot": "FoT (crossbatch, d ramped to 8)", "d1": "d = 1 (no negatives)",
          "mt": "Memorizing Transformer", "vanilla": "vanilla (no memory)"}


def _series(values: dict) -> tuple[list, list]:
    keys = sorted(values, key=float)
    return [float(k) for k in keys], [values[k] for k in keys]


def dictionary_accuracy(results: dict, ax) -> bool:
    drawn = False
    for kind in ("fot", "d1", "mt", "vanilla"):
        rec = results.get(f"dict-{kind}")
        if rec:
            xs, ys = _series(rec["figures"]["accuracy"])
            color, fmt = STYLE[kind]
            ax.plot([x + 1 for x in xs], ys, fmt, color=color, label=LABELS[kind])
            drawn = True
    ax.set(xscale="log", xlabel="documents in memory (own + N distractors)", ylim=(0, 1.05),
           ylabel="answer accuracy", title="Dictionary lookup: accuracy as memory fills")
    ax.set_xticks([1, 2, 4, 8, 16, 32, 64], ["1", "2", "4", "8", "16", "32", "64"])
    ax.minorticks_off()
    return drawn


def distraction(results: dict, ax) -> bool:
    drawn = False
    for kind in ("fot", "d1"):
        rec = results.get(f"dict-{kind}")
        if rec and "r_d" in rec["figures"]:
            xs, ys = _series(rec["figures"]["r_d"])
            color, fmt = STYLE[kind]
            ax.plot(xs, ys, fmt, color=color, label=LABELS[kind])
            drawn = True
    if drawn:
        ax.plot(xs, [1 / x for x in xs], ":", color="black", label="1/d: attention spread evenly")
    ax.set(xscale="log", xlabel="d (documents visible to a query)", ylim=(0, 1.05),
           ylabel="r_d: attention mass on the own document", title="Distraction ratio r_d (§3.3)")
    ax.set_xticks([2, 4, 8, 16], ["2", "4", "8", "16"])
    ax.minorticks_off()
    return drawn


def code_perplexity(results: dict, ax) -> bool:
    drawn = False
    for kind in ("fot", "d1"):
        rec = results.get(f"code-{kind}")
        if rec:
            ppl = dict(rec["figures"]["perplexity"])
            base = ppl.pop("no_memory")
            xs, ys = _series(ppl)
            color, fmt = STYLE[kind]
            ax.plot(xs, ys, fmt, color=color, label=LABELS[kind])
            ax.axhline(base, color=color, ls=":", lw=1)
            drawn = True
    ax.set(xlabel="distractor files in memory (N)", ylabel="perplexity (bytes)",
           title="Code: perplexity with distractors (dotted: no memory)")
    return drawn


def passkey(results: dict, ax) -> bool:
    rec = results.get("passkey-fot")
    if not rec:
        return False
    rows = (("passkey_top32", "FoT, kNN memory (top-32)", "#1f77b4", "-o"),
            ("passkey_dense", "FoT, dense memory (all keys)", "#17becf", "--o"),
            ("passkey_no_memory", "same model, no memory", "#7f7f7f", "--x"))
    for name, label, color, fmt in rows:
        values = rec["figures"].get(name)
        if values:
            keys = list(values)
            ax.plot(range(len(keys)), [values[k] for k in keys], fmt, color=color, label=label)
            ax.set_xticks(range(len(keys)), keys)
    ax.set(xlabel="prompt length (x training context of 512 bytes)", ylabel="passkey accuracy",
           ylim=(-0.05, 1.05), title="Passkey retrieval beyond the training context")
    return True


FIGURES = {"dictionary_accuracy": dictionary_accuracy, "distraction_ratio": distraction,
           "code_perplexity": code_perplexity, "passkey": passkey}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results")
    args = parser.parse_args(argv)
    if not args.results.exists():
        raise SystemExit(f"{args.results} not found: run scripts/reproduce.py --ship first")
    results = json.loads(args.results.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    for name, draw in FIGURES.items():
        fig, ax = plt.subplots(figsize=(5.6, 3.6), dpi=90)
        if draw(results, ax):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            fig.tight_layout()
            fig.savefig(args.out / f"{name}.png")
            print(f"wrote {args.out / f'{name}.png'}")
        else:
            print(f"skipped {name}: its checkpoints are not in {args.results}")
        plt.close(fig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
