"""JupyterLab in headless Chromium: a real server, a real browser, the notebooks a student opens.

Fixtures: ``chromium`` (path of the system Chromium, or a skip/fail with the reason), ``lab`` (a
JupyterLab server on a free loopback port with a random token, serving *copies* of the notebooks so
that nothing the browser runs or autosaves touches ``notebooks/``), ``page`` (a fresh Playwright page)
and ``shots`` (a temporary folder for screenshots: when a test fails, the page as it is at that
moment is saved there too, and the report names the folder and its files).

No tool downloads a browser: Playwright drives Debian's ``chromium`` through ``executable_path``.
Without it the tests skip, except under ``CI`` (set), where a missing browser is a failure.
Environment: ``FOT_EDU_CHROMIUM`` (another Chromium binary), ``FOT_EDU_LAB_PIDFILE`` (the server's
PID is written there, so ``.ci/run`` can stop it even if pytest dies), ``FOT_EDU_SCREENSHOT_DIR``
(copy the classroom dashboard's screenshot there, e.g. ``docs/``).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from pages import open_page

REPO = Path(__file__).resolve().parents[2]
# flags that work on the project's machines (no sandbox as root, no GPU, nothing fetched)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic"]
# JupyterLab settings for the run: no autosave, no news or update check (nothing leaves loopback)
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False},
}


def _missing(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so the browser test must run: .ci/run installs it)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> str:
    path = os.environ.get("FOT_EDU_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        _missing("no Chromium found (Debian: `apt-get install chromium`; or set FOT_EDU_CHROMIUM)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("the Python package playwright is missing (pip install -e '.[test]')")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group (it shuts its kernels down), SIGKILL if it lingers."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


@pytest.fixture(scope="session")
def lab(chromium, tmp_path_factory):
    """``{"url", "token", "root", "log"}`` of a JupyterLab server started from this venv."""
    base = tmp_path_factory.mktemp("lab")
    root = base / "root"
    (root / "notebooks").mkdir(parents=True)
    for book in (REPO / "notebooks").glob("*.ipynb"):
        shutil.copy(book, root / "notebooks" / book.name)
    for rel, value in LAB_SETTINGS.items():
        target = base / "settings" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(value))
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, FOT_EDU_FAST="1", JUPYTER_CONFIG_DIR=str(base / "config"),
               JUPYTER_DATA_DIR=str(base / "data"), JUPYTER_RUNTIME_DIR=str(base / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(base / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"), IPYTHONDIR=str(base / "ipython"))
    log_path = base / "jupyterlab.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--ServerApp.port={port}",
             "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
             f"--ServerApp.root_dir={root}", "--ServerApp.terminals_enabled=False", "--LabApp.news_url=",
             *(["--allow-root"] if os.geteuid() == 0 else [])],
            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    pidfile = os.environ.get("FOT_EDU_LAB_PIDFILE")
    if pidfile:
        Path(pidfile).write_text(f"{proc.pid}\n")
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer in 90 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield {"url": url, "token": token, "root": root, "log": log_path}
    finally:
        _stop(proc)
        if pidfile:
            Path(pidfile).write_text("")


@pytest.fixture(scope="session")
def browser(chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # launch() gives every run a fresh temporary --user-data-dir of its own
        b = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def shots(request, tmp_path_factory) -> Path:
    """A temporary folder for this test's screenshots (its path and files are printed if the test
    fails); pytest keeps the last three sessions' folders and removes older ones."""
    path = tmp_path_factory.mktemp(f"screenshots_{request.node.name}")
    request.node.shots_dir = path
    return path


@pytest.fixture
def page(browser, lab, shots, request):
    """A fresh page; if the test fails, ``pytest_runtest_makereport`` saves a screenshot of it in
    ``shots`` before this fixture closes it."""
    context, pg = open_page(browser, request, (1500, 2200))
    request.node.lab_log = lab["log"]
    yield pg
    context.close()
    _shut_down_kernels(lab)


def _shut_down_kernels(lab) -> None:
    """Free the CPU for the next notebook (the server would keep its kernel running)."""
    headers = {"Authorization": f"token {lab['token']}"}
    with urllib.request.urlopen(urllib.request.Request(f"{lab['url']}/api/sessions", headers=headers),
                                timeout=10) as r:
        sessions = json.load(r)
    for session in sessions:
        urllib.request.urlopen(urllib.request.Request(f"{lab['url']}/api/sessions/{session['id']}",
                                                      headers=headers, method="DELETE"), timeout=30)


def _screenshot_at_failure(page, path: Path) -> str | None:
    """Save the whole page at ``path`` (the visible part if that fails); the error, if neither works."""
    if page is None:
        return "no page"
    problem = None
    for full_page in (True, False):
        try:
            page.screenshot(path=path, full_page=full_page, timeout=20_000)
            return None
        except Exception as err:  # a closed or crashed page, a timeout: report it, keep the failure
            problem = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    return problem


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        shots_dir = getattr(item, "shots_dir", None)
        if shots_dir:
            # the tests take screenshots only where they expect trouble; a plain assert (or a
            # Playwright timeout) fails without one: save the page as it is now, still open
            problem = _screenshot_at_failure(getattr(item, "browser_page", None),
                                             Path(shots_dir) / f"{item.name}_at_failure.png")
            files = sorted(p.name for p in Path(shots_dir).glob("*.png"))
            text = (f"screenshots are in {shots_dir}: {', '.join(files)}" if files
                    else f"no screenshot in {shots_dir}")
            if problem:
                text += f"\n(the screenshot at failure could not be taken: {problem})"
            rep.sections.append(("browser screenshots", text))
            print(f"\nbrowser {text}", file=sys.stderr)
        logs = getattr(item, "browser_logs", None)
        if logs:
            rep.sections.append(("browser console (last 40)", "\n".join(logs[-40:])))
        lab_log = getattr(item, "lab_log", None)
        if lab_log and Path(lab_log).exists():
            rep.sections.append(("JupyterLab log (tail)", Path(lab_log).read_text()[-3000:]))
