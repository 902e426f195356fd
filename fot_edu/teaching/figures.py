r"""Figures of distraction: what a memory layer's keys, queries and attention look like.

Paper: Focused Transformer §3.3 (the distraction issue, Fig. 3) and §3.2 (crossbatch training).

Every function returns a ``plotly`` figure (or its traces) built from the measurements of
``fot_edu.evaluation.probes``; nothing here runs a model.

* :func:`key_space_figure` projects memory keys to 2-D or 3-D (PCA, plain SVD) and marks a query,
  its true key and its top-``k`` neighbours; :func:`similarity_figure` shows the cosine
  :math:`\langle\hat q, \hat k\rangle` of queries with own vs distractor keys (where ``d = 1`` and
  FoT differ most visibly);
* :func:`attention_mass_figure` (mass per document), :func:`r_d_figure` (:math:`r_d` against
  ``d`` with the :math:`1/d` line), :func:`metric_vs_memory_figure` (accuracy, perplexity or
  passkey accuracy as memory grows), :func:`retrieval_table` (what a query found),
  :func:`weights_figure` (one query's attention, local then memory), :func:`timing_figure`,
  :func:`induction_figure` (where copying lives: induction score per layer and head).

Interactive versions (sliders, dropdowns, live training curves) are in ``fot_edu.teaching.widgets``; the
standalone HTML report in ``fot_edu.teaching.report``.

Colours are the same everywhere: :data:`OWN_COLOR` for the own document, :data:`DISTRACTOR_COLOR`
for distractors, :data:`LOCAL_COLOR` for the local window, :data:`MODEL_COLORS` per model.
"""
from __future__ import annotations

import plotly.graph_objects as go
import torch

from fot_edu.evaluation.probes import (MemorySnapshot, attention_mass, doc_label, entry_key_cosine,
                                       retrieval_rows, similarities)

OWN_COLOR = "#0072B2"  # blue: the own document (C_prev of the query's document)
DISTRACTOR_COLOR = "#E69F00"  # orange: other documents in memory
LOCAL_COLOR = "#999999"  # grey: the local window (C_curr's own causal keys)
QUERY_COLOR = "#000000"
MODEL_COLORS = {"d=1": "#D55E00", "FoT": "#009E73", "MT": "#CC79A7", "vanilla": "#999999"}
PATTERNS = ("", "/", "x", ".")  # bar patterns that tell models apart where colour means document


def pca(points: torch.Tensor, dims: int = 2):
    """``(mean, basis)`` of the top ``dims`` principal directions of ``points`` ``(m, dh)``."""
    mean = points.mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(points - mean, full_matrices=False)
    return mean, vh[:dims].T  # project: (x - mean) @ basis
def key_space_traces(snap: MemorySnapshot, head: int = 0, query: int | None = None,
                     dims: int = 2) -> list:
    """Scatter traces: distractor keys, own keys, top-k found, true key, the query."""
    if dims not in (2, 3):
        raise ValueError(f"dims={dims!r} is not allowed: 2 or 3")
    query = snap.answer_queries[0] if query is None else query
    keys = snap.keys[head].float()
    mean, basis = pca(keys, dims)
    xy = ((keys - mean) @ basis).tolist()
    q_xy = ((snap.queries[head, query:query + 1] - mean) @ basis).tolist()
    own = snap.is_own()
    scatter = go.Scatter3d if dims == 3 else go.Scatter
    size = 3 if dims == 3 else 6

    def points(slots, name, color, symbol, msize, text=None, opacity=0.6):
        slots = list(slots)
        cols = list(zip(*[xy[s] for s in slots])) if slots else [[]] * dims
        coords = dict(zip("xyz", cols))
        hover = text if text is not None else [f"{doc_label(snap, int(snap.slot_doc[s]))}: "
                                               f"{snap.slot_text[s]}" for s in slots]
        return scatter(**coords, mode="markers", name=name, text=hover, hoverinfo="text",
                       marker=dict(color=color, size=msize, symbol=symbol, opacity=opacity,
                                   line=dict(width=1, color=QUERY_COLOR)))

    found = snap.topk_slots[head, query].tolist()
    distractor_found = [s for s in found if not own[s]]
    true = snap.true_slot.get(query)
    traces = [points(torch.nonzero(~own).flatten().tolist(), "distractor keys", DISTRACTOR_COLOR,
                     "circle", size),
              points(torch.nonzero(own).flatten().tolist(), "own-document keys", OWN_COLOR,
                     "circle", size),
              points([s for s in found if own[s]], "top-k found (own)", OWN_COLOR,
                     "diamond", size + 5, opacity=1.0),
              points(distractor_found, "top-k found (distractor: near miss)", DISTRACTOR_COLOR,
                     "diamond", size + 5, opacity=1.0),
              points([true] if true is not None else [], "true key (own definition)", OWN_COLOR,
                     "square", size + 8, opacity=1.0)]
    q_cols = dict(zip("xyz", zip(*q_xy)))
    traces.append(scatter(**q_cols, mode="markers", name="query", hoverinfo="text",
                          text=[f"query: {snap.query_text[query]}"],
                          marker=dict(color=QUERY_COLOR, size=size + 8,
                                      symbol="x" if dims == 3 else "star")))
    return traces


