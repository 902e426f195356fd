"""Build the course book: ``python book/build.py [--fast | --normal] [--out DIR]`` (``make book``).

1. Stage the sources in ``OUT/src``, laid out as in the repository, so that the README's and the
   guides' relative links and images work unchanged: ``book/*.md`` (the landing page), the
   README, ``docs/*.md`` (the glossary when it exists, the teacher's guide, the architecture),
   the images under ``results/figures`` and the nine notebooks.
2. Run each notebook top to bottom with nbclient, in normal mode (``FOT_EDU_FAST`` unset) or,
   with ``--fast``, in fast mode (``FOT_EDU_FAST=1``, for CI); a cell that raises stops the build.
   Then ``book/outputs.py`` turns plotly figures and widgets into static HTML.
3. Sphinx with myst-nb (configuration: ``book/conf.py``) writes the site to ``OUT/html``; its
   landing page is ``OUT/html/index.html``.
4. ``book/offline.py`` scans the site: a script, stylesheet, font or image from outside the machine
   fails the build.

``OUT/build-times.json`` is a record (``fot_edu.evaluation.records``): the command, the machine, the load
average before and after, the seconds of the whole build and of each notebook, the mode.
"""
from __future__ import annotations

import argparse
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

BOOK = Path(__file__).resolve().parent
REPO = BOOK.parent
sys.path[:0] = [str(BOOK), str(REPO)]
import offline  # noqa: E402  (book/ is not a package)
import outputs  # noqa: E402

from fot_edu.evaluation.records import Recording, write_record  # noqa: E402

CELL_TIMEOUT_S = 1800  # one cell; notebook 04 trains two models in normal mode


def stage(src: Path) -> list[Path]:
    """Copy the book's sources into ``src``; return the notebooks to run (their staged paths)."""
    if src.exists():
        shutil.rmtree(src)
    (src / "docs").mkdir(parents=True)
    for page in BOOK.glob("*.md"):
        shutil.copy(page, src / page.name)
    shutil.copy(REPO / "README.md", src / "README.md")
    for page in (REPO / "docs").glob("*.md"):  # glossary.md is included when it exists
        shutil.copy(page, src / "docs" / page.name)
    shutil.copytree(REPO / "results" / "figures", src / "results" / "figures",
                    ignore=shutil.ignore_patterns("*.html", "*.json"))
    (src / "notebooks").mkdir()
    staged = []
    for nb in sorted((REPO / "notebooks").glob("*.ipynb")):
        staged.append(Path(shutil.copy(nb, src / "notebooks" / nb.name)))
    in_book = {p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()}
    for page in [src / "README.md", *(src / "docs").glob("*.md")]:
        page.write_text(unlink_outside(page.read_text(encoding="utf-8"), page.parent.relative_to(src), in_book),
                        encoding="utf-8")
    return staged


LINK = re.compile(r"(?<!!)\[([^\]\n]+)\]\(([^)\s]+)\)")  # [text](target), not an image


def unlink_outside(text: str, folder: Path, in_book: set[str]) -> str:
    """Links to repository files that are not in the book (CHANGELOG.md, LICENSE, sources) become
    their text and the file's path: the book has no page to send the reader to."""

    def replace(match: re.Match) -> str:
        label, target = match.groups()
        path = target.split("#")[0]
        if not path or re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # an anchor or a URL
            return match.group(0)
        if posixpath.normpath((folder / path).as_posix()) in in_book:
            return match.group(0)
        return f"`{path}` (in the repository)" if label.strip("`") == path else f"{label} (`{path}` in the repository)"

    return LINK.sub(replace, text)


def kernel_env(fast: bool) -> dict:
    """The kernel's environment: the mode, this checkout on the path, plotly's Jupyter renderer."""
    env = dict(os.environ, PLOTLY_RENDERER="plotly_mimetype",
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    env.pop("FOT_EDU_FAST", None)
    if fast:
        env["FOT_EDU_FAST"] = "1"
    return env


NOT_EXECUTED = ("*This page was built without running the notebook (a partial build, "
                "`--execute`), so it shows no outputs; `make book` runs every notebook.*")


def execute(path: Path, fast: bool, executed: Path, reuse: bool) -> dict:
    """Run the staged notebook at ``path`` in its folder (or, with ``reuse``, take the executed copy
    in ``executed`` from an earlier build), keep the executed copy there, write the converted one
    back to ``path``."""
    raw = executed / path.name
    start = time.monotonic()
    if reuse and raw.is_file():
        nb = nbformat.read(raw, as_version=4)
    else:
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", store_widget_state=True,
                       resources={"metadata": {"path": str(path.parent)}}).execute(env=kernel_env(fast))
        executed.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, raw)
    seconds = time.monotonic() - start
    as_dict = json.loads(nbformat.writes(nb))
    counts = outputs.convert_notebook(as_dict, path.stem.split("_")[0])
    path.write_text(json.dumps(as_dict, indent=1), encoding="utf-8")
    return {"seconds": round(seconds, 1), **counts}


def mark_not_executed(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(NOT_EXECUTED))
    nbformat.write(nb, path)


def sphinx(src: Path, html: Path, doctrees: Path) -> None:
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-c", str(BOOK), "-d", str(doctrees),
           "--keep-going", "-q", str(src), str(html)]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", default=os.environ.get("FOT_EDU_FAST") == "1",
                        help="run the notebooks in fast mode (default: FOT_EDU_FAST=1 in the environment)")
    parser.add_argument("--normal", dest="fast", action="store_false",
                        help="run the notebooks in normal mode whatever FOT_EDU_FAST says (make book)")
    parser.add_argument("--out", type=Path, default=BOOK / "_build", help="build folder (default book/_build)")
    parser.add_argument("--execute", default=os.environ.get("FOT_EDU_BOOK_EXECUTE", ""),
                        help="run only these notebooks (comma-separated names without .ipynb; default: "
                             "FOT_EDU_BOOK_EXECUTE, or all); the others become pages without outputs")
    parser.add_argument("--reuse", action="store_true",
                        help="take the executed notebooks of the last build in OUT/executed (for "
                             "work on the pages; the mode and the notebooks may be stale)")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    mode = "fast" if args.fast else "normal"
    recording = Recording(seed=None)
    notebooks = stage(out / "src")
    chosen = {name.strip().removesuffix(".ipynb") for name in args.execute.split(",") if name.strip()}
    unknown = chosen - {p.stem for p in notebooks}
    if unknown:
        parser.error(f"--execute: no notebook named {sorted(unknown)}")
    times = {}
    for path in notebooks:
        if chosen and path.stem not in chosen:
            mark_not_executed(path)
            times[path.name] = "not executed"
            continue
        print(f"==> {path.name} ({mode} mode)", flush=True)
        times[path.name] = execute(path, args.fast, out / "executed", args.reuse)
        print(f"    {times[path.name]}", flush=True)
    if (out / "html").exists():
        shutil.rmtree(out / "html")
    sphinx(out / "src", out / "html", out / "doctrees")
    problems = offline.scan(out / "html")
    write_record(out / "build-times.json", recording, mode=mode, reused=args.reuse,
                 executed=sorted(chosen) or "all", notebooks=times)
    if problems:
        print("the book loads resources from outside the machine:", json.dumps(problems, indent=1),
              file=sys.stderr)
        return 1
    print(f"book ({mode} mode) in {recording.seconds} s (load average {recording.load_before} before): "
          f"{out / 'html' / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
