r"""Interactive views of distraction: sliders and dropdowns over the figures of ``fot_edu.teaching.figures``.

Paper: Focused Transformer §3.3 (distraction), §3.2 (crossbatch), §5.2 (dictionary lookup).

Every function here builds a widget and returns ``(widget, handles)``: ``widget`` is what a
notebook displays, ``handles`` a dict of its controls and ``plotly`` ``FigureWidget`` s. A test (or
a curious student) drives the controls in Python (``handles["distractors"].value = 15``) and reads
the figures' data back (``handles["mass"].data[0].y``): nothing needs a browser.

==========================  ===============================================================
function                    shows
==========================  ===============================================================
:func:`distraction_dial`    memory attention on own document vs each distractor, N slider
:func:`key_space_explorer`  PCA of memory keys + query-key cosines, own vs distractors
:func:`classroom_dashboard` all of it for one lecture: model, d, N, layer, head, query
==========================  ===============================================================

Figures are recomputed only for what a control changed, and snapshots are cached per
``(model, N, layer)``, so dragging a slider back is instant. Every number comes from the same
functions as the command line and the report (``fot_edu.evaluation.probes``, ``fot_edu.evaluation.distraction``).
"""
from __future__ import annotations

import ipywidgets as W
import plotly.graph_objects as go

from fot_edu.evaluation.distraction import distraction_curve
from fot_edu.evaluation.probes import SHOWN_TOP_K, attention_mass, memory_snapshot
from fot_edu.teaching import figures


def _replace_traces(fig: go.FigureWidget, traces: list) -> None:
    with fig.batch_update():
        fig.data = []
        fig.add_traces(traces)


class _Snapshots:
    """Cache of ``probes.memory_snapshot`` per (model name, N, layer)."""

    def __init__(self, models: dict, k: int, seed: int):
        self.models, self.k, self.seed, self._cache = models, k, seed, {}

    def __call__(self, name: str, num: int, layer=None):
        key = (name, num, layer)
        if key not in self._cache:
            model, cfg = self.models[name]
            self._cache[key] = memory_snapshot(model, cfg, num, k=self.k, seed=self.seed,
                                               layer=layer)
        return self._cache[key]


def _memory_models(models: dict) -> dict:
    kept = {name: mc for name, mc in models.items() if mc[0].cfg.memory_layers}
    if not kept:
        raise ValueError(f"none of the models {sorted(models)} has a memory layer")
    return kept


def distraction_dial(models: dict, max_distractors: int = 31, value: int = 7, *, seed: int = 0):
    """Slider for N distractor documents; bars of memory attention per document, one per model.

    ``models``: ``{name: (model, cfg)}`` of dictionary models (e.g. ``{"d=1": ..., "FoT": ...}``).
    Handles: ``distractors`` (IntSlider), ``mass`` (FigureWidget), ``own`` (Label with the
    own-document share of each model).
    """
    models = _memory_models(models)
    snaps = _Snapshots(models, k=SHOWN_TOP_K, seed=seed)
    slider = W.IntSlider(value=value, min=1, max=max_distractors, description="distractors N",
                         continuous_update=False, style={"description_width": "initial"})
    fig = go.FigureWidget(figures.attention_mass_figure({n: snaps(n, value) for n in models}))
    label = W.HTML()

    def update(_=None):
        current = {n: snaps(n, slider.value) for n in models}
        _replace_traces(fig, figures.attention_mass_traces(current))
        fig.layout.title.text = f"Where memory attention goes with {slider.value} distractor documents"
        label.value = " | ".join(f"<b>{n}</b>: {attention_mass(s)['own']:.0%} on own document"
                                 for n, s in current.items())

    slider.observe(update, names="value")
    update()
    return W.VBox([slider, label, fig]), {"distractors": slider, "mass": fig, "own": label}


def _query_options(snap) -> list:
    return [(f"pos {p}: {snap.query_text[p]}", p) for p in snap.answer_queries]


def _refresh_queries(query: W.Dropdown, snap) -> None:
    """New query labels for a new snapshot (same positions can hold other text), keeping the
    selected position when it still exists."""
    options = _query_options(snap)
    if options != list(query.options):
        keep = query.value
        query.options = options
        query.value = keep if keep in [v for _, v in options] else options[0][1]


