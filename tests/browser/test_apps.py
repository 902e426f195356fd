"""The classroom apps work for a person: ``python -m fot_edu present APP`` (Voilà) in headless Chromium.

Each app is started the way the README says, as a subprocess on a free loopback port with
``--no-browser``, in fast mode; the test then opens the printed URL and checks, in the page, what
a class sees: no code and no error, figures drawn (their titles, bars and points rendered, not
merely present), nothing fetched from outside the machine, and a control that works:

* ``dashboard``: → on "distractors N" adds a bar to the attention-mass chart; the r_d axis
  shows only its d values, the bars are blue (own document) and orange (distractors) as the
  axis title says, and the top-8 table shows all its rows, text columns included;
* ``race``: "Start the race" draws the live curves and then the final accuracy figure.

Every wait waits on what a student waits on (a title's text, a drawn bar or point), with
timeouts for a busy 2-core machine. ``FOT_EDU_SCREENSHOT_DIR=results/figures`` copies the screenshots to
``results/figures/app_dashboard.png`` and ``results/figures/app_race.png``.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pages import open_page
from servers import free_port, stop, terminal_signals

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
PAGE_TIMEOUT_MS = 300_000  # Voilà runs the whole notebook before the page is complete
DRAW_TIMEOUT_MS = 120_000
RACE_TIMEOUT_MS = 300_000  # fast mode: 6 steps a run and a small evaluation, on a busy CPU

# one record per plotly figure: title text, drawn bars (with their fill), scatter points,
# x tick labels, table cells per column
FIGURES_JS = """() => [...document.querySelectorAll('.js-plotly-plot')].map(p => ({
    title: (p.querySelector('.gtitle') || {}).textContent || '',
    bars: [...p.querySelectorAll('.bars .point path')].map(b => getComputedStyle(b).fill),
    points: p.querySelectorAll('.scatterlayer .point').length,
    lines: [...p.querySelectorAll('.scatterlayer .js-line')].filter(l => (l.getAttribute('d') || '').length > 2).length,
    xticks: [...p.querySelectorAll('.xtick text')].map(t => t.textContent),
    table: [...p.querySelectorAll('.table .y-column')].map(c =>
        [...c.querySelectorAll('.column-block:not(#header) .cell-text')].map(t => t.textContent)),
    // rows of a table drawn inside the figure, one below the other (plotly lays them out in frames)
    rowsInFrame: [...p.querySelectorAll('.table .y-column')].slice(0, 1).map(c => {
        const box = p.getBoundingClientRect();
        const rows = [...c.querySelectorAll('.column-block:not(#header) .column-cell')]
            .map(r => r.getBoundingClientRect());
        return rows.filter((r, i) => r.height > 0 && r.bottom <= box.bottom + 0.5
            && (i === 0 || r.top >= rows[i - 1].bottom - 1)).length; })[0] || 0,
}))"""
ERROR_MARKS = re.compile(r"Traceback|There was an error when executing cell|Error displaying widget"
                         r"|Failed to (load|create) (model|view)|Error rendering|^\w*(Error|Exception)\b",
                         re.M)
OWN_FILL, DISTRACTOR_FILL = "rgb(0, 114, 178)", "rgb(230, 159, 0)"  # figures.OWN_COLOR, DISTRACTOR_COLOR


def present_command(app: str, port: int) -> list[str]:
    """The README's ``python -m fot_edu present APP --no-browser --port P``."""
    return [sys.executable, "-m", "fot_edu", "present", app, "--no-browser", "--port", str(port)]


