"""Checkpoints that never lose work and never run code.

* **Atomic**: written to a temporary file in the same folder, flushed to disk, then renamed over
  the target (``os.replace`` is atomic on POSIX), so a crash mid-write leaves the old checkpoint.
* **Safe to load**: ``torch.load(weights_only=True)`` only rebuilds tensors and plain containers;
  a file that carries any other pickled object is refused, so a downloaded checkpoint cannot run
  code on your machine. The config is stored as JSON text beside the weights.
* **Self-describing**: the config travels with the weights, so ``load_model`` needs nothing else.

Named checkpoints (``"dict-fot"``) are looked up in ``fot_edu/shipped/checkpoints/`` of this repository (or
``$FOT_EDU_CHECKPOINTS``).
"""
from __future__ import annotations

import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch

from fot_edu.config import TrainConfig
from fot_edu.model import FoTModel
from fot_edu.runtime import SHIPPED

FORMAT_VERSION = 1
CHECKPOINT_DIR = Path(os.environ.get("FOT_EDU_CHECKPOINTS", SHIPPED / "checkpoints"))


def save_checkpoint(path, model, cfg: TrainConfig, *, optimizer=None, step: int = 0,
                    history: list | None = None, extra: dict | None = None) -> Path:
    """Write model (+ optimizer, step, history) and the config to ``path`` atomically."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"output folder {str(path.parent)!r} does not exist: create it first")
    state = {
        "format_version": FORMAT_VERSION,
        "config_json": json.dumps(cfg.to_dict()),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "step": int(step),
        "history_json": json.dumps(history or []),
        "rng_cpu": torch.get_rng_state(),
        "extra_json": json.dumps(extra or {}),
    }
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; a checkpoint is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def resolve(name_or_path) -> Path:
    """A path as given, or a shipped checkpoint's name (``"dict-fot"`` -> fot_edu/shipped/checkpoints/...)."""
    path = Path(name_or_path)
    if path.exists():
        return path
    shipped = CHECKPOINT_DIR / f"{name_or_path}.pt"
    if path.suffix != ".pt" and shipped.exists():
        return shipped
    names = sorted(p.stem for p in CHECKPOINT_DIR.glob("*.pt")) if CHECKPOINT_DIR.is_dir() else []
    raise ValueError(f"checkpoint={str(name_or_path)!r} is neither a file nor a shipped checkpoint; "
                     f"shipped: {', '.join(names) or 'none'}. Train one with `python -m fot_edu "
                     f"train --preset NAME` (it writes runs/NAME/checkpoint.pt)")


def load_checkpoint(name_or_path, map_location="cpu") -> dict:
    """The checkpoint's contents as a dict with ``config`` (a TrainConfig) and ``history``."""
    path = resolve(name_or_path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(f"refusing to load {str(path)!r}: it contains pickled objects other than "
                         f"tensors and plain containers (possible code execution): {err}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, IndexError, KeyError, ValueError,
            TypeError) as err:  # garbage bytes surface as any of these from the unpickler
        raise ValueError(f"checkpoint {str(path)!r} is truncated or corrupt: {err}") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{str(path)!r} is not a fot_edu checkpoint (format_version "
                         f"{state.get('format_version') if isinstance(state, dict) else None!r}, "
                         f"expected {FORMAT_VERSION})")
    state["config"] = TrainConfig.from_dict(_upgrade(json.loads(state.pop("config_json"))))
    state["history"] = json.loads(state.pop("history_json"))
    state["extra"] = json.loads(state.pop("extra_json"))
    state["path"] = str(path)
    return state


def _upgrade(config: dict) -> dict:
    """Configs written before MT was named only by ``memory_kind`` said ``mode="mt"`` (the shipped
    ``dict-mt`` and ``code-mt``): that training is crossbatch with ``d = 1``. (Those presets now
    train with ``mode="stream"``; fields added since, such as ``memory_k``, take their defaults.)"""
    if config.get("mode") == "mt":
        config = {**config, "mode": "crossbatch"}
    return config


def load_state_into(model, state_dict) -> None:
    """``load_state_dict`` with an error that says which config does not match."""
    mine = model.state_dict()
    wrong = [k for k in state_dict if k in mine and mine[k].shape != state_dict[k].shape]
    missing = sorted(set(mine) ^ set(state_dict))
    if wrong or missing:
        detail = [f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(mine[k].shape)}"
                  for k in wrong[:3]] + [f"parameter {k!r} only on one side" for k in missing[:3]]
        raise ValueError("checkpoint is from another model config: " + "; ".join(detail))
    model.load_state_dict(state_dict)


def load_model(name_or_path, device=None):
    """``(model, config)`` from a checkpoint, in eval mode, on ``device`` (default: cpu)."""
    state = load_checkpoint(name_or_path)
    cfg = state["config"]
    model = FoTModel(cfg.model)
    load_state_into(model, state["model"])
    return model.to(device or "cpu").eval(), cfg


def export_weights(src, dst, extra: dict | None = None) -> Path:
    """A shippable copy of a training checkpoint: weights, config and history, no optimizer
    state (a third of the size). ``extra`` is stored beside them (e.g. wall time, machine)."""
    state = load_checkpoint(src)
    model = FoTModel(state["config"].model)
    load_state_into(model, state["model"])
    return save_checkpoint(dst, model, state["config"], step=state["step"],
                           history=state["history"], extra={**state["extra"], **(extra or {})})