def key_space_explorer(models: dict, num_distractors: int = 7, *, k: int = SHOWN_TOP_K, seed: int = 0,
                       max_distractors: int = 31, dims: int = 2):
    """Memory keys projected by PCA beside the distribution of query-key cosines.

    Pick a model, N, a head and a query (an answer position of ``C_curr``); the query's true key,
    its top-``k`` neighbours and the distractors' near misses are highlighted, with the text
    around each key on hover. Handles: ``model``, ``distractors``, ``head``, ``query``, ``dims``,
    ``keys`` (FigureWidget), ``similarity`` (FigureWidget).
    """
    models = _memory_models(models)
    snaps = _Snapshots(models, k=k, seed=seed)
    names = list(models)
    first = snaps(names[0], num_distractors)
    heads = models[names[0]][0].cfg.n_heads
    model_dd = W.Dropdown(options=names, value=names[0], description="model")
    slider = W.IntSlider(value=num_distractors, min=1, max=max_distractors,
                         description="distractors N", continuous_update=False,
                         style={"description_width": "initial"})
    head = W.IntSlider(value=0, min=0, max=heads - 1, description="head", continuous_update=False)
    query = W.Dropdown(options=_query_options(first), description="query")
    dims_tb = W.ToggleButtons(options=[("2-D", 2), ("3-D", 3)], value=dims, description="PCA")
    keys_fig = go.FigureWidget(figures.key_space_figure(first, 0, query.value, dims))
    sim_fig = go.FigureWidget(figures.similarity_figure(first, 0))
    busy = {"query": False}

    def redraw(_=None):
        if busy["query"]:
            return
        snap = snaps(model_dd.value, slider.value)
        head.max = models[model_dd.value][0].cfg.n_heads - 1
        busy["query"] = True
        _refresh_queries(query, snap)
        busy["query"] = False
        fresh = figures.key_space_figure(snap, head.value, query.value, dims_tb.value,
                                     title=f"{model_dd.value}: memory keys, head {head.value}, "
                                           f"{slider.value} distractors (PCA)")
        with keys_fig.batch_update():
            keys_fig.data = []
            keys_fig.add_traces(list(fresh.data))
            keys_fig.layout.title.text = fresh.layout.title.text
            if dims_tb.value == 3:
                keys_fig.layout.scene.update(fresh.layout.scene)
        sim = figures.similarity_figure(snap, head.value)
        with sim_fig.batch_update():
            sim_fig.data = []
            sim_fig.add_traces(list(sim.data))
            sim_fig.layout.title.text = f"{model_dd.value}: " + sim.layout.title.text

    for control in (model_dd, slider, head, query, dims_tb):
        control.observe(redraw, names="value")
    redraw()
    wrap = W.Layout(flex_flow="row wrap")  # figures stack on screens narrower than two of them
    controls = W.HBox([model_dd, slider, head])
    widget = W.VBox([controls, W.HBox([query, dims_tb]), W.HBox([keys_fig, sim_fig], layout=wrap)])
    return widget, {"model": model_dd, "distractors": slider, "head": head, "query": query,
                    "dims": dims_tb, "keys": keys_fig, "similarity": sim_fig}


def _enlarge(fig: go.Figure, size: int) -> go.Figure:
    """Type of ``size`` px in ``fig`` (titles a little larger), for a projector; a table's rows
    grow with their text, and the figure with its rows, so that every row stays in the frame."""
    fig.update_layout(font_size=size, title_font_size=size + 2,
                      height=round((fig.layout.height or 450) * size / 13))  # room for axis titles
    for table in fig.select_traces(selector=dict(type="table")):
        rows = len(table.cells.values[0]) if table.cells.values else 0
        # no-break spaces: a header that must wrap stays blank when drawn hidden (see figures)
        table.header.update(font_size=size, height=2 * size,
                            values=[str(v).replace(" ", "\u00a0") for v in table.header.values])
        table.cells.update(font_size=size, height=2 * size)
        margin = (fig.layout.margin.t or 0) + (fig.layout.margin.b or 0)
        # a set width: a table drawn while the page is hidden (Voilà) is never resized to its box
        fig.update_layout(height=margin + 2 * size * (rows + 1) + 40, width=fig.layout.width or 1200)
    return fig


