r"""The models the notebooks, widgets and report use: shipped checkpoints, or a short training run.

Every notebook asks for its models by name (``load_or_train("dict-fot")``). When the checkpoint is
shipped in ``fot_edu/shipped/checkpoints/`` (or ``$FOT_EDU_CHECKPOINTS``) it is loaded; otherwise the preset
is trained now, shortened by :func:`fallback_config` (minutes on a CPU; seconds in fast mode,
``FOT_EDU_FAST=1``), and cached for the session.
"""
from __future__ import annotations

import torch

from fot_edu.config import ModelConfig, TrainConfig
from fot_edu.runtime import fast_mode, one_thread
from fot_edu.training.checkpoint import CHECKPOINT_DIR, load_model
from fot_edu.training.presets import PRESETS, preset
from fot_edu.training.train import train

_TRAINED: dict = {}


def fallback_config(name: str, fast: bool) -> TrainConfig:
    """The config trained when checkpoint ``name`` is not shipped: the preset, shortened.

    ``fast`` (``FOT_EDU_FAST=1``): a smoke-sized model of the same kind (seconds on a CPU; it
    learns little, the point is that the notebook runs). Otherwise the preset capped at 300
    steps, its ``d`` schedule squeezed to fit (minutes on a CPU).
    """
    if name not in PRESETS:
        raise ValueError(f"name={name!r} is neither a shipped checkpoint nor a preset: choose one "
                         f"of {sorted(PRESETS)}")
    cfg = preset(name)
    if not fast:
        steps = min(cfg.steps, 300)
        ratio = steps / cfg.steps
        schedule = tuple((int(s * ratio), d) for s, d in cfg.d_schedule)
        return cfg.replace(steps=steps, d_schedule=schedule, warmup_steps=min(cfg.warmup_steps, 30),
                           eval_every=steps, checkpoint_every=steps)
    layers = (1,) if cfg.model.memory_layers else ()
    model = ModelConfig(n_layers=2, d_model=32, n_heads=2, d_ff=64, memory_layers=layers,
                        memory_kind=cfg.model.memory_kind, memory_position=cfg.model.memory_position)
    schedule = ((0, 1), (20, 2)) if cfg.d_schedule else ()
    small = dict(model=model, d_schedule=schedule, d=1, batch_size=8, steps=40, warmup_steps=5,
                 eval_every=40, checkpoint_every=40, eval_batches=1,
                 base=None)  # a continuation's smoke model is not its base's shape: from scratch
    if cfg.data.task == "dictionary":
        return cfg.replace(**small, data=preset("tiny-fot").data)
    if cfg.data.task == "retrieval":  # one needle a window, and room for it
        return cfg.replace(**small, data=cfg.data.__class__(task="retrieval", window=128,
                                                            entries_per_window=1))
    return cfg.replace(**small, data=cfg.data.__class__(task=cfg.data.task, window=32))


def has_checkpoint(name: str) -> bool:
    """True when ``fot_edu/shipped/checkpoints/{name}.pt`` (or ``$FOT_EDU_CHECKPOINTS``) is shipped."""
    return (CHECKPOINT_DIR / f"{name}.pt").exists()


def load_or_train(name: str, *, fast: bool | None = None, callback=None):
    """``(model, cfg)``: the shipped checkpoint ``name``, or :func:`fallback_config` trained now.

    Trained fallbacks are cached for the session, so several cells may ask for the same model.
    ``callback`` sees each training step's history row (e.g. a live loss plot).
    """
    if has_checkpoint(name):
        return load_model(name)
    fast = fast_mode() if fast is None else fast
    if (name, fast) not in _TRAINED:
        result = train_live(fallback_config(name, fast), callback=callback)
        _TRAINED[(name, fast)] = (result.model.cpu().eval(), result.config)
    return _TRAINED[(name, fast)]


def train_live(cfg, callback=None):
    """``train(cfg)`` without a progress bar, one CPU thread for tiny models; returns the result."""
    with one_thread(cfg.model.d_model <= 64 and not torch.cuda.is_available()):
        return train(cfg, progress=False, callback=callback)
