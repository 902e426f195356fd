"""``python -m fot_edu lab`` (what ``make lab`` runs): the JupyterLab command line for root or
not, with a display or headless, and one real server started the way a user starts it."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from servers import free_port, stop, terminal_signals

from fot_edu.cli import serve

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("is_root", [False, True])
@pytest.mark.parametrize("has_display", [False, True])
def test_lab_command(is_root, has_display):
    cmd = serve.lab_command(is_root=is_root, has_display=has_display)
    assert cmd[:5] == [sys.executable, "-m", "jupyter", "lab", "notebooks"]
    assert "--ServerApp.ip=127.0.0.1" in cmd
    assert ("--allow-root" in cmd) == is_root
    assert ("--no-browser" in cmd) == (not has_display)


def test_lab_command_extra_args_come_last():
    extra = ["--port", "9999", "--LabApp.news_url="]
    cmd = serve.lab_command(extra, is_root=True, has_display=False, notebook_dir=Path("books"))
    assert cmd[4] == "books"
    assert cmd[-len(extra):] == extra
    assert {"--allow-root", "--no-browser", "--ServerApp.ip=127.0.0.1"} <= set(cmd[:-len(extra)])


# JupyterLab refuses an option given twice ("ip only accepts one value, got 2") and a flag beats
# an option in any order: a default the user sets in any spelling must leave the command line
@pytest.mark.parametrize("extra, gone", [
    (["--ip=0.0.0.0"], "--ServerApp.ip=127.0.0.1"),
    (["--ip", "0.0.0.0"], "--ServerApp.ip=127.0.0.1"),
    (["--ServerApp.ip=::1"], "--ServerApp.ip=127.0.0.1"),
    (["--ServerApp.answer_yes=False"], "--ServerApp.answer_yes=True"),
    (["-y"], "--ServerApp.answer_yes=True"),
    (["--ServerApp.open_browser=True"], "--no-browser"),
    (["--no_browser"], "--no-browser"),
    (["--ServerApp.allow_root=False"], "--allow-root"),
    (["--notebook-dir=elsewhere"], "notebooks"),
    (["--ServerApp.root_dir", "elsewhere"], "notebooks"),
])
def test_lab_command_extra_args_override_defaults(extra, gone):
    cmd = serve.lab_command(extra, is_root=True, has_display=False)
    assert cmd[-len(extra):] == extra and gone not in cmd[4:-len(extra)], cmd
    untouched = serve.lab_command([], is_root=True, has_display=False)
    assert len(cmd) - len(extra) == len(untouched) - 1, (cmd, untouched)  # only that one went


def _lab_config(args: list[str], tmp_path) -> dict:
    """The configuration JupyterLab reads from this command line (``--show-config-json``: it
    parses everything, prints the result and exits without starting a server)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update({f"JUPYTER_{d.upper()}_DIR": str(tmp_path / d) for d in ("config", "data", "runtime")})
    out = subprocess.run(args + ["--show-config-json"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)["ServerApp"]


@pytest.mark.slow
def test_jupyterlab_accepts_the_command_line_and_the_overrides(tmp_path):
    pytest.importorskip("jupyterlab")
    cmd = serve.lab_command(["--ip", "0.0.0.0", "--ServerApp.answer_yes=False", "--port=9999"],
                            is_root=True, has_display=False)
    config = _lab_config(cmd, tmp_path)
    # the defaults that the extra arguments left alone
    assert config["allow_root"] is True and config["open_browser"] is False
    assert config["root_dir"] == str(REPO / "notebooks")
    # and those they overrode
    assert config["ip"] == "0.0.0.0" and config["answer_yes"] is False and config["port"] == 9999


@pytest.mark.parametrize("platform, environ, expected", [
    ("linux", {}, False),
    ("linux", {"DISPLAY": ""}, False),
    ("linux", {"DISPLAY": ":0"}, True),
    ("linux", {"WAYLAND_DISPLAY": "wayland-0"}, True),
    ("freebsd14", {}, False),
    ("darwin", {}, True),
    ("win32", {}, True),
])
def test_detect_display(platform, environ, expected):
    assert serve.detect_display(environ, platform) is expected


def test_detect_root_matches_euid():
    assert serve.detect_root() is (hasattr(os, "geteuid") and os.geteuid() == 0)


def test_run_server_returns_the_exit_status(capsys):
    assert serve.run_server([sys.executable, "-c", "raise SystemExit(3)"], "running a thing") == 3
    assert capsys.readouterr().out == "running a thing\n"


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="process groups and SIGINT are POSIX")
def test_make_lab_headless_prints_a_working_url(tmp_path):
    """What ``make lab`` runs, headless (no DISPLAY), as whoever runs the tests (root included):
    JupyterLab starts, prints a loopback URL with its generated token, that URL answers, and
    Ctrl-C (SIGINT to the process group) stops it without a traceback."""
    pytest.importorskip("jupyterlab")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    # the server's files (cookie secret, server info, config) in tmp_path, not in ~/.jupyter
    env.update({f"JUPYTER_{d.upper()}_DIR": str(tmp_path / d) for d in ("config", "data", "runtime")},
               IPYTHONDIR=str(tmp_path / "ipython"), PYTHONUNBUFFERED="1")
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fot_edu", "lab", "--port", str(port),
             "--ServerApp.port_retries=0", "--LabApp.news_url="],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=terminal_signals)
    # the URL with the token the server generated: what a user copies into a browser
    url_re = re.compile(rf"http://127\.0\.0\.1:{port}/lab\?token=([0-9a-f]{{16,}})")
    try:
        deadline = time.monotonic() + 60  # ~1 s when idle; a loaded 2-core machine takes longer
        token = None
        while True:
            out = log_path.read_text(errors="replace")
            if token is None and (m := url_re.search(out)):
                token = m.group(1)
            if token is not None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}",
                                                timeout=5) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
            if proc.poll() is not None:
                pytest.fail(f"the server exited with {proc.returncode}:\n{out[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no answer from a printed URL within 60 s:\n{out[-3000:]}")
            time.sleep(0.5)
        # the URL needs no guessing: the page itself answers with the printed token
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab?token={token}", timeout=10) as r:
            assert r.status == 200
    finally:
        returncode = stop(proc, first_wait_s=45)
    out = log_path.read_text(errors="replace")
    first = out.splitlines()[0]
    assert first.startswith("fot_edu: starting JupyterLab") and "--no-browser" in first, first
    assert ("--allow-root" in first) == serve.detect_root(), first
    assert "Traceback" not in out, out[-3000:]
    assert returncode in (0, 130), (returncode, out[-3000:])


