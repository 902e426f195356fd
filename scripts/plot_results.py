"""The README's result figures, drawn from ``results/checkpoints.json`` (one PNG a finding).

    python scripts/plot_results.py            # -> results/figures/*.png
    python scripts/plot_results.py --out DIR

Every number comes from the shipped record that ``scripts/reproduce.py --ship`` wrote, or (the copy
figure) from the records ``experiments/copy_emergence.py`` and ``experiments/text_diagnostic.py`` wrote in
``results/records``; nothing is measured here. A figure whose records are missing is skipped with a note.
"""
from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from fot_edu.evaluation.records import RECORDS_DIR, RESULTS_DIR  # noqa: E402
from fot_edu.training.presets import preset  # noqa: E402

RESULTS = RESULTS_DIR / "checkpoints.json"
STYLE = {"fot": ("#1f77b4", "-o"), "d1": ("#d62728", "-s"), "mt": ("#9467bd", "-^"),
         "vanilla": ("#7f7f7f", "--x"), "plain": ("#8c564b", ":v")}
LABELS = {"fot": "FoT (crossbatch, d ramped to 8)", "d1": "d = 1 (no negatives)",
          "mt": "Memorizing Transformer", "vanilla": "vanilla (no memory)"}


def _series(values: dict) -> tuple[list, list]:
    """Numeric keys in order (a key like "no_memory" is not a point of the curve)."""
    keys = sorted((k for k in values if k.replace(".", "", 1).isdigit()), key=float)
    return [float(k) for k in keys], [values[k] for k in keys]


def _curve(ax, results: dict, name: str, kind: str, metric: str, shift: float = 0.0) -> bool:
    """Checkpoint ``name``'s ``metric`` against N (or d), drawn in ``kind``'s style, if recorded."""
    values = results.get(name, {}).get("figures", {}).get(metric)
    if not values:
        return False
    xs, ys = _series(values)
    color, fmt = STYLE[kind]
    ax.plot([x + shift for x in xs], ys, fmt, color=color, label=LABELS[kind])
    return True


def dictionary_accuracy(results: dict, ax) -> bool:
    # x = documents in memory: the own one plus N distractors
    drawn = [_curve(ax, results, f"dict-{kind}", kind, "accuracy", shift=1)
             for kind in ("fot", "d1", "mt", "vanilla")]
    ax.set(xscale="log", xlabel="documents in memory (own + N distractors)", ylim=(0, 1.05),
           ylabel="answer accuracy", title="Dictionary lookup: accuracy as memory fills")
    ax.set_xticks([1, 2, 4, 8, 16, 32, 64], ["1", "2", "4", "8", "16", "32", "64"])
    ax.minorticks_off()
    return any(drawn)


def distraction(results: dict, ax) -> bool:
    drawn = [_curve(ax, results, f"dict-{kind}", kind, "r_d") for kind in ("fot", "d1")]
    ds = [2, 4, 8, 16]
    ax.plot(ds, [1 / d for d in ds], ":", color="black", label="1/d: attention spread evenly")
    ax.set(xscale="log", xlabel="d (documents visible to a query)", ylim=(0, 1.05),
           ylabel="r_d: attention mass on the own document", title="Distraction ratio r_d (§3.3)")
    ax.set_xticks(ds, [str(d) for d in ds])
    ax.minorticks_off()
    return any(drawn)


def code_perplexity(results: dict, ax) -> bool:
    drawn = [_curve(ax, results, f"code-{kind}", kind, "perplexity") for kind in ("fot", "d1")]
    for kind, shown in zip(("fot", "d1"), drawn):
        if shown:
            base = results[f"code-{kind}"]["figures"]["perplexity"]["no_memory"]
            ax.axhline(base, color=STYLE[kind][0], ls=":", lw=1)
    ax.set(xlabel="distractor files in memory (N)", ylabel="perplexity (bytes)",
           title="Code: perplexity with distractors (dotted: no memory)")
    return any(drawn)


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
            bars = rec["figures"].get("ci95", {}).get(name)  # 95% intervals, when recorded
            yerr = None if not bars else [[values[k] - bars[k][0] for k in keys],
                                          [bars[k][1] - values[k] for k in keys]]
            n = rec["figures"].get("n", {}).get(name, {}).get(keys[0])
            ax.errorbar(range(len(keys)), [values[k] for k in keys], yerr=yerr, fmt=fmt,
                        color=color, capsize=3, label=label + (f" (n = {n} per length)" if n else ""))
            ax.set_xticks(range(len(keys)), keys)
    ax.set(xlabel="prompt length (x training context of 512 bytes)", ylabel="passkey accuracy",
           ylim=(-0.05, 1.05), title="Passkey retrieval beyond the training context")
    return True


