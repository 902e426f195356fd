"""Start a local Jupyter server for the notebooks: ``python -m fot_edu lab [JUPYTERLAB ARGS...]``;
or a Voilà server for a classroom app: ``python -m fot_edu present [dashboard|race]``.

``make lab`` runs this. It works where a plain ``jupyter lab`` does not:

* as root (in a container, say), where JupyterLab refuses to start without ``--allow-root``;
* without a display (over SSH, in a container), where no browser can open: ``--no-browser``, and
  the server prints the URL with its token to copy into a browser on your own machine;
* Ctrl-C stops the server and its kernels at once (no "Shut down this Jupyter server (y/[n])?"
  question, no traceback).

The server listens on loopback only (``127.0.0.1``). Anything after ``lab`` is passed to JupyterLab
last and overrides these defaults, e.g. ``python -m fot_edu lab --port 9999`` or, through
make, ``make lab LAB_ARGS="--port 9999"`` (``--ip=0.0.0.0`` to listen on every interface).

``python -m fot_edu present [dashboard|race]`` (``make present APP=...``) serves one of the
classroom apps of ``apps/`` with Voilà instead: the notebook's outputs only, no code, large type,
on the same loopback terms (:func:`voila_command`, :func:`run_present`).

The helpers (:func:`detect_root`, :func:`detect_display`, :func:`merge_args`, :func:`run_server`)
know nothing of JupyterLab or Voilà in particular; :func:`lab_command` and :func:`run_lab` are
JupyterLab's parts, :func:`voila_command` and :func:`run_present` Voilà's.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Mapping, Sequence

from fot_edu.runtime import SOURCE_ROOT

LOOPBACK = "127.0.0.1"


def detect_root() -> bool:
    """True when this process runs as root (effective uid 0); always False on Windows."""
    geteuid = getattr(os, "geteuid", None)
    return geteuid is not None and geteuid() == 0


def detect_display(environ: Mapping[str, str] | None = None, platform: str | None = None) -> bool:
    """Whether a browser could open a window here.

    macOS and Windows always have a display; elsewhere (Linux, the BSDs) one needs ``DISPLAY`` (X11)
    or ``WAYLAND_DISPLAY`` (Wayland) set to something non-empty.
    """
    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if platform == "darwin" or platform.startswith(("win", "cygwin")):
        return True
    return bool(environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"))


def merge_args(defaults: Sequence[tuple[Sequence[str], Sequence[str]]],
               extra_args: Sequence[str] = ()) -> list[str]:
    """``defaults`` (each: its arguments, and the option names that set the same thing) and then
    ``extra_args``, leaving out each default whose setting ``extra_args`` set themselves.

    A Jupyter application refuses an option given twice (``--ServerApp.ip=127.0.0.1 --ip=0.0.0.0``:
    "ip only accepts one value, got 2"), and a flag beats an option whatever the order
    (``--no-browser --ServerApp.open_browser=True`` keeps the browser closed), so appending alone
    would not let the user override a default. Names are matched as traitlets reads them: ``-y`` or
    ``--y``, ``--allow-root`` or ``--allow_root``, ``--ip=X`` or ``--ip X``.
    """
    given = {_option_name(a) for a in extra_args if a.startswith("-")}
    cmd: list[str] = []
    for args, names in defaults:
        if not given & {_option_name(n) for n in names}:
            cmd.extend(args)
    cmd.extend(str(a) for a in extra_args)
    return cmd


def _option_name(arg: str) -> str:
    return arg.split("=", 1)[0].lstrip("-").replace("-", "_")


def lab_command(extra_args: Sequence[str] = (), *, is_root: bool, has_display: bool,
                notebook_dir: str | os.PathLike = "notebooks") -> list[str]:
    """The JupyterLab command line: ``[python, -m, jupyter, lab, notebook_dir, ...]``.

    Adds ``--allow-root`` when ``is_root``, ``--no-browser`` when not ``has_display``, binds the
    server to loopback (``--ServerApp.ip=127.0.0.1``) and lets one Ctrl-C stop it
    (``--ServerApp.answer_yes=True`` skips the "Shut down this Jupyter server?" question).
    ``extra_args`` come last and override any of these (see :func:`merge_args`), e.g.
    ``--ip=0.0.0.0``, ``--ServerApp.answer_yes=False`` or ``--notebook-dir=elsewhere``.
    """
    extra_args = [str(a) for a in extra_args]
    defaults: list[tuple[list[str], tuple[str, ...]]] = [
        ([str(notebook_dir)], ("--notebook-dir", "--ServerApp.root_dir", "--ServerApp.notebook_dir")),
        ([f"--ServerApp.ip={LOOPBACK}"], ("--ip", "--ServerApp.ip")),
        (["--ServerApp.answer_yes=True"], ("--y", "--ServerApp.answer_yes", "--JupyterApp.answer_yes")),
    ]
    if is_root:
        defaults.append((["--allow-root"], ("--allow-root", "--ServerApp.allow_root")))
    if not has_display:
        defaults.append((["--no-browser"], ("--no-browser", "--ServerApp.open_browser",
                                            "--ExtensionApp.open_browser", "--LabApp.open_browser")))
    return [sys.executable, "-m", "jupyter", "lab", *merge_args(defaults, extra_args)]


def find_notebooks() -> Path:
    """``notebooks/`` of the current directory, else the one beside this package (a source checkout)."""
    here = Path("notebooks")
    if here.is_dir():
        return here
    beside = SOURCE_ROOT / "notebooks"
    return beside if beside.is_dir() else here


def run_server(cmd: Sequence[str], description: str, env: Mapping[str, str] | None = None) -> int:
    """Print one line (``description``), run ``cmd`` (in ``env``, default: this process's
    environment) until it exits and return its exit status.

    Ctrl-C in a terminal reaches the whole foreground process group, the server included: this
    process then just waits for the server to shut down (a traceback here would hide the server's
    own last lines) and returns 0 if it shut down cleanly, else 130 (interrupted).
    """
    print(description, flush=True)
    try:
        proc = subprocess.Popen(list(cmd), env=None if env is None else dict(env))
    except OSError as err:
        print(f"could not start {cmd[0]}: {err}", file=sys.stderr)
        return 1
    interrupted = False
    while True:
        try:
            returncode = proc.wait()
            break
        except KeyboardInterrupt:
            interrupted = True
    if interrupted:
        return 0 if returncode == 0 else 130
    return returncode if returncode >= 0 else 128 - returncode  # killed by signal N: 128 + N


def run_lab(extra_args: Sequence[str] = (), *, notebook_dir: str | os.PathLike | None = None) -> int:
    """Start JupyterLab on the notebooks (see :func:`lab_command`); returns its exit status."""
    if importlib.util.find_spec("jupyterlab") is None:
        print("JupyterLab is not installed in this Python: pip install -e '.[notebooks]' "
              "(make lab does it)", file=sys.stderr)
        return 1
    is_root, has_display = detect_root(), detect_display()
    notebook_dir = find_notebooks() if notebook_dir is None else notebook_dir
    cmd = lab_command(extra_args, is_root=is_root, has_display=has_display, notebook_dir=notebook_dir)
    how = []
    if "--allow-root" in cmd:
        how.append("as root (--allow-root)")
    if "--no-browser" in cmd:
        how.append("without a display (--no-browser): open the URL with its token printed below")
    folder = f"{notebook_dir}/" if str(notebook_dir) in cmd[4:5] else "the folder you named"
    return run_server(cmd, f"fot_edu: starting JupyterLab for {folder}"
                           f"{''.join(', ' + h for h in how)}; Ctrl-C stops it. "
                           f"[python -m jupyter lab {' '.join(cmd[4:])}]")


# --- Voilà: the classroom apps (``python -m fot_edu present [dashboard|race]``) ------------------

APPS = ("dashboard", "race")  # apps/<name>.ipynb
VOILA_TEMPLATE = "classroom"  # apps/voila/templates/classroom: large type, nothing from a CDN


def voila_command(app: str | os.PathLike, extra_args: Sequence[str] = (), *, is_root: bool,
                  has_display: bool, port: int | None = None) -> list[str]:
    """The Voilà command line for one app notebook: ``[python, -m, voila, app, ...]``.

    Voilà runs the notebook in a fresh kernel for each visitor and shows only its outputs
    (``--strip_sources=True``: no code cells), with the ``classroom`` template (large type for a
    projector) and ``--theme=light``. It listens on loopback (``--Voila.ip=127.0.0.1``), on
    ``port`` when given (Voilà's default is 8866; a busy port makes it try the next ones). No
    browser opens without a display, nor as root (Chrome and Chromium refuse to run as root without
    ``--no-sandbox``); the URL is then printed to open by hand. Voilà has no root check of its
    own, so nothing like ``--allow-root`` is needed. ``extra_args`` come last and override any of
    these (see :func:`merge_args`), e.g. ``--theme=dark`` or ``--Voila.ip=0.0.0.0``.
    """
    extra_args = [str(a) for a in extra_args]
    defaults: list[tuple[list[str], tuple[str, ...]]] = [
        ([f"--Voila.ip={LOOPBACK}"], ("--ip", "--Voila.ip")),
        (["--strip_sources=True"], ("--strip_sources", "--VoilaConfiguration.strip_sources")),
        ([f"--template={VOILA_TEMPLATE}"], ("--template", "--VoilaConfiguration.template")),
        (["--theme=light"], ("--theme", "--VoilaConfiguration.theme")),
    ]
    if port is not None:
        defaults.append(([f"--port={int(port)}"], ("--port", "--Voila.port")))
    if is_root or not has_display:
        defaults.append((["--no-browser"], ("--no-browser", "--Voila.open_browser")))
    return [sys.executable, "-m", "voila", str(app), *merge_args(defaults, extra_args)]


def find_apps() -> Path:
    """``apps/`` of the current directory, else the one beside this package (a source checkout)."""
    here = Path("apps")
    if (here / "dashboard.ipynb").is_file():
        return here
    beside = SOURCE_ROOT / "apps"
    return beside if beside.is_dir() else here


def run_present(app: str = "dashboard", extra_args: Sequence[str] = (), *, port: int | None = None,
                no_browser: bool = False) -> int:
    """Start Voilà on ``apps/<app>.ipynb`` (``dashboard`` or ``race``; see :func:`voila_command`)
    and return its exit status; Ctrl-C stops the server and its kernels."""
    if app not in APPS:
        print(f"unknown app {app!r}: choose one of {', '.join(APPS)}", file=sys.stderr)
        return 2
    if importlib.util.find_spec("voila") is None:
        print("Voilà is not installed in this Python: pip install -e '.[notebooks]' "
              "(make lab or make present does it)", file=sys.stderr)
        return 1
    apps = find_apps()
    notebook = apps / f"{app}.ipynb"
    if not notebook.is_file():
        print(f"{notebook} is missing: run this from a source checkout of fot_edu", file=sys.stderr)
        return 1
    is_root, has_display = detect_root(), detect_display()
    cmd = voila_command(notebook, [*(["--no-browser"] if no_browser else []), *extra_args],
                        is_root=is_root, has_display=has_display, port=port)
    # the classroom template lives in apps/voila/templates: Voilà finds templates on JUPYTER_PATH
    env = dict(os.environ)
    env["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(apps.resolve()), env.get("JUPYTER_PATH"))
                                          if p)
    how = ("open the URL printed below" if "--no-browser" in cmd
           else "a browser opens it; else open the URL printed below")
    return run_server(cmd, f"fot_edu: presenting the {app} app with Voilà ({how}); Ctrl-C stops "
                           f"it. [python -m voila {' '.join(cmd[3:])}]", env=env)