def classroom_dashboard(models: dict, *, k: int = SHOWN_TOP_K, seed: int = 0, max_distractors: int = 31,
                        r_d_values=(1, 2, 4, 8, 16), font_size: int | None = None):
    """One dashboard for a lecture: model, d, N distractors, layer, head and a query picker.

    Shows the key space, the query-key cosines, the attention mass per document, the retrieval
    table of the query, and r_d against d (§3.3) with the chosen d marked. ``font_size`` (px):
    larger type in every figure, for a projector (``apps/dashboard.ipynb`` uses 16). Handles:
    ``model``, ``d``, ``distractors``, ``layer``, ``head``, ``query`` and the FigureWidgets
    ``keys``, ``similarity``, ``mass``, ``table``, ``r_d``.
    """
    models = _memory_models(models)
    snaps = _Snapshots(models, k=k, seed=seed)
    names = list(models)
    model_dd = W.Dropdown(options=names, value=names[0], description="model")
    d_slider = W.SelectionSlider(options=list(r_d_values), value=r_d_values[min(2, len(r_d_values) - 1)],
                                 description="d", continuous_update=False)
    slider = W.IntSlider(value=7, min=1, max=max_distractors, description="distractors N",
                         continuous_update=False, style={"description_width": "initial"})
    layer = W.Dropdown(options=list(models[names[0]][0].cfg.memory_layers), description="layer")
    head = W.IntSlider(value=0, min=0, max=models[names[0]][0].cfg.n_heads - 1, description="head",
                       continuous_update=False)
    query = W.Dropdown(description="query")
    figs: dict = {}  # name -> FigureWidget, made by the first redraw
    r_d_cache: dict = {}
    busy = {"on": False}

    def r_d_curve(name, lay):
        if (name, lay) not in r_d_cache:
            model, cfg = models[name]
            r_d_cache[(name, lay)] = distraction_curve(model.cpu(), cfg, r_d_values, layer=lay)
        return r_d_cache[(name, lay)]

    def redraw(_=None):
        if busy["on"]:
            return
        busy["on"] = True
        model = models[model_dd.value][0]
        if list(layer.options) != list(model.cfg.memory_layers):
            layer.options = list(model.cfg.memory_layers)
        head.max = model.cfg.n_heads - 1
        snap = snaps(model_dd.value, slider.value, layer.value)
        _refresh_queries(query, snap)
        busy["on"] = False
        tag = f"{model_dd.value}, layer {layer.value}, head {head.value}"
        parts = {"keys": figures.key_space_figure(snap, head.value, query.value,
                                              title=f"Memory keys ({tag}, N={slider.value})"),
                 "similarity": figures.similarity_figure(snap, head.value),
                 "mass": figures.attention_mass_figure({model_dd.value: snap}, head.value),
                 "table": figures.retrieval_table(snap, query.value, head.value)}
        curve = r_d_curve(model_dd.value, layer.value)
        r_fig = figures.r_d_figure({model_dd.value: curve})
        r_fig.add_trace(go.Scatter(x=[d_slider.value], y=[curve[d_slider.value]], mode="markers",
                                   name=f"chosen d={d_slider.value}: r_d={curve[d_slider.value]:.2f}",
                                   marker=dict(size=16, color=figures.QUERY_COLOR, symbol="star")))
        parts["r_d"] = r_fig
        for name, fresh in parts.items():
            if font_size:
                _enlarge(fresh, font_size)
            if name not in figs:
                # the first view is built from the widget's initial state (plotly sends later
                # edits as messages, which Voilà's page, connecting after the run, never sees)
                figs[name] = go.FigureWidget(fresh)
                continue
            with figs[name].batch_update():
                figs[name].data = []
                figs[name].add_traces(list(fresh.data))
                figs[name].layout = fresh.layout

    for control in (model_dd, d_slider, slider, layer, head, query):
        control.observe(redraw, names="value")
    redraw()
    widget = W.VBox([W.HBox([model_dd, d_slider, slider]), W.HBox([layer, head, query]),
                     W.HBox([figs["keys"], figs["similarity"]], layout=W.Layout(flex_flow="row wrap")),
                     W.HBox([figs["mass"], figs["r_d"]], layout=W.Layout(flex_flow="row wrap")),
                     figs["table"]])
    return widget, {"model": model_dd, "d": d_slider, "distractors": slider, "layer": layer,
                    "head": head, "query": query, **figs}