@pytest.fixture
def present(chromium, tmp_path, request):
    """``start(app) -> url``: the app served by the README's command; stopped at the end."""
    procs = []

    def start(app: str) -> str:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
        env.update({f"JUPYTER_{d.upper()}_DIR": str(tmp_path / d) for d in ("config", "data", "runtime")},
                   IPYTHONDIR=str(tmp_path / "ipython"), PYTHONUNBUFFERED="1",
                   # FOT_EDU_APPS_NORMAL=1: the full race (the README's screenshot), minutes
                   FOT_EDU_FAST="0" if os.environ.get("FOT_EDU_APPS_NORMAL") else "1")
        log_path = tmp_path / f"present_{app}.log"
        request.node.lab_log = log_path  # its tail goes into the report if the test fails
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(present_command(app, port), cwd=REPO, env=env,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, preexec_fn=terminal_signals)
        procs.append((proc, log_path))
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 120
        while url not in log_path.read_text(errors="replace"):  # Voilà prints it once it listens
            if proc.poll() is not None:
                pytest.fail(f"present {app} exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"present {app} printed no {url} in 120 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        return url

    yield start
    for proc, log_path in procs:
        returncode = stop(proc)
        out = log_path.read_text(errors="replace")
        assert returncode in (0, 130), (returncode, out[-3000:])
        # the page closes before the server stops; Voilà (tornado) may then log that it wrote to
        # the closed websocket: harmless, and not ours. Any other traceback fails the test.
        errors = [part for part in out.split("Traceback")[1:]
                  if "WebSocketClosedError" not in part and "StreamClosedError" not in part]
        assert not errors, out[-3000:]


@pytest.fixture
def app_page(browser, shots, request):
    """A page that may reach loopback only; ``page.outside`` lists what it tried to fetch elsewhere."""
    # tall enough for the whole app: a screenshot of an element taller than the window resizes the
    # window, and plotly redraws its figures (the table over several frames) while it is taken
    context, pg = open_page(browser, request, (1600, 2400))
    yield pg
    context.close()


def _open(page, url: str, shots: Path, name: str) -> None:
    page.goto(url, timeout=PAGE_TIMEOUT_MS, wait_until="load")
    page.locator("#rendered_cells").wait_for(state="visible", timeout=PAGE_TIMEOUT_MS)
    text = page.locator("body").inner_text()
    errors = ERROR_MARKS.findall(text)
    if errors:
        page.screenshot(path=shots / f"{name}_error.png")
    assert not errors, f"{name}: the page shows an error:\n{text[-2000:]}"
    # code cells' inputs (markdown cells keep an input area: their rendered text)
    code = page.evaluate("() => [...document.querySelectorAll('.jp-CodeCell .jp-InputArea, .jp-CodeMirrorEditor,"
                         " .cm-editor, .jp-InputPrompt')].filter(e => e.offsetParent !== null).length")
    assert code == 0 and "from fot_edu" not in text, f"{name}: code is visible ({code} code inputs)"


def _wait_drawn(page, shots: Path, name: str, condition: str, what: str,
                timeout: int = DRAW_TIMEOUT_MS) -> list:
    """Wait until ``condition`` (JS over ``figs``, the FIGURES_JS records) holds in the page."""
    try:
        page.wait_for_function(f"() => {{ const figs = ({FIGURES_JS})(); return {condition}; }}",
                               timeout=timeout, polling=500)
    except Exception:
        page.screenshot(path=shots / f"{name}_not_drawn.png")
        raise AssertionError(f"{name}: {what} not drawn: {page.evaluate(FIGURES_JS)}; screenshots in {shots}")
    return page.evaluate(FIGURES_JS)


def _wait_still(element, seconds: float = 1.5, timeout: float = 30.0) -> None:
    """Wait until the element's drawing stops changing (plotly draws a table over several frames)."""
    last, still_since, start = None, time.monotonic(), time.monotonic()
    while time.monotonic() - start < timeout:
        now = element.evaluate("e => e.innerHTML")
        if now != last:
            last, still_since = now, time.monotonic()
        elif time.monotonic() - still_since >= seconds:
            return
        element.page.wait_for_timeout(250)


def _save(element, shots: Path, name: str) -> None:
    _wait_still(element)
    shot = shots / name
    element.screenshot(path=shot, timeout=60_000)
    if os.environ.get("FOT_EDU_SCREENSHOT_DIR"):
        target = Path(os.environ["FOT_EDU_SCREENSHOT_DIR"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, target / name)


def _mass(figures: list) -> dict:
    found = [f for f in figures if "Where memory attention goes" in f["title"]]
    assert len(found) == 1, figures
    return found[0]


def _figure(figures: list, title_part: str) -> dict:
    found = [f for f in figures if title_part in f["title"]]
    assert len(found) == 1, (title_part, figures)
    return found[0]


def test_present_dashboard(present, app_page, shots):
    page = app_page
    _open(page, present("dashboard"), shots, "dashboard")
    # keys, cosines, attention mass, r_d, table: each titled, each with its marks drawn
    mass_drawn = "figs.some(f => f.title.includes('with 7 distractor documents') && f.bars.length === 8)"
    figures = _wait_drawn(page, shots, "dashboard",
                          f"figs.length === 5 && figs.every(f => f.title.length > 0) && {mass_drawn}"
                          " && figs.some(f => f.title.startsWith('r_d') && f.points >= 4)"
                          " && figs.some(f => f.table.length === 6 && f.rowsInFrame === 8"
                          "              && f.table[1].every(t => t.trim().length > 0))",  # snippets
                          "the five figures")
    mass = _mass(figures)
    assert mass["bars"] == [OWN_FILL] + [DISTRACTOR_FILL] * 7, mass  # blue own, orange distractors
    r_d = _figure(figures, "r_d")
    assert r_d["xticks"] == ["1", "2", "4", "8"], r_d  # fast mode's d values, no stray log ticks
    table = _figure(figures, "Top-8 retrieved")["table"]
    rank, snippet, document, _, _, asked = table
    assert rank == [str(i) for i in range(1, 9)], table
    assert all(s.strip() for s in snippet) and any("\u2039" in s for s in snippet), snippet  # "‹k›" shown
    assert all(d.strip() for d in document) and set(asked) <= {"yes", ""}, table
    dashboard = page.locator("#rendered_cells .widget-vbox").first
    _save(dashboard, shots, "app_dashboard.png")

    # a student presses → on "distractors N": one more orange bar, a new title
    slider = page.locator(".widget-slider", has_text="distractors N").first
    slider.locator(".noUi-handle").first.focus()
    page.keyboard.press("ArrowRight")
    after = _wait_drawn(page, shots, "dashboard",
                        "figs.some(f => f.title.includes('with 8 distractor documents') && f.bars.length === 9)"
                        " && figs.some(f => f.title.includes('N=8'))", "the N = 8 bars")
    assert _mass(after)["bars"] == [OWN_FILL] + [DISTRACTOR_FILL] * 8
    assert slider.locator(".widget-readout").inner_text().strip() == "8"
    assert not ERROR_MARKS.search(page.locator("body").inner_text())
    assert not page.outside, f"the page fetched from outside the machine: {page.outside}"


def test_present_race(present, app_page, shots):
    page = app_page
    _open(page, present("race"), shots, "race")
    _wait_drawn(page, shots, "race", "figs.length === 3 && figs.every(f => f.title.length > 0)"
                " && figs.some(f => f.title.includes('press start'))", "the empty race figures")
    start = page.get_by_role("button", name=re.compile("Start the race"))
    start.click()
    # the first live reading: a point on the accuracy-with-distractors figure, and a loss line
    _wait_drawn(page, shots, "race", "figs.some(f => f.title.startsWith('Accuracy with') && f.points > 0)"
                " && figs.some(f => f.title.startsWith('Training loss') && f.lines > 0)",
                "the first live point", timeout=RACE_TIMEOUT_MS)
    figures = _wait_drawn(page, shots, "race", "figs.some(f => f.title.startsWith('After the race: accuracy as')"
                          " && f.points >= 4)", "the final figure", timeout=RACE_TIMEOUT_MS)
    final = _figure(figures, "After the race")
    assert final["points"] >= 2 * 2, final  # d=1 and FoT at two N or more (fast mode: 0 and 7)
    page.locator(".widget-html", has_text="done in").first.wait_for(timeout=DRAW_TIMEOUT_MS)
    assert not ERROR_MARKS.search(page.locator("body").inner_text())
    assert not page.outside, f"the page fetched from outside the machine: {page.outside}"
    _save(page.locator("#rendered_cells .widget-vbox").first, shots, "app_race.png")
