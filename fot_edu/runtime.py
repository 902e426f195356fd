"""Where code runs and where its files are: cuda with bf16 autocast when there is a GPU, the CPU
otherwise; the shipped corpora and checkpoints inside the installed package.

``FOT_EDU_DEVICE`` overrides the choice (``cpu``, ``cuda``, ``cuda:1``); ``FOT_EDU_FAST=1``
asks notebooks and experiments for smoke-sized runs (CI sets it). No code change is needed to move
between a laptop and a GPU machine.

:data:`SHIPPED` is package data (``importlib.resources``), so a plain ``pip install`` finds the
corpora and checkpoints from any directory; ``FOT_EDU_DATA_DIR`` and ``FOT_EDU_CHECKPOINTS``
point elsewhere. Files the package writes (uncut corpora, runs) never go inside it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib.resources
import os
from pathlib import Path

import torch

# The shipped corpora (and their provenance and licences) and, in checkpoints/, the shipped models.
SHIPPED = Path(str(importlib.resources.files("fot_edu") / "shipped"))
# Where the package sits: in a source checkout, the repository root (notebooks/, apps/, results/).
SOURCE_ROOT = Path(__file__).resolve().parent.parent
# What the package writes for itself (uncut corpora): a cache outside it, never inside.
CACHE_DIR = Path(os.environ.get("FOT_EDU_CACHE", Path.home() / ".cache" / "fot_edu"))


def default_device(requested: str | None = None) -> torch.device:
    """``requested``, else ``$FOT_EDU_DEVICE``, else cuda if available, else cpu."""
    name = requested or os.environ.get("FOT_EDU_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} is not available here: no CUDA GPU is visible (use 'cpu')")
    return device


def autocast(device: torch.device):
    """bf16 autocast on cuda (fast and numerically safe for training); plain fp32 on the CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def fast_mode() -> bool:
    """True when ``FOT_EDU_FAST=1``: every notebook and experiment shrinks to a smoke run."""
    return os.environ.get("FOT_EDU_FAST", "0") not in ("", "0", "false", "False")


@contextlib.contextmanager
def one_thread(active: bool = True):
    """Run tiny models on one CPU thread: on a busy or 2-core machine, threads of a small matmul
    mostly wait on each other (measured here: ~10x faster training for a 0.6M-parameter model
    while other jobs ran)."""
    before = torch.get_num_threads()
    if active:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class OnDevice:
    """Mixin for batch dataclasses: ``batch.to(device)`` is a copy with every tensor moved."""

    def to(self, device):
        return dataclasses.replace(self, **{
            f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)})