# --- python -m fot_edu present: the classroom apps under Voilà ---------------------------------

@pytest.mark.parametrize("is_root", [False, True])
@pytest.mark.parametrize("has_display", [False, True])
def test_voila_command(is_root, has_display):
    cmd = serve.voila_command("apps/race.ipynb", is_root=is_root, has_display=has_display, port=9000)
    assert cmd[:4] == [sys.executable, "-m", "voila", "apps/race.ipynb"]
    assert {"--Voila.ip=127.0.0.1", "--strip_sources=True", "--port=9000",
            "--template=classroom", "--theme=light"} <= set(cmd)
    assert ("--no-browser" in cmd) == (is_root or not has_display)
    assert "--allow-root" not in cmd  # Voilà has no such option (and no root check)


@pytest.mark.parametrize("extra, gone", [
    (["--Voila.ip=0.0.0.0"], "--Voila.ip=127.0.0.1"),
    (["--port", "7777"], "--port=9000"),
    (["--theme=dark"], "--theme=light"),
    (["--VoilaConfiguration.strip_sources=False"], "--strip_sources=True"),
    (["--Voila.open_browser=True"], "--no-browser"),
])
def test_voila_command_extra_args_override_defaults(extra, gone):
    cmd = serve.voila_command("apps/race.ipynb", extra, is_root=False, has_display=False, port=9000)
    assert cmd[-len(extra):] == extra and gone not in cmd[4:-len(extra)], cmd


def test_run_present_refuses_an_unknown_app(capsys):
    assert serve.run_present("slides") == 2
    assert "dashboard, race" in capsys.readouterr().err


def test_apps_are_clean_notebooks_that_import_fot_edu():
    for app in serve.APPS:
        book = json.loads((REPO / "apps" / f"{app}.ipynb").read_text())
        assert book["metadata"]["kernelspec"]["name"] == "python3" and "widgets" not in book["metadata"]
        code = [c for c in book["cells"] if c["cell_type"] == "code"]
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
        assert "from fot_edu." in "".join("".join(c["source"]) for c in code)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="process groups and SIGINT are POSIX")
def test_present_prints_its_url_and_stops_on_ctrl_c(tmp_path):
    """``run_present`` as a user starts it: Voilà prints a loopback URL that answers, with the
    classroom template, and Ctrl-C (SIGINT to the process group) stops it cleanly."""
    pytest.importorskip("voila")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update({f"JUPYTER_{d.upper()}_DIR": str(tmp_path / d) for d in ("config", "data", "runtime")},
               PYTHONUNBUFFERED="1")
    log_path = tmp_path / "present.log"
    # TODO(lead): [sys.executable, "-m", "fot_edu", "present", "race", "--port", str(port)] once wired
    code = f"import sys; from fot_edu.cli.serve import run_present; sys.exit(run_present('race', port={port}))"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=terminal_signals)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 90
        while url not in log_path.read_text(errors="replace"):
            if proc.poll() is not None:
                pytest.fail(f"the server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {url} printed within 90 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        # a static file of the app's page: answers without running the notebook
        with urllib.request.urlopen(f"{url}voila/static/voila.js", timeout=30) as r:
            assert r.status == 200
    finally:
        returncode = stop(proc, first_wait_s=45)
    out = log_path.read_text(errors="replace")
    first = out.splitlines()[0]
    assert first.startswith("fot_edu: presenting the race app") and "--no-browser" in first, first
    assert "Traceback" not in out and returncode in (0, 130), (returncode, out[-3000:])
