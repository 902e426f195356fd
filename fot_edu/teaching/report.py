r"""The shipped models' headline figures, for a classroom without Jupyter: an HTML file or a table.

``python -m fot_edu demo --out report.html`` writes one file: plotly's JavaScript is embedded
once (no network, no CDN), followed by the figures of ``fot_edu.teaching.figures``:

* where memory attention goes with N distractors, ``d = 1`` vs FoT (§3.3);
* the query-key cosines, own document vs distractors, for both models;
* the key space of both models (PCA);
* r_d against d (§3.3, Fig. 3) and dictionary accuracy against distractors (§5.2).

``python -m fot_edu demo`` prints the same story as a table in the terminal (:func:`tour`).
Models: the shipped checkpoints ``dict-d1`` and ``dict-fot`` when present, otherwise short
training runs (:func:`fot_edu.training.pretrained.load_or_train`). The r_d figures come from
:func:`fot_edu.evaluation.distraction.distraction_curve`, the function behind ``eval distraction`` and the
dashboard, so all three print the same numbers.
"""
from __future__ import annotations

import html
import time
from pathlib import Path

import plotly.io as pio

from fot_edu.evaluation.distraction import dictionary_accuracy, distraction_curve
from fot_edu.evaluation.probes import entry_key_cosine, memory_snapshot
from fot_edu.runtime import one_thread
from fot_edu.teaching import figures
from fot_edu.training.pretrained import has_checkpoint, load_or_train

HEADLINE_MODELS = {"d=1": "dict-d1", "FoT": "dict-fot"}


def headline_models() -> dict:
    """``{"d=1": (model, cfg), "FoT": (model, cfg)}``: the shipped dictionary models."""
    return {name: load_or_train(checkpoint) for name, checkpoint in HEADLINE_MODELS.items()}


def models_note() -> str:
    if all(has_checkpoint(c) for c in HEADLINE_MODELS.values()):
        return ("shipped checkpoints dict-d1 and dict-fot (1200 training steps each; "
                "fot_edu/shipped/checkpoints/README.md says how they were trained)")
    return "short training runs (no shipped checkpoints found)"


def headline_figures(models: dict, num_distractors: int = 7, ds=(1, 2, 4, 8, 16),
                     distractors=(0, 1, 3, 7, 15)) -> list:
    """``[(caption, figure), ...]`` for ``models`` ``{name: (model, cfg)}`` (dictionary task)."""
    snaps = {name: memory_snapshot(m, cfg, num_distractors) for name, (m, cfg) in models.items()}
    figs = [("Memory attention per document: the own document (blue) against distractors "
             "(orange).", figures.attention_mass_figure(snaps))]
    for name, snap in snaps.items():
        figs.append((f"{name}: cosine of queries with own vs distractor keys.",
                     figures.similarity_figure(snap, 0, title=f"{name}: query-key cosine, head 0 "
                                           f"(mean between entries: {entry_key_cosine(snap):.2f})")))
        figs.append((f"{name}: memory keys projected by PCA.",
                     figures.key_space_figure(snap, 0, title=f"{name}: memory keys, head 0, PCA")))
    curves = {name: distraction_curve(model, cfg, ds) for name, (model, cfg) in models.items()}
    accuracy = {name: dictionary_accuracy(model, cfg, distractors, batch_size=16,
                                          batches=1)["accuracy"]
                for name, (model, cfg) in models.items()}
    figs.append(("r_d against d: a model that cannot tell documents apart follows 1/d.",
                 figures.r_d_figure(curves)))
    figs.append(("Dictionary lookup accuracy as distractor documents fill the memory.",
                 figures.metric_vs_memory_figure(accuracy, "accuracy",
                                             title="Dictionary accuracy against distractors")))
    return figs


def write_report(path, models: dict | None = None, title: str = "Focused Transformer: distraction") -> Path:
    """Write the report to ``path``; ``models`` default: :func:`headline_models`."""
    models = headline_models() if models is None else models
    parts = [f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>",
             f"<h1>{html.escape(title)}</h1>", f"<p>Models: {html.escape(models_note())}.</p>"]
    for i, (caption, fig) in enumerate(headline_figures(models)):
        parts.append(f"<p>{html.escape(caption)}</p>")
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=(i == 0)))
    parts.append("</body></html>")
    path = Path(path)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def tour(models: dict | None = None, distractors=(0, 7, 15, 31), device="cpu") -> str:
    """The terminal tour: accuracy with N distractor documents in memory and r_8, per model."""
    models = headline_models() if models is None else models
    t0 = time.perf_counter()
    with one_thread(str(device) == "cpu"):  # small models: one thread is fastest on a busy CPU
        rows = {name: (dictionary_accuracy(model, cfg, distractors, batches=2,  # 64 documents
                                           device=device)["accuracy"],
                       distraction_curve(model, cfg, (8,), device=device)[8])
                for name, (model, cfg) in models.items()}
    lines = ["Dictionary lookup: a document defines keys in C_prev and asks for them in C_curr; the",
             "answers are only in memory. N other documents' definitions join the memory too.",
             f"Models: {models_note()}; evaluated now ({time.perf_counter() - t0:.0f} s).", "",
             f"{'model':>6}  " + "  ".join(f"{f'acc N={n}':>9}" for n in distractors) + "    r_8"]
    for name, (acc, r_8) in rows.items():
        lines.append(f"{name:>6}  " + "  ".join(f"{acc[n]:>9.3f}" for n in distractors)
                     + f"  {r_8:.3f}")
    lines += ["", "acc: value tokens answered right (64 documents per N). r_8: the paper's r_d",
              "(§3.3) for d = 8, the share of memory attention on the own C_prev when 7 other",
              "documents' C_prev sit beside it; 1/8 = 0.125 means no focus at all.",
              "FoT was trained with d up to 8 (crossbatch negatives); d=1 saw only its own C_prev.",
              "Explore: notebooks/ (make lab), or python -m fot_edu demo --out report.html"]
    return "\n".join(lines)
