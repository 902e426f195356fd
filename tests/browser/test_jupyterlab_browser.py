"""The widgets work for a person: JupyterLab in headless Chromium runs the notebooks a student opens.

For ``00_start_here`` (distraction dial) and ``07_classroom_demo`` (dashboard): open the notebook,
*Run > Run All Cells* from the menu bar, wait until every code cell has an execution count, check
that no output is an error and that the plotly figures are drawn, press ArrowRight on the
"distractors N" slider, and check in the page's DOM that the bar chart got one more document and
its title moved from N to N + 1. Headless kernels (nbmake, ``tests/test_viz.py``) prove the Python
side; this proves the JavaScript side (ipywidgets, anywidget, plotly's FigureWidget) as well.
"""
from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

RUN_TIMEOUT_MS = 240_000  # all cells of one notebook, fast mode, a busy 2-core machine

# one record per plotly figure on the page: title, bars drawn, scatter points, legend entries
FIGURES_JS = """() => [...document.querySelectorAll('.jp-NotebookPanel .js-plotly-plot')].map(p => ({
    title: (p.querySelector('.gtitle') || {}).textContent || '',
    bars: p.querySelectorAll('.bars .point').length,
    points: p.querySelectorAll('.scatterlayer .point').length,
    legend: [...p.querySelectorAll('.legend .legendtext')].map(t => t.textContent),
}))"""

PROMPTS_JS = """() => [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputArea-prompt')]
    .map(e => e.textContent.trim())"""

# the status bar says "Python 3 (ipykernel) | Idle" once the kernel is connected ("No Kernel" before)
KERNEL_IDLE_JS = """() => {
    const bar = document.querySelector('#jp-main-statusbar');
    return !!bar && /\\|\\s*Idle/.test(bar.textContent) && !bar.textContent.includes('No Kernel');
}"""

# error outputs render with the stderr mime type, like stream output: tell them apart by content
OUTPUTS_JS = """() => [...document.querySelectorAll('.jp-NotebookPanel .jp-OutputArea-output')].map(o => ({
    mime: o.getAttribute('data-mime-type') || '', text: o.innerText.slice(0, 2000)}))"""
ERROR_MARKS = re.compile(r"Traceback \(most recent call last\)|^\w*(Error|Exception)\b|Error displaying widget"
                         r"|Failed to (load|create) (model|view)|Error rendering", re.M)