def key_space_figure(snap: MemorySnapshot, head: int = 0, query: int | None = None,
                     dims: int = 2, title: str = "") -> go.Figure:
    """Memory keys of one head, projected by PCA; the query's neighbours highlighted."""
    fig = go.Figure(key_space_traces(snap, head, query, dims))
    heading = title or f"Memory keys (head {head}, {snap.num_distractors} distractors), PCA"
    axes = dict(xaxis_title="PC 1 (unitless)", yaxis_title="PC 2 (unitless)")
    if dims == 3:
        fig.update_layout(scene=dict(**axes, zaxis_title="PC 3 (unitless)"))
    else:
        fig.update_layout(**axes)
    return fig.update_layout(title=heading, legend_title_text="key", height=450)


def similarity_figure(snap: MemorySnapshot, head: int = 0, title: str = "") -> go.Figure:
    """Histogram of query-key cosines, own document vs distractors (answer queries only)."""
    sims = similarities(snap, head)
    fig = go.Figure([
        go.Histogram(x=sims["distractors"], name="distractor keys", marker_color=DISTRACTOR_COLOR,
                     histnorm="probability density", opacity=0.7, xbins=dict(start=-1, end=1, size=0.05)),
        go.Histogram(x=sims["own"], name="own-document keys", marker_color=OWN_COLOR,
                     histnorm="probability density", opacity=0.7, xbins=dict(start=-1, end=1, size=0.05))])
    heading = title or (f"Query-key cosine, head {head} (mean cosine between entries' keys: "
                        f"{entry_key_cosine(snap, head):.2f})")
    return fig.update_layout(barmode="overlay", title=heading, height=450,
                             xaxis_title="cosine similarity <q, k> (unitless, -1..1)",
                             yaxis_title="density (per unit cosine)", legend_title_text="keys of")


def attention_mass_traces(snaps: dict, head: int | None = None) -> list:
    """Per model, two bar traces: the own document (blue) and each distractor (orange).

    Colour says which document; with several models, the bar pattern says which model (solid
    for the first, hatched for the next), so neither depends on a thin outline.
    """
    traces = []
    for i, (name, snap) in enumerate(snaps.items()):
        m = attention_mass(snap, head)
        pattern = dict(shape=PATTERNS[i % len(PATTERNS)], fgcolor="#333333", solidity=0.3)
        prefix = f"{name}: " if len(snaps) > 1 else ""
        common = dict(offsetgroup=name, marker_pattern=pattern, legendgroup=name,
                      hovertemplate=name + "<br>%{x}: %{y:.3f}<extra></extra>")
        traces.append(go.Bar(x=["own document"], y=[m["own"]], name=prefix + "own document",
                             marker_color=OWN_COLOR, **common))
        traces.append(go.Bar(x=[f"distractor {j + 1}" for j in range(len(m["distractors"]))],
                             y=m["distractors"], name=prefix + "distractors",
                             marker_color=DISTRACTOR_COLOR, **common))
    return traces