TEXT = (("text-fot", "fot", "text-fot: FoT continuation (d ramped to 8)"),
        ("text-d1", "d1", "text-d1: d = 1 continuation"),
        ("text-vanilla", "vanilla", "text-vanilla: the base (no memory layer)"))
CONTROL = ("text-plain-fot", "plain", "text-plain-fot: FoT from a base that cannot copy")


def _with_intervals(ax, rec: dict, metric: str, kind: str, label: str, positions=None) -> bool:
    """``metric`` of record ``rec`` with its 95% bars, in ``kind``'s style."""
    values = rec.get("figures", {}).get(metric) if rec else None
    if not values:
        return False
    keys = list(values)
    bars = rec["figures"].get("ci95", {}).get(metric)
    yerr = None if not bars else [[values[k] - bars[k][0] for k in keys],
                                  [bars[k][1] - values[k] for k in keys]]
    n = rec["figures"].get("n", {}).get(metric, {}).get(keys[0])
    color, fmt = STYLE[kind]
    xs = positions(keys) if positions else [float(k) for k in keys]
    ax.errorbar(xs, [values[k] for k in keys], yerr=yerr, fmt=fmt, color=color, capsize=3,
                label=label + (f" (n = {n})" if n else ""))
    return True


def text_memory(results: dict, ax) -> bool:
    """§5.1 at classroom scale: what a single-document memory takes off book perplexity, paired
    (the same tokens with and without memory; across books perplexity differs far more)."""
    drawn = [_with_intervals(ax, results.get(name), "memory_drop", kind, label)
             for name, kind, label in (*TEXT[:2], CONTROL)]
    ax.axhline(0, color="black", lw=1)
    ax.axhline(0.05, color="#1f77b4", ls=":", lw=1, label="the issue's target for FoT at 16k")
    ax.set(xscale="log", xlabel="memory of the book's own earlier text (tokens)",
           ylabel="drop: 1 - ppl(M) / ppl(0)", title="Books: what memory takes off perplexity (§5.1)")
    ax.set_xticks([1024, 4096, 16384], ["1k", "4k", "16k"])
    ax.minorticks_off()
    return any(drawn)


def text_passkey(results: dict, ax) -> bool:
    """The LongLLaMA recipe on passkey: the base (no memory) against its continuations."""
    drawn = [_with_intervals(ax, results.get(name), metric, kind, label,
                             positions=lambda keys: list(range(len(keys))))
             for (name, kind, label), metric in zip(TEXT, ("passkey_top32", "passkey_top32",
                                                           "passkey_no_memory"))]
    lengths = [list(results[name]["figures"].get(metric, {}))
               for (name, _, _), metric in zip(TEXT, ("passkey_top32",) * 2 + ("passkey_no_memory",))
               if name in results]
    if any(lengths):
        keys = max(lengths, key=len)
        ax.set_xticks(range(len(keys)), keys)
    ax.set(xlabel="prompt length (x training context of 512 bytes)", ylabel="passkey accuracy",
           ylim=(-0.05, 1.05), title="Passkey: base vs continued with memory")
    return any(drawn)


RECORDS = RECORDS_DIR
COPY_ARMS = {"synthetic": "random bytes + strings",  # experiments/copy_emergence.py's training data
             "strings": "books + strings", "curriculum": "copy first, then books + strings",
             "phrases": "books + phrases and strings",
             "phrase-curriculum": "copy first, then books + phrases and strings"}


