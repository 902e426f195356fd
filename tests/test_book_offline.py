"""The course book's two pieces of its own, without building it (tests/browser/test_book.py builds it):

* ``book/offline.py`` finds every resource that would load from outside the machine (a CDN script,
  a web font, a protocol-relative stylesheet, an image in a ``srcset`` or a CSS ``url()``) and
  leaves alone what is not fetched by itself: a link in prose, a ``data:`` image, text in a script;
* ``book/outputs.py`` turns a plotly output into a figure drawn from ``_static``'s plotly.js and a
  widget into its last saved state (figures, printed text, controls as labels), and drops the
  saved widget state.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "book"))
import offline  # noqa: E402
import outputs  # noqa: E402

PAGE = """<!doctype html><html><head>
<link rel="stylesheet" href="_static/furo.css">
<link rel="stylesheet" href="//fonts.googleapis.com/css?family=Roboto">
<script src="../_static/plotly.min.js"></script>
<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"></script>
<style>@import "https://example.org/theme.css"; body { color: black; }</style>
</head><body>
<p>The paper: <a href="https://arxiv.org/abs/2307.03170">arXiv 2307.03170</a>.</p>
<img src="data:image/png;base64,iVBORw0KGgo=" alt="">
<img src="_images/a.png" srcset="_images/a.png 1x, http://example.org/a@2x.png 2x" alt="">
<div style="background: url('https://example.org/bg.png')"></div>
<script>var home = "https://plot.ly"; // a string, not a request</script>
</body></html>"""


def test_scan_finds_every_outside_resource_and_nothing_else():
    found = offline.outside_in_html(PAGE)
    assert sorted(found) == sorted([
        "<link href=//fonts.googleapis.com/css?family=Roboto>",
        "<script src=https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js>",
        "<style> url(https://example.org/theme.css)",
        "<img srcset=http://example.org/a@2x.png>",
        "<div style=url(https://example.org/bg.png)>",
    ]), found
    assert not any("arxiv" in f or "plot.ly" in f or "_static" in f for f in found)


def test_scan_reads_html_and_css_files_of_a_site(tmp_path):
    (tmp_path / "_static").mkdir()
    (tmp_path / "index.html").write_text('<script src="_static/a.js"></script><a href="https://x.org">x</a>')
    (tmp_path / "lesson.html").write_text(PAGE)
    (tmp_path / "_static" / "ok.css").write_text("@font-face { src: url(fonts/a.woff2); }")
    (tmp_path / "_static" / "bad.css").write_text("@font-face { src: url( 'https://fonts.gstatic.com/a.woff2'); }")
    problems = offline.scan(tmp_path)
    assert sorted(problems) == ["_static/bad.css", "lesson.html"]
    assert problems["_static/bad.css"] == ["https://fonts.gstatic.com/a.woff2"]
    assert len(problems["lesson.html"]) == 5


def _figure(title: str) -> dict:
    return {"data": [{"type": "bar", "y": [1, 2, 3]}], "layout": {"title": {"text": title}}}


def _model(name: str, **state) -> dict:
    return {"model_name": name, "model_module": "@jupyter-widgets/controls", "state": state}


def _notebook() -> dict:
    widgets = {
        "box": _model("VBoxModel", children=["IPY_MODEL_slider", "IPY_MODEL_pick", "IPY_MODEL_fig", "IPY_MODEL_out"]),
        "slider": _model("IntSliderModel", description="distractors N", value=7),
        "pick": _model("DropdownModel", description="model", _options_labels=["d=1", "FoT"], index=1),
        "fig": {"model_name": "AnyModel", "model_module": "anywidget",
                "state": {"_esm": "x" * 1000, "_widget_data": _figure("inside")["data"],
                          "_widget_layout": _figure("inside")["layout"]}},
        "out": _model("OutputModel", outputs=[{"output_type": "stream", "name": "stdout", "text": "r_d <0.5>\n"}]),
    }
    return {
        "metadata": {"widgets": {outputs.WIDGET_STATE_MIME: {"state": widgets, "version_major": 2}}},
        "cells": [
            {"cell_type": "code", "outputs": [
                {"output_type": "display_data", "metadata": {},
                 "data": {outputs.PLOTLY_MIME: _figure("alone")}},
                {"output_type": "stream", "name": "stdout", "text": "loss 1.0\n"}]},
            {"cell_type": "code", "outputs": [
                {"output_type": "execute_result", "metadata": {}, "execution_count": 2,
                 "data": {outputs.WIDGET_VIEW_MIME: {"model_id": "box", "version_major": 2},
                          "text/plain": "VBox(...)"}},
                {"output_type": "display_data", "metadata": {},
                 "data": {outputs.WIDGET_VIEW_MIME: {"model_id": "gone", "version_major": 2}}}]},
        ],
    }


def test_plotly_outputs_and_widgets_become_static_html():
    nb = _notebook()
    counts = outputs.convert_notebook(nb, "07")
    assert counts == {"figures": 1, "widgets": 2, "figures_in_widgets": 1}
    assert "widgets" not in nb["metadata"]  # the state (with its JavaScript) is not carried along
    figure, printed = nb["cells"][0]["outputs"]
    assert list(figure["data"]) == ["text/html"] and printed["text"] == "loss 1.0\n"
    html = figure["data"]["text/html"]
    assert 'id="fig-07-1"' in html and "Plotly.newPlot" in html and "alone" in html
    assert "DOMContentLoaded" in html  # plotly.js comes later in the page
    assert "<script src" not in html and "cdn" not in html.lower()  # no plotly.js of its own
    widget, missing = (o["data"] for o in nb["cells"][1]["outputs"])
    assert list(widget) == ["text/html"]
    shown = widget["text/html"]
    assert "make lab" in shown and 'class="fot-static-widget"' in shown
    assert "distractors N: <b>7</b>" in shown and "model: <b>FoT</b>" in shown
    assert 'id="fig-07-2"' in shown and "inside" in shown and "x" * 100 not in shown
    assert "r_d &lt;0.5&gt;" in shown  # printed text is escaped, not read as HTML
    assert "state was not saved" in missing["text/html"]
    assert json.dumps(nb)  # still a notebook nbformat can write


def test_figure_ids_repeat_from_one_build_to_the_next():
    first, second = _notebook(), _notebook()
    outputs.convert_notebook(first, "03")
    outputs.convert_notebook(second, "03")
    assert first == second


def test_links_to_files_outside_the_book_become_text(monkeypatch):
    import build

    in_book = {"README.md", "docs/teaching.md", "notebooks/01_memory_attention.ipynb", "results/figures/a.png"}
    text = ("[CHANGELOG.md](CHANGELOG.md), [the guide](docs/teaching.md#plan), [paper](https://arxiv.org/abs/2307.03170), "
            "[up](#tests), ![a figure](results/figures/a.png), [lesson 1](../notebooks/01_memory_attention.ipynb)")
    assert build.unlink_outside(text, Path("."), in_book) == (
        "`CHANGELOG.md` (in the repository), [the guide](docs/teaching.md#plan), "
        "[paper](https://arxiv.org/abs/2307.03170), [up](#tests), ![a figure](results/figures/a.png), "
        "lesson 1 (`../notebooks/01_memory_attention.ipynb` in the repository)")
    # from docs/, ../notebooks/ is in the book
    assert build.unlink_outside("[lesson 1](../notebooks/01_memory_attention.ipynb)", Path("docs"), in_book) \
        == "[lesson 1](../notebooks/01_memory_attention.ipynb)"
    # the kernel runs in the mode asked for, whatever the caller's environment says
    monkeypatch.setenv("FOT_EDU_FAST", "1")
    assert "FOT_EDU_FAST" not in build.kernel_env(fast=False)
    assert build.kernel_env(fast=True)["FOT_EDU_FAST"] == "1"
    assert build.kernel_env(fast=False)["PLOTLY_RENDERER"] == "plotly_mimetype"


def test_a_progress_bar_is_shown_without_the_note_about_live_widgets():
    widgets = {
        "bar": _model("HBoxModel", children=["IPY_MODEL_label", "IPY_MODEL_progress", "IPY_MODEL_count"]),
        "label": _model("HTMLModel", value="passkey 4x: 100%"),
        "progress": _model("FloatProgressModel", value=2.0, max=2.0),
        "count": _model("HTMLModel", value=" 2/2 [00:03&lt;00:00]"),
    }
    nb = {"metadata": {"widgets": {outputs.WIDGET_STATE_MIME: {"state": widgets}}},
          "cells": [{"cell_type": "code", "outputs": [
              {"output_type": "display_data", "metadata": {},
               "data": {outputs.WIDGET_VIEW_MIME: {"model_id": "bar"}}}]}]}
    outputs.convert_notebook(nb, "06")
    shown = nb["cells"][0]["outputs"][0]["data"]["text/html"]
    assert shown.startswith('<div class="fot-passive-widget">') and "make lab" not in shown
    assert '<progress value="2.0" max="2.0"></progress>' in shown and "passkey 4x: 100%" in shown
    assert outputs.is_passive("bar", widgets)
    widgets["count"] = _model("ButtonModel", description="Stop")  # something to press: not passive
    assert not outputs.is_passive("bar", widgets)