def attention_mass_figure(snaps: dict, head: int | None = None, title: str = "") -> go.Figure:
    """Bars of the answer queries' memory attention per document, one group per model."""
    n = next(iter(snaps.values())).num_distractors
    fig = go.Figure(attention_mass_traces(snaps, head))
    return fig.update_layout(
        title=title or f"Where memory attention goes with {n} distractor documents",
        barmode="group", xaxis_title="memory context (blue: own document, orange: distractors)",
        yaxis_title="attention mass (share of all attention, 0..1)", yaxis_range=[0, 1],
        legend_title_text="model: memory context" if len(snaps) > 1 else "memory context",
        height=420)


def r_d_figure(curves: dict, title: str = "") -> go.Figure:
    """``curves`` ``{model: {d: r_d}}``: r_d against d, with the 1/d of a model that cannot tell
    documents apart."""
    fig = go.Figure()
    ds = sorted({d for c in curves.values() for d in c})
    fig.add_trace(go.Scatter(x=ds, y=[1 / d for d in ds], name="1/d (no focus)", mode="lines",
                             line=dict(dash="dash", color=LOCAL_COLOR)))
    for name, curve in curves.items():
        xs = sorted(curve)
        fig.add_trace(go.Scatter(x=xs, y=[curve[d] for d in xs], name=name, mode="lines+markers",
                                 line=dict(color=MODEL_COLORS.get(name))))
    return fig.update_layout(title=title or "r_d: attention on the own C_prev among d contexts (§3.3)",
                             xaxis_title="d (contexts in memory: own + d-1 others)",
                             yaxis_title="r_d (share of memory attention, 0..1)", xaxis_type="log",
                             xaxis_tickvals=ds, xaxis_ticktext=[str(d) for d in ds],
                             yaxis_range=[0, 1.05], legend_title_text="model", height=420)


def metric_vs_memory_figure(results: dict, metric: str = "accuracy", title: str = "",
                            xlabel: str = "distractor documents in memory (N)",
                            intervals: dict | None = None) -> go.Figure:
    """``results`` ``{model: {N: value}}``: accuracy or perplexity as memory grows.
    ``intervals`` ``{model: {N: [low, high]}}`` (the ``ci95`` of an evaluation): error bars."""
    units = {"accuracy": "value-token accuracy (0..1)",
             "perplexity": "perplexity (per byte, lower is better)",
             "r": "attention on own document (share, 0..1)",
             "precision": "retrieval precision: top-k from own document (share, 0..1)",
             "passkey": "passkey accuracy (share of prompts answered exactly, 0..1)",
             "loss": "LM loss (nats per target token)"}
    fig = go.Figure()
    for name, curve in results.items():
        numeric = all(isinstance(x, (int, float)) for x in curve)
        xs = sorted(curve) if numeric else list(curve)  # "1x", "4x", ...: the order given
        bars = (intervals or {}).get(name)
        error_y = None if bars is None else dict(
            type="data", symmetric=False, array=[bars[x][1] - curve[x] for x in xs],
            arrayminus=[curve[x] - bars[x][0] for x in xs])
        fig.add_trace(go.Scatter(x=[str(x) for x in xs], y=[curve[x] for x in xs], name=name,
                                 mode="lines+markers", line=dict(color=MODEL_COLORS.get(name)),
                                 error_y=error_y))
    return fig.update_layout(title=title or f"{metric} against memory size", xaxis_title=xlabel,
                             yaxis_title=units.get(metric, metric), legend_title_text="model",
                             height=420)


# plotly reads table cells as HTML ("<k>" would vanish as a tag) and lays out cells with markup,
# entities or spaces only after measuring their text, which fails while the page hides the figure
# (Voilà until its notebook has run; JupyterLab for an output drawn off screen): such cells stay
# blank or misplaced. Look-alike brackets and no-break spaces make plain text that needs neither.
_PLAIN_CELL = str.maketrans({"<": "\u2039", ">": "\u203a", "&": "+", " ": "\u00a0"})


def retrieval_table(snap: MemorySnapshot, query: int | None = None, head: int = 0) -> go.Figure:
    """A table of what the query retrieved: snippet, document, cosine, attention weight, and
    whether the key belongs to the definition the query asks about."""
    rows = retrieval_rows(snap, query, head)
    query = snap.answer_queries[0] if query is None else query
    cols = ["rank", "snippet", "document", "cosine", "weight", "asked definition"]
    fill = [[OWN_COLOR + "33" if r["document"] == "own document" else DISTRACTOR_COLOR + "33"
             for r in rows]] * len(cols)
    cells = [[str(r[c]).translate(_PLAIN_CELL) for r in rows] for c in cols]
    table = go.Table(columnwidth=[0.6, 3, 1.6, 1, 1, 1.4],
                     header=dict(values=cols, height=30, font=dict(size=14)),
                     cells=dict(values=cells, fill_color=fill, height=28, font=dict(size=14)))
    return go.Figure(table).update_layout(
        title=f"Top-{len(rows)} retrieved for query '{snap.query_text[query]}' (head {head})",
        height=150 + 30 + 28 * len(rows), margin=dict(t=70, b=20))


