"""The course book (``make book``) works offline for a reader: built, scanned, opened in Chromium.

The fixture builds the book in fast mode into a temporary folder, running only the two lessons
the browser opens (``python book/build.py --fast --execute 01_memory_attention,07_classroom_demo``;
the other seven become pages without outputs, and nbmake runs all nine in the same suite: this
keeps CI's build near a minute), or takes a book already built when ``FOT_EDU_BOOK_HTML`` names
its ``html`` folder (``make book`` writes ``book/_build/html``; every lesson executed). Then:

* the scan of ``book/offline.py``: no page or stylesheet loads a script, stylesheet, font or image
  from outside the machine, every lesson has its page, and so do the README and the guides;
* in headless Chromium, from ``file://``, with every request that is not ``file:``/``data:``/``blob:``
  recorded and refused: the landing page shows its equation typeset by MathJax (an
  ``mjx-container`` with an SVG); lesson 01 draws its plotly figures (an SVG with marks in each
  ``.js-plotly-plot``) and shows what its cells printed; lesson 07's dashboard widget is drawn
  from its saved state (its figures and its controls as labels); no page tried to reach outside.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pages import open_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "book"))
import offline  # noqa: E402

EXECUTED_IN_CI = ("01_memory_attention", "07_classroom_demo")
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")
DRAW_TIMEOUT_MS = 60_000
# per plotly figure: drawn marks (bars, points, lines, heatmap images, table cells)
FIGURES_JS = """() => [...document.querySelectorAll('.js-plotly-plot')].map(p => ({
    svg: p.querySelectorAll('svg.main-svg').length,
    marks: p.querySelectorAll('.point, .js-line, .hm, image, .cell-text, .bars path').length,
}))"""


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> Path:
    """The ``html`` folder of a built book (built here in fast mode unless FOT_EDU_BOOK_HTML is set)."""
    given = os.environ.get("FOT_EDU_BOOK_HTML")
    if given:
        return Path(given).resolve()
    out = tmp_path_factory.mktemp("book")
    proc = subprocess.run([sys.executable, str(REPO / "book" / "build.py"), "--fast", "--out", str(out),
                           "--execute", ",".join(EXECUTED_IN_CI)],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"book build failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    times = json.loads((out / "build-times.json").read_text())
    print(f"fast book build: {times['seconds']} s, load average {times['load']}")
    return out / "html"


def test_book_has_every_page_and_loads_nothing_from_outside(book):
    assert offline.scan(book) == {}
    lessons = sorted(p.stem for p in (REPO / "notebooks").glob("*.ipynb"))
    assert len(lessons) == 9
    for lesson in lessons:
        page = (book / "notebooks" / f"{lesson}.html").read_text()
        executed = "built without running the notebook" not in page
        assert executed or lesson not in EXECUTED_IN_CI, lesson
        # an executed lesson shows outputs (myst-nb's output blocks), one not run shows none
        assert ('class="output ' in page) == executed, lesson
    for page in ("index", "README", "docs/teaching"):
        assert (book / f"{page}.html").is_file(), page
    assert (book / "docs" / "glossary.html").is_file() == (REPO / "docs" / "glossary.md").is_file()
    # served from _static, not from a CDN
    assert (book / "_static" / "plotly.min.js").stat().st_size > 1_000_000
    assert (book / "_static" / "mathjax" / "tex-svg.js").is_file()
    index = (book / "index.html").read_text()
    assert "_static/mathjax/tex-svg.js" in index and "cdn" not in index.lower()
    # a link in prose may leave the machine (the paper), the page still loads nothing from there
    assert 'href="https://arxiv.org/abs/2307.03170"' in (book / "docs" / "teaching.html").read_text()


@pytest.fixture
def reader(browser, shots, request):
    """A page that may load ``file:``/``data:``/``blob:`` only; ``reader.outside`` lists the rest."""
    context, pg = open_page(browser, request, (1400, 1600), LOCAL_SCHEMES)
    pg.requests = []
    pg.on("request", lambda r: pg.requests.append(r.url))
    yield pg
    context.close()


def _open(page, path: Path) -> None:
    assert path.is_file(), path
    page.goto(path.as_uri(), wait_until="load")


def _no_outside(page) -> None:
    assert not page.outside, f"the page tried to load from outside the machine: {page.outside}"
    assert page.requests and all(u.startswith(LOCAL_SCHEMES) for u in page.requests), page.requests
    assert not [e for e in page.errors if e.startswith("pageerror")], page.errors


def test_landing_page_typesets_its_equation(book, reader, shots):
    _open(reader, book / "index.html")
    display = reader.locator("mjx-container[display='true'] svg").first
    display.wait_for(state="visible", timeout=DRAW_TIMEOUT_MS)
    # the softmax of eq. 1 typeset as glyphs, not left as TeX source
    assert "\\operatorname" not in reader.locator("article").inner_text()
    assert display.locator("use, path").count() > 10
    assert reader.locator("mjx-container:not([display='true'])").count() >= 4  # inline $q$, $k_0$, ...
    assert any("_static/mathjax/" in u for u in reader.requests), reader.requests
    reader.screenshot(path=shots / "book_index.png", full_page=True)
    _no_outside(reader)


def test_lesson_page_draws_figures_and_printed_results(book, reader, shots):
    page_path = book / "notebooks" / "01_memory_attention.html"
    expected = page_path.read_text().count("Plotly.newPlot(")
    assert expected >= 1, "lesson 01 has no plotly figure in its HTML"
    _open(reader, page_path)
    reader.wait_for_function(f"() => {{ const f = ({FIGURES_JS})(); return f.length === {expected}"
                             " && f.every(x => x.svg > 0 && x.marks > 0); }",
                             timeout=DRAW_TIMEOUT_MS, polling=500)
    assert reader.evaluate(FIGURES_JS)
    # what the cells printed: myst-nb's stream outputs, shown and not empty
    printed = reader.locator(".cell_output .output.stream")
    assert printed.count() >= 1
    assert all(text.strip() for text in printed.all_inner_texts())
    assert printed.first.is_visible()
    assert any(u.endswith("_static/plotly.min.js") for u in reader.requests), reader.requests
    reader.screenshot(path=shots / "book_lesson_01.png", full_page=True)
    _no_outside(reader)


def test_classroom_widget_is_drawn_from_its_saved_state(book, reader, shots):
    _open(reader, book / "notebooks" / "07_classroom_demo.html")
    widget = reader.locator(".fot-static-widget").first
    widget.wait_for(state="visible", timeout=DRAW_TIMEOUT_MS)
    assert "make lab" in widget.locator(".fot-widget-note").inner_text()
    reader.wait_for_function(f"() => {{ const f = ({FIGURES_JS})(); return f.length >= 4"
                             " && f.every(x => x.svg > 0 && x.marks > 0); }",
                             timeout=DRAW_TIMEOUT_MS, polling=500)
    controls = widget.locator(".fot-control").all_inner_texts()
    assert any(c.startswith("distractors N") for c in controls), controls
    reader.screenshot(path=shots / "book_lesson_07.png", full_page=True)
    _no_outside(reader)