def _open_and_run_all(page, lab, name: str, shots: Path, hide_sidebar: bool = False) -> None:
    # a workspace of its own: JupyterLab would otherwise reopen the previous test's notebook
    page.goto(f"{lab['url']}/lab/workspaces/{name}/tree/notebooks/{name}.ipynb?reset&token={lab['token']}")
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(timeout=120_000)
    # Run All before the kernel is connected runs nothing: wait, as a student waits, for "Idle"
    page.wait_for_function(KERNEL_IDLE_JS, timeout=120_000, polling=250)
    if hide_sidebar:
        page.keyboard.press("Control+b")  # View > Show Left Sidebar, off
        page.locator("#jp-left-stack").wait_for(state="hidden", timeout=10_000)
    page.locator(".jp-NotebookPanel .jp-Notebook").click(position={"x": 5, "y": 5})
    page.locator("#jp-MainMenu .lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator("#jp-mainmenu-run .lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    try:
        page.wait_for_function(
            f"() => {{ const p = ({PROMPTS_JS})(); "
            r"return p.length > 0 && p.every(t => /^\[\d+\]:$/.test(t)); }",
            timeout=RUN_TIMEOUT_MS, polling=500)
    except Exception:
        page.screenshot(path=shots / f"{name}_not_finished.png", full_page=True)
        raise AssertionError(f"{name}: cells did not all finish, prompts {page.evaluate(PROMPTS_JS)}; "
                             f"screenshots in {shots}")
    _assert_no_errors(page, name, shots)


def _assert_no_errors(page, name: str, shots: Path) -> None:
    errors = [o["text"] for o in page.evaluate(OUTPUTS_JS) if ERROR_MARKS.search(o["text"])]
    if errors:
        page.screenshot(path=shots / f"{name}_error.png", full_page=True)
    assert not errors, f"{name}: a cell shows an error (screenshots in {shots}):\n" + errors[0][:1500]


def _wait_figures(page, shots: Path, name: str, count: int) -> list:
    try:
        # what a student waits for: every figure titled and the bars drawn, not just their count
        # (under load plotly adds a figure's element before it draws its title)
        page.wait_for_function(f"() => {{ const figs = ({FIGURES_JS})(); return figs.length >= {count}"
                               " && figs.every(f => f.title.trim().length > 0)"
                               " && figs.some(f => f.bars > 0); }", timeout=120_000, polling=500)
    except Exception:
        page.screenshot(path=shots / f"{name}_no_plot.png", full_page=True)
        raise AssertionError(f"{name}: plotly figures did not render: {page.evaluate(FIGURES_JS)}; "
                             f"screenshots in {shots}")
    return page.evaluate(FIGURES_JS)


def _wait_still(element, seconds: float = 1.0, timeout: float = 15.0) -> None:
    """Wait until the element's text stops changing (plotly's table wraps its cells in later frames)."""
    last, still_since, start = None, time.monotonic(), time.monotonic()
    while time.monotonic() - start < timeout:
        now = element.evaluate("e => e.innerHTML.length + ':' + e.textContent")
        if now != last:
            last, still_since = now, time.monotonic()
        elif time.monotonic() - still_since >= seconds:
            return
        element.page.wait_for_timeout(200)


def _mass_figure(figures: list) -> dict:
    found = [f for f in figures if "Where memory attention goes" in f["title"]]
    assert len(found) == 1, f"one attention-mass bar chart expected, found {figures}"
    return found[0]


def _move_slider(page, label: str, shots: Path, name: str, before: dict, expect_title: str,
                 expect_bars: int, key: str = "ArrowRight") -> dict:
    """Focus the slider's handle and press an arrow key, as a keyboard user would; the readout and
    the figures must follow (the slider sends its value on release: continuous_update=False)."""
    slider = page.locator(".jp-NotebookPanel .widget-slider", has_text=label).first
    readout = slider.locator(".widget-readout")
    start = int(readout.inner_text())
    slider.locator(".noUi-handle").first.focus()
    page.keyboard.press(key)
    try:
        page.wait_for_function(
            f"() => {{ const figs = ({FIGURES_JS})(); return figs.some(f => f.title.includes({expect_title!r}))"
            " && figs.some(f => f.title.includes('Where memory attention goes')"
            f" && f.bars === {expect_bars}); }}", timeout=120_000, polling=250)
    except Exception:
        page.screenshot(path=shots / f"{name}_slider_stuck.png", full_page=True)
        raise AssertionError(f"{name}: after {key} on {label!r} (readout {readout.inner_text()!r}, "
                             f"was {start}) no figure title says {expect_title!r}: "
                             f"{page.evaluate(FIGURES_JS)}; screenshots in {shots}")
    assert int(readout.inner_text()) == start + (1 if key == "ArrowRight" else -1)
    after = _mass_figure(page.evaluate(FIGURES_JS))
    assert after != before, f"{name}: the bar chart did not change: {before}"
    return after


def test_start_here_distraction_dial(page, lab, shots):
    _open_and_run_all(page, lab, "00_start_here", shots)
    before = _mass_figure(_wait_figures(page, shots, "00_start_here", 1))
    page.screenshot(path=shots / "00_start_here_ran.png", full_page=True)
    # two models (d=1, FoT), each with a bar for the own document and one per distractor
    assert "7 distractor documents" in before["title"] and before["bars"] == 2 * (7 + 1), before
    # legend entries "MODEL: own document" / "MODEL: distractors" (figures.attention_mass_traces)
    assert {entry.split(":")[0] for entry in before["legend"]} == {"d=1", "FoT"}, before
    after = _move_slider(page, "distractors N", shots, "00_start_here", before, "8 distractor documents",
                         expect_bars=2 * (8 + 1))
    assert after["bars"] == 2 * (8 + 1), after
    _assert_no_errors(page, "00_start_here", shots)
    page.screenshot(path=shots / "00_start_here_slider_moved.png", full_page=True)


def test_classroom_dashboard(page, lab, shots):
    # the dashboard's rows hold two 700-px figures: a wide window without the file browser shows all
    page.set_viewport_size({"width": 1680, "height": 2200})
    _open_and_run_all(page, lab, "07_classroom_demo", shots, hide_sidebar=True)
    figures = _wait_figures(page, shots, "07_classroom_demo", 5)
    assert len(figures) == 5, figures  # keys, similarity, attention mass, r_d, retrieval table
    before = _mass_figure(figures)
    assert before["bars"] == 7 + 1, before  # one model at a time: own document + 7 distractors
    assert any("N=7" in f["title"] for f in figures), figures
    after = _move_slider(page, "distractors N", shots, "07_classroom_demo", before, "N=8",
                         expect_bars=8 + 1)
    assert after["bars"] == 8 + 1 and "8 distractor documents" in after["title"], after
    page.screenshot(path=shots / "07_classroom_demo_slider_moved.png", full_page=True)
    # and back: the cached N=7 view returns (the README's picture is taken here, see below)
    back = _move_slider(page, "distractors N", shots, "07_classroom_demo", after, "N=7",
                        expect_bars=7 + 1, key="ArrowLeft")
    assert back == before, (back, before)
    _assert_no_errors(page, "07_classroom_demo", shots)
    dashboard = page.locator(".jp-NotebookPanel .jp-OutputArea-output").filter(
        has=page.locator(".js-plotly-plot")).last
    clipped = dashboard.evaluate("""o => { const r = o.getBoundingClientRect();
        return [...o.querySelectorAll('.js-plotly-plot')].map(p => p.getBoundingClientRect())
            .filter(b => b.right > r.right + 1).map(b => Math.round(b.right - r.right)); }""")
    assert not clipped, f"figures cut off by {clipped} px at the right of the output area"
    # after a redraw, not the first render: plotly's table leaves its wrapped cells (snippet,
    # document) blank when first drawn by the FigureWidget and fills them on any later update
    _wait_still(dashboard)
    shot = shots / "classroom_dashboard.png"  # FOT_EDU_SCREENSHOT_DIR=results/figures refreshes the README's
    dashboard.screenshot(path=shot)
    if os.environ.get("FOT_EDU_SCREENSHOT_DIR"):
        target = Path(os.environ["FOT_EDU_SCREENSHOT_DIR"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, target / shot.name)