def copy_emergence(records: Path, ax) -> bool:
    """Does the text models' architecture learn to copy inside its window, and when? The copy gap
    (loss on a span's first copy minus its second) against training steps, per training run."""
    drawn = False
    colors = itertools.cycle(("#2ca02c", "#ff7f0e", "#17becf", "#bcbd22", "#d62728", "#9467bd",
                              "#8c564b", "#e377c2", "#1f77b4", "#aec7e8", "#ffbb78",
                              "#98df8a", "#c5b0d5"))
    for path in sorted(records.glob("copy-emergence-*.json")):
        record = json.loads(path.read_text())
        (arm,), curve, color = record["arm"], record["curve"], next(colors)
        smear = re.search(r"--smear-keys (\S+)", record.get("command", ""))  # fot_edu.smear
        conv = re.search(r"--qk-conv (\S+)", record.get("command", ""))  # fot_edu.qk_conv
        width = re.search(r"--qk-conv-width (\d+)", record.get("command", ""))
        name = (COPY_ARMS[arm] + (f", smeared keys in layer {smear.group(1)}" if smear else "")
                + (f", q, k convolved over {width.group(1) if width else 4} bytes in layer "
                   f"{conv.group(1)}" if conv else ""))
        for content, fmt in (("random", "-o"), ("text", "--s")):
            if content == "text" and arm == "synthetic":
                continue  # a model that never saw text, on text: not a copying measurement
            steps = [point["step"] for point in curve]
            gaps = [point[content]["gap"] for point in curve]
            bars = [point[content]["gap_ci95"] for point in curve]
            ax.errorbar(steps, gaps, yerr=[[g - b[0] for g, b in zip(gaps, bars)],
                                           [b[1] - g for g, b in zip(gaps, bars)]],
                        fmt=fmt, color=color, capsize=2, ms=3,
                        label=f"{name}, {steps[-1]} steps: {content} spans")
            drawn = True
    if not drawn:
        return False
    diagnostic = records / "text-diagnostic-cpu.json"
    if diagnostic.exists():
        base = json.loads(diagnostic.read_text())["results"]["text-plain-vanilla"]["copying"]
        low, high = base["gap_ci95"]
        ax.errorbar([preset("text-plain-vanilla").steps], [base["gap"]],
                    yerr=[[base["gap"] - low], [high - base["gap"]]], fmt="x", color="#7f7f7f",
                    capsize=2, label="books only (text-plain-vanilla): text spans")
    ax.axhline(0, color="black", lw=1)
    rows = curve[0]["text"]["rows"]
    ax.set(xlabel="training steps (batch 16, window 256); legend: training data",
           ylabel=f"copy gap, nats/byte ({rows} rows, 95%)",
           title="Copying in the window (a perfect copier's gap = its first-copy loss)")
    ax.title.set_fontsize(9)
    ax.figure.set_size_inches(6.4, 9.4)  # the runs' legend below the axes, not over the curves
    ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1)
    return True


FIGURES = {"dictionary_accuracy": dictionary_accuracy, "distraction_ratio": distraction,
           "code_perplexity": code_perplexity, "passkey": passkey, "text_memory": text_memory,
           "text_passkey": text_passkey}
RECORD_FIGURES = {"copy_emergence": copy_emergence}  # drawn from the records in --records


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--records", type=Path, default=RECORDS)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "figures")
    args = parser.parse_args(argv)
    if not args.results.exists():
        raise SystemExit(f"{args.results} not found: run scripts/reproduce.py --ship first")
    results = json.loads(args.results.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    for name, draw, source in ([(n, f, results) for n, f in FIGURES.items()]
                               + [(n, f, args.records) for n, f in RECORD_FIGURES.items()]):
        fig, ax = plt.subplots(figsize=(5.6, 3.6), dpi=90)
        if draw(source, ax):
            ax.grid(alpha=0.3)
            if ax.get_legend() is None:  # a figure may place its own
                ax.legend(fontsize=7)
            fig.tight_layout()
            fig.savefig(args.out / f"{name}.png")
            print(f"wrote {args.out / f'{name}.png'}")
        else:
            where = args.records if source is args.records else args.results
            print(f"skipped {name}: its records are not in {where}")
        plt.close(fig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
