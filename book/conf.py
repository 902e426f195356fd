"""Sphinx configuration of the course book (``make book``; sources staged by ``book/build.py``).

Sphinx with myst-nb renders the README, the guides and the executed notebooks; furo is the theme.
Nothing is fetched when the book is built or read: MathJax 3 comes from the ``sphinx-mathjax-offline``
package (copied into ``_static/mathjax``), plotly.js from the plotly package (copied into
``_static``, loaded only by pages that draw a figure), and myst-nb's widget loaders, which come from
a CDN, are switched off (``book/outputs.py`` draws widgets as static HTML instead).
"""
import shutil
from pathlib import Path

import plotly

project = "fot_edu"
html_title = "fot_edu: the Focused Transformer, step by step"
author = "the fot_edu authors"
copyright = "the fot_edu authors (MIT licence)"

extensions = ["myst_nb", "sphinx-mathjax-offline"]
root_doc = "index"
exclude_patterns = ["**.ipynb_checkpoints"]

myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3  # the README's links to its own sections (#quick-start)
# links to files that are not pages of the book (sources, CHANGELOG.md) stay plain text
suppress_warnings = ["myst.xref_missing"]

nb_execution_mode = "off"  # book/build.py has run the notebooks
nb_ipywidgets_js = {}  # its default loads require.js and the widget manager from a CDN
nb_merge_streams = True

html_theme = "furo"
html_static_path = ["_static"]
html_css_files = ["book.css"]
html_copy_source = False  # the executed notebooks are large; the repository has the sources
html_show_sourcelink = False
# SVG output: no web fonts, which a browser may refuse to load from file://
mathjax_path = "mathjax/tex-svg.js"

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def _plotly_on_figure_pages(app, pagename, templatename, context, doctree):
    if "Plotly.newPlot" in context.get("body", ""):
        app.add_js_file("plotly.min.js", priority=100)  # before the page's own scripts run


def _copy_plotly(app, exc):
    if exc is None:
        shutil.copy(PLOTLY_JS, Path(app.outdir) / "_static" / "plotly.min.js")


def _local_mathjax(app, config):
    config.mathjax_path = mathjax_path  # sphinx-mathjax-offline sets its CHTML bundle


def setup(app):
    app.connect("config-inited", _local_mathjax, priority=900)
    app.connect("html-page-context", _plotly_on_figure_pages)
    app.connect("build-finished", _copy_plotly)