def weights_figure(weights: dict, n_local: int, title: str = "") -> go.Figure:
    """``weights`` ``{name: (n_local + m,) weights of one query}``: local keys then memory keys,
    one bar colour per model; the local window is the grey band left of the dashed line."""
    fig = go.Figure()
    for name, w in weights.items():
        w = torch.as_tensor(w).detach().float().flatten().tolist()
        fig.add_trace(go.Bar(x=list(range(len(w))), y=w, name=name,
                             marker_color=MODEL_COLORS.get(name, QUERY_COLOR)))
    fig.add_vrect(x0=-0.5, x1=n_local - 0.5, fillcolor=LOCAL_COLOR, opacity=0.2, line_width=0,
                  annotation_text="local window", annotation_position="top left")
    fig.add_vline(x=n_local - 0.5, line_dash="dash",
                  annotation_text="memory", annotation_position="top right")
    return fig.update_layout(
        title=title or "One query's attention: local keys (grey band) | memory keys",
        barmode="group", xaxis_title="key index (local window first, then memory)",
        yaxis_title="attention weight (0..1)", legend_title_text="model", height=380)


def timing_figure(results: dict, title: str, ytitle: str) -> go.Figure:
    """``{backend: {size: value}}`` against memory size (log x)."""
    fig = metric_vs_memory_figure(results, "", title=title, xlabel="memory size (keys per head)")
    return fig.update_layout(yaxis_title=ytitle, legend_title_text="search backend")


def induction_figure(results: dict, title: str = "") -> go.Figure:
    """``results`` ``{model: copying.induction_scores(...)}``: each model's induction score per
    layer (rows) and head (columns) on one 0..1 scale, the values written in the cells."""
    fig = go.Figure()
    names = list(results)
    for i, name in enumerate(names):
        scores = results[name]["scores"]
        fig.add_trace(go.Heatmap(z=scores, x=[f"head {h}" for h in range(len(scores[0]))],
                                 y=[f"layer {layer}" for layer in range(len(scores))], zmin=0, zmax=1,
                                 colorscale="Blues", text=[[f"{v:.3f}" for v in row] for row in scores],
                                 texttemplate="%{text}", showscale=i == len(names) - 1,
                                 xaxis=f"x{i + 1}", yaxis="y", name=name,
                                 colorbar=dict(title="score")))
    width = 1 / len(names)
    layout = {f"xaxis{i + 1 if i else ''}": dict(domain=[i * width + 0.02, (i + 1) * width - 0.02],
                                                  title=name)
              for i, name in enumerate(names)}
    uniform = next(iter(results.values()))["uniform"]
    return fig.update_layout(**layout, yaxis=dict(autorange="reversed"), height=320,
                             title=title or f"Induction score per layer and head (1: a perfect "
                                            f"copier; {uniform:.3f}: attention spread evenly)")


def loss_curve_figure(curves: dict, d_switches: dict | None = None, title: str = "") -> go.Figure:
    """Training loss against step (a numeric axis): ``curves`` ``{run: {step: loss}}``;
    ``d_switches`` ``{step: d}`` marks where crossbatch's ``d`` changes (a dotted line each)."""
    fig = go.Figure([go.Scatter(x=sorted(curve), y=[curve[s] for s in sorted(curve)], name=run,
                                mode="lines", line=dict(color=MODEL_COLORS.get(run)))
                     for run, curve in curves.items()])
    for step, d in (d_switches or {}).items():
        fig.add_vline(x=step, line_dash="dot", annotation_text=f"d = {d}",
                      annotation_position="top right")
    return fig.update_layout(title=title or "Training loss", xaxis_title="training step",
                             yaxis_title="LM loss (nats per target token)",
                             legend_title_text="run", height=400)
