"""Build fot_edu's wheel, install it in a fresh venv outside the checkout, and use it as a student would.

    python3 scripts/check_wheel.py [--notebook notebooks/05_long_context.ipynb] [--keep DIR]

1. ``pip wheel --no-deps`` builds the wheel; its size is printed (the README states it).
2. A fresh venv in a temporary folder gets PyTorch as ``make lab`` chooses it
   (``scripts/choose_torch.py``), then the wheel with its ``notebooks`` extra.
3. From that folder, where no checkout is on the path: ``python -m fot_edu --version``,
   ``python -m fot_edu demo`` (the shipped models and corpora, found as package data) and one
   notebook, copied there and run headless in fast mode.

The standard library only: run it with the Python that builds venvs (``.ci/run`` does, after the
test suite). Exits non-zero at the first step that fails, saying which.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def step(title: str, cmd: list, **kwargs) -> subprocess.CompletedProcess:
    print(f"==> {title}: {' '.join(str(c) for c in cmd)}", flush=True)
    began = time.perf_counter()
    done = subprocess.run([str(c) for c in cmd], **kwargs)
    if done.returncode:
        raise SystemExit(f"check_wheel: {title} failed (exit {done.returncode})")
    print(f"    {title}: ok, {time.perf_counter() - began:.0f} s", flush=True)
    return done


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--notebook", type=Path, default=ROOT / "notebooks" / "05_long_context.ipynb")
    parser.add_argument("--keep", type=Path, help="work in DIR (kept) instead of a temporary folder")
    args = parser.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="fot_edu-wheel-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        wheels = work / "wheels"
        step("build the wheel", [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
                                 "--wheel-dir", wheels, ROOT])
        wheel = next(wheels.glob("fot_edu-*.whl"))
        print(f"    wheel: {wheel.name}, {wheel.stat().st_size / 2**20:.1f} MiB", flush=True)
        venv = work / "venv"
        step("a fresh venv", [sys.executable, "-m", "venv", venv])
        py = venv / "bin" / "python"
        torch_args = subprocess.run([sys.executable, ROOT / "scripts" / "choose_torch.py"],
                                    capture_output=True, text=True, check=True).stdout.split()
        step("PyTorch", [py, "-m", "pip", "install", "--quiet", *torch_args])
        step("the wheel, with the notebooks extra", [py, "-m", "pip", "install", "--quiet",
                                                     f"{wheel}[notebooks]"])
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FOT_EDU_DATA_DIR",
                                                                "FOT_EDU_CHECKPOINTS")}
        env["FOT_EDU_FAST"] = "1"
        here = dict(cwd=work, env=env)
        where = subprocess.run([py, "-c", "import fot_edu; print(fot_edu.__file__)"], capture_output=True,
                               text=True, check=True, **here).stdout.strip()
        if Path(where).resolve().is_relative_to(ROOT):
            raise SystemExit(f"check_wheel: fot_edu was imported from the checkout ({where})")
        print(f"    fot_edu imported from {where}", flush=True)
        step("--version", [py, "-m", "fot_edu", "--version"], **here)
        step("demo", [py, "-m", "fot_edu", "demo", "--threads", "1"], **here)
        notebook = work / args.notebook.name
        shutil.copy(args.notebook, notebook)
        step(f"notebook {notebook.name}, fast mode", [py, "-m", "jupyter", "nbconvert", "--to",
                                                     "notebook", "--execute", "--output-dir",
                                                     work / "executed", notebook], **here)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print("check_wheel: the installed wheel works outside the checkout")
    return 0


if __name__ == "__main__":
    sys.exit(main())
