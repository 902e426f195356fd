"""Turn an executed notebook's outputs into HTML that a static, offline page can show.

Two kinds of output would be lost in a static page:

* a plotly figure, which a Jupyter kernel sends as ``application/vnd.plotly.v1+json`` only (plotly
  chooses its ``plotly_mimetype`` renderer there; JupyterLab draws it, Sphinx has no renderer for
  it). It becomes a ``<div>`` and a ``Plotly.newPlot`` call, with no plotly.js in it: the book
  serves one copy of plotly.js from ``_static`` (``book/conf.py``).
* a widget (ipywidgets, plotly's ``FigureWidget``), which is a view of a model that lives in the
  kernel. nbclient saves every model's last state in the notebook's metadata; from it we draw what
  the widget showed when the notebook finished: its figures, its printed output and HTML, and each
  control as a label with its value. Nothing responds to a click, and the page says so (except
  under a progress bar, tqdm's, which has nothing to click).

Everything else (printed text, tables, images, errors) is left to myst-nb as it is.
"""
from __future__ import annotations

import base64
import html
import json
from typing import Any

PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE_MIME = "application/vnd.jupyter.widget-state+json"
STATIC_NOTE = ("A live widget in JupyterLab (<code>make lab</code>); here, what it showed when the "
               "notebook finished. Its controls do not respond in this book.")


class FigureIds:
    """Deterministic ``div`` ids (``fig-<notebook>-<n>``), so that two builds give the same HTML."""

    def __init__(self, prefix: str):
        self.prefix, self.count = prefix, 0

    def __call__(self) -> str:
        self.count += 1
        return f"fig-{self.prefix}-{self.count}"


def plotly_html(figure: dict, div_id: str) -> str:
    """A figure (``{"data", "layout"}``) as a responsive div; needs a global ``Plotly`` on the page."""
    import plotly.io as pio

    page = pio.to_html(figure, include_plotlyjs=False, include_mathjax=False, full_html=False,
                       default_width="100%", default_height=480, div_id=div_id, validate=False,
                       config={"responsive": True, "displaylogo": False})
    # the theme loads its scripts (plotly.js among them) at the end of the body, after this one:
    # draw once the whole page has been read
    head, sep, rest = page.partition("<script>")
    body, sep_end, tail = rest.rpartition("</script>")
    if not (sep and sep_end) or "<script" in body:
        raise ValueError(f"unexpected HTML from plotly.io.to_html: {page[:300]}")
    return (f'{head}<script>document.addEventListener("DOMContentLoaded", function () {{{body}}});'
            f"</script>{tail}")


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def output_html(output: dict, ids: FigureIds, widgets: dict) -> str | None:
    """HTML for one nbformat output inside a widget (an ``Output`` widget's list); None if empty."""
    kind = output.get("output_type")
    if kind == "stream":
        return f'<pre class="fot-stream">{html.escape(_text(output.get("text", "")))}</pre>'
    if kind == "error":
        return f'<pre class="fot-error">{html.escape(output.get("ename", ""))}: {html.escape(output.get("evalue", ""))}</pre>'
    data = output.get("data", {})
    if PLOTLY_MIME in data:
        return plotly_html(data[PLOTLY_MIME], ids())
    if WIDGET_VIEW_MIME in data:
        return widget_html(data[WIDGET_VIEW_MIME]["model_id"], widgets, ids)
    if "text/html" in data:
        return _text(data["text/html"])
    for mime in ("image/png", "image/jpeg"):
        if mime in data:
            payload = _text(data[mime]).replace("\n", "")
            base64.b64decode(payload, validate=True)  # a data URL of what the kernel sent, nothing else
            return f'<img alt="" src="data:{mime};base64,{payload}">'
    if "text/plain" in data:
        return f'<pre class="fot-plain">{html.escape(_text(data["text/plain"]))}</pre>'
    return None


def _control_html(name: str, state: dict) -> str:
    """A control (slider, dropdown, button, ...) as a label: what it is called and what it holds."""
    label = state.get("description") or name.removesuffix("Model")
    if "_options_labels" in state:  # Dropdown, ToggleButtons, RadioButtons, Select
        index = state.get("index")
        labels = state["_options_labels"]
        value = labels[index] if isinstance(index, int) and 0 <= index < len(labels) else ""
    elif name == "ButtonModel":
        value = None
    else:
        value = state.get("value")
    shown = html.escape(str(label)) + ("" if value is None else f": <b>{html.escape(str(value))}</b>")
    return f'<span class="fot-control">{shown}</span>'


