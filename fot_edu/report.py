r"""A standalone HTML report of the headline plots, for a classroom without Jupyter.

``python -m fot_edu demo --out report.html`` writes one file: plotly's JavaScript is embedded
once (no network, no CDN), followed by the figures of ``fot_edu.viz``:

* where memory attention goes with N distractors, ``d = 1`` vs FoT (§3.3);
* the query-key cosines, own document vs distractors, for both models;
* the key space of both models (PCA);
* r_d against d (§3.3, Fig. 3) and dictionary accuracy against distractors (§5.2).

Models: the shipped checkpoints ``dict-d1`` and ``dict-fot`` when present, otherwise short
training runs (:func:`fot_edu.viz.load_or_train`).
"""
from __future__ import annotations

import html
from pathlib import Path

import plotly.io as pio

from . import viz


def headline_figures(models: dict, num_distractors: int = 7, ds=(1, 2, 4, 8, 16),
                     distractors=(0, 1, 3, 7, 15)) -> list:
    """``[(caption, figure), ...]`` for ``models`` ``{name: (model, cfg)}`` (dictionary task)."""
    from .datasets import training_batch
    from .evaluate import dictionary_accuracy, distraction_ratio

    snaps = {name: viz.memory_snapshot(m, cfg, num_distractors) for name, (m, cfg) in models.items()}
    figs = [("Memory attention per document: the own document (blue) against distractors "
             "(orange).", viz.attention_mass_figure(snaps))]
    for name, snap in snaps.items():
        figs.append((f"{name}: cosine of queries with own vs distractor keys.",
                     viz.similarity_figure(snap, 0, title=f"{name}: query-key cosine, head 0 "
                                           f"(mean between entries: {viz.entry_key_cosine(snap):.2f})")))
        figs.append((f"{name}: memory keys projected by PCA.",
                     viz.key_space_figure(snap, 0, title=f"{name}: memory keys, head 0, PCA")))
    curves, accuracy = {}, {}
    for name, (model, cfg) in models.items():
        batch = training_batch(cfg.data, "eval", max(ds), step=1000, seed=cfg.seed)
        mask = batch.targets[:, 1] != -100
        curves[name] = {d: distraction_ratio(model, batch.tokens, d, query_mask=mask) for d in ds}
        accuracy[name] = dictionary_accuracy(model, cfg, distractors, batch_size=16,
                                             batches=1)["accuracy"]
    figs.append(("r_d against d: a model that cannot tell documents apart follows 1/d.",
                 viz.r_d_figure(curves)))
    figs.append(("Dictionary lookup accuracy as distractor documents fill the memory.",
                 viz.metric_vs_memory_figure(accuracy, "accuracy",
                                             title="Dictionary accuracy against distractors")))
    return figs


def write_report(path, models: dict | None = None, title: str = "Focused Transformer: distraction") -> Path:
    """Write the report to ``path``; ``models`` default: ``d=1`` and ``FoT`` dictionary models."""
    if models is None:
        models = {"d=1": viz.load_or_train("dict-d1"), "FoT": viz.load_or_train("dict-fot")}
    shipped = all(viz.has_checkpoint(n) for n in ("dict-d1", "dict-fot"))
    parts = [f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             "<p>Models: " + ("shipped checkpoints" if shipped else
                              "short training runs (no shipped checkpoints found)") + ".</p>"]
    for i, (caption, fig) in enumerate(headline_figures(models)):
        parts.append(f"<p>{html.escape(caption)}</p>")
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=(i == 0)))
    parts.append("</body></html>")
    path = Path(path)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