def widget_html(model_id: str, widgets: dict, ids: FigureIds) -> str:
    """The last state of widget ``model_id`` (and its children) as static HTML."""
    model = widgets.get(model_id)
    if model is None:
        return '<span class="fot-control">(a widget whose state was not saved)</span>'
    name, state = model.get("model_name", ""), model.get("state", {})
    if "_widget_data" in state:  # plotly's FigureWidget (an anywidget model)
        return plotly_html({"data": state["_widget_data"], "layout": state.get("_widget_layout", {})}, ids())
    if "children" in state:  # VBox, HBox, Box, GridBox, Tab, Accordion
        direction = "row" if name == "HBoxModel" else "column"
        parts = [widget_html(child.removeprefix("IPY_MODEL_"), widgets, ids) for child in state["children"]]
        return f'<div class="fot-box" style="display:flex;flex-direction:{direction};flex-wrap:wrap;gap:0.5em">' \
               + "".join(parts) + "</div>"
    if name == "OutputModel":
        parts = [output_html(o, ids, widgets) for o in state.get("outputs", [])]
        return '<div class="fot-output">' + "".join(p for p in parts if p) + "</div>"
    if name in ("HTMLModel", "HTMLMathModel"):
        return f'<div class="fot-html">{state.get("value", "")}</div>'
    if name == "LabelModel":
        return f'<span class="fot-label">{html.escape(str(state.get("value", "")))}</span>'
    if name in PROGRESS:  # tqdm's bar in a notebook
        return f'<progress value="{state.get("value", 0)}" max="{state.get("max", 100)}"></progress>'
    return _control_html(name, state)


PASSIVE = {"HTMLModel", "HTMLMathModel", "LabelModel", "BoxModel", "HBoxModel", "VBoxModel"}
PROGRESS = {"FloatProgressModel", "IntProgressModel"}


def is_passive(model_id: str, widgets: dict) -> bool:
    """True for a widget with nothing to press or move and no figure: text and progress bars
    (tqdm's), which a static page shows as they are, without the note about live widgets."""
    model = widgets.get(model_id, {})
    name, state = model.get("model_name"), model.get("state", {})
    if name in PROGRESS:
        return True
    if name not in PASSIVE:
        return False
    return all(is_passive(child.removeprefix("IPY_MODEL_"), widgets) for child in state.get("children", []))


def convert_notebook(nb: dict, prefix: str) -> dict:
    """Rewrite ``nb`` (an executed notebook, as a dict) in place for the static book; return counts.

    Plotly outputs and widget views become ``text/html`` outputs; the saved widget state is removed
    from the metadata (it held each FigureWidget's JavaScript, megabytes, and myst-nb would embed
    it with loaders from a CDN).
    """
    widgets = nb.get("metadata", {}).pop("widgets", {}).get(WIDGET_STATE_MIME, {}).get("state", {})
    ids, counts = FigureIds(prefix), {"figures": 0, "widgets": 0}
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []):
            data = output.get("data")
            if not data:
                continue
            if PLOTLY_MIME in data:
                output["data"] = {"text/html": plotly_html(data[PLOTLY_MIME], ids())}
                counts["figures"] += 1
            elif WIDGET_VIEW_MIME in data:
                model_id = data[WIDGET_VIEW_MIME]["model_id"]
                body = widget_html(model_id, widgets, ids)
                if is_passive(model_id, widgets):
                    output["data"] = {"text/html": f'<div class="fot-passive-widget">{body}</div>'}
                else:
                    output["data"] = {"text/html": f'<div class="fot-static-widget"><p class="fot-widget-note">'
                                                    f'{STATIC_NOTE}</p>{body}</div>'}
                counts["widgets"] += 1
            output.get("metadata", {}).pop(PLOTLY_MIME, None)
    counts["figures_in_widgets"] = ids.count - counts["figures"]
    return counts


if __name__ == "__main__":  # python book/outputs.py EXECUTED.ipynb: what would change
    import sys

    with open(sys.argv[1], encoding="utf-8") as f:
        print(json.dumps(convert_notebook(json.load(f), "check")))
