"""Named presets: the recipes behind every shipped checkpoint, the race and the tests.

``preset(name)`` returns a fresh :class:`~fot_edu.config.TrainConfig`. Training times and every
figure measured on the shipped models are in ``results/checkpoints.json``.

* ``dict-*`` (dictionary lookup, §5.2) and ``code-*`` (Python source): the same small model, in
  four kinds: ``vanilla`` (no memory), ``d1`` (crossbatch with d = 1), ``fot`` (d ramped to 8),
  ``mt`` (the Memorizing Transformer, trained as it reads).
* ``passkey-fot``: byte-level, the retrieval curriculum, evaluated on passkey prompts (a GPU preset).
* ``text-*``: the LongLLaMA recipe at classroom scale, a vanilla base and two short continuations.
* ``tiny-*``: smoke-sized (seconds), for tests and ``FOT_EDU_FAST=1``.
"""
from __future__ import annotations

import dataclasses

from fot_edu.config import DataConfig, ModelConfig, TrainConfig

_FOT_SCHEDULE = ((0, 1), (150, 2), (250, 4), (350, 8))  # the paper's advice: start small, raise d


# MT (Wu et al. 2022) trains as it reads: mode="stream", each of the b rows one document, one window
# of every row a step, memory of the row's earlier windows (detached). Same model, data, b and steps
# as FoT, but a stream step holds b x n tokens, a crossbatch step b x 2 x n (C_prev + C_curr): MT sees
# half the tokens (dictionary: (0 + 5 + 5 + 10) / 4 = 5 questions a row and step against FoT's 10).


def _mode(kind: str) -> str:
    return {"vanilla": "plain", "mt": "stream"}.get(kind, "crossbatch")


def _small(task: str, window: int, kind: str, **kw) -> TrainConfig:
    """The dictionary and code models: 3 layers of width 128, layer 1 the memory layer.

    ``kind``: "vanilla" (no memory layer), "fot" or "mt" (the memory layer's kind).
    """
    model = ModelConfig(n_layers=3, d_model=128, n_heads=4, d_ff=512,
                        memory_layers=() if kind == "vanilla" else (1,),
                        memory_kind="mt" if kind == "mt" else "fot")
    return TrainConfig(model=model, data=DataConfig(task=task, window=window), mode=_mode(kind), **kw)


def _dict(kind: str, **kw) -> TrainConfig:
    return _small("dictionary", 64, kind, **kw)


def _code(kind: str, **kw) -> TrainConfig:
    return _small("code", 128, kind, **{"steps": 750, **kw})


_TEXT_STEPS = 1600  # the base model's steps; a continuation trains 10% of them (LongLLaMA: < 10%)
_TEXT_FOT_SCHEDULE = ((0, 1), (40, 4), (80, 8))  # d raised at a quarter and half of the steps
_PLAIN_STEPS = 2000  # the negative control's base: plain keys, book text only
_PLAIN_FOT_SCHEDULE = ((0, 1), (50, 4), (100, 8))


def _text(memory_layers, **kw) -> TrainConfig:
    """Byte-level book text (``books``, windows of 256 bytes), 4 layers, RoPE everywhere."""
    model = ModelConfig(n_layers=4, d_model=128, n_heads=4, d_ff=256, memory_layers=memory_layers,
                        memory_position="rope")
    nested = {k: kw.pop(k) for k in list(kw) if "__" in k}  # e.g. data__repeats
    return TrainConfig(model=model, data=DataConfig(task="books", window=256), batch_size=16,
                       **{"steps": _PLAIN_STEPS, **kw}).replace(**nested)


def _copying(memory_layers, **kw) -> TrainConfig:
    """``_text`` whose every layer convolves its queries and keys over the last 8 bytes
    (``fot_edu.qk_conv``): the previous-token circuit copying needs, which this small model does not
    find within its steps otherwise (``results/records/copy-emergence-*``)."""
    cfg = _text(memory_layers, **kw)
    return cfg.replace(model__qk_conv=(0, 1, 2, 3), model__qk_conv_width=8)


def _continued(base: str, steps: int, memory_layers, **kw) -> TrainConfig:
    """A LongLLaMA continuation of preset ``base`` for 10% of its steps
    (``fot_edu.training.longllama``): the base's model, ``memory_layers`` made memory layers."""
    model = dataclasses.replace(PRESETS[base]().model, memory_layers=memory_layers)
    return _text(memory_layers, base=base, steps=steps // 10, lr=1e-3, warmup_steps=20,
                 eval_every=50, checkpoint_every=50, **kw).replace(model=model)


PRESETS: dict[str, callable] = {
    "dict-vanilla": lambda: _dict("vanilla"),
    "dict-d1": lambda: _dict("fot", d=1),
    "dict-fot": lambda: _dict("fot", d_schedule=_FOT_SCHEDULE),
    "dict-mt": lambda: _dict("mt"),
    "code-vanilla": lambda: _code("vanilla"),
    "code-d1": lambda: _code("fot", d=1),
    "code-fot": lambda: _code("fot", d_schedule=((0, 1), (100, 2), (175, 4), (250, 8))),
    "code-mt": lambda: _code("mt"),
    # byte-level, trained on the retrieval curriculum (fot_edu.data.passkey), evaluated on passkey prompts
    # up to 64x its training context of 2 x 256 bytes. A GPU preset: its training time on an H200
    # is in results/checkpoints.json; on a 2-core CPU it takes most of an hour.
    "passkey-fot": lambda: TrainConfig(
        model=ModelConfig(n_layers=4, d_model=128, n_heads=4, d_ff=256, memory_layers=(2,)),
        data=DataConfig(task="retrieval", window=256, entries_per_window=3),
        d_schedule=((0, 1), (300, 2), (500, 4), (700, 8)), batch_size=16, steps=2000),
    # the LongLLaMA recipe at classroom scale (fot_edu.training.longllama). text-vanilla: a byte-level
    # model of book text that copies: convolved queries and keys, and a copy-first curriculum
    # (fot_edu.data.repeats: random strings written twice, then book text in half of whose rows a
    # phrase of text and a string after it recur in the window, the `phrases` mix). text-d1 /
    # text-fot continue it for 10% of its steps with layer 0, where its copying formed, a memory
    # layer (RoPE kept, memory keys at position 0), on book pairs half of whose rows repeat a phrase
    # of C_prev and the string after it in C_curr. text-plain-*: the same recipe from
    # a base of plain keys and plain text, which never learns to copy (layer 2 the memory layer):
    # the negative control. CPU presets: their training times on a 2-core CPU are in
    # results/checkpoints.json.
    "text-vanilla": lambda: _copying((), mode="plain", steps=_TEXT_STEPS,
                                     data__repeats=((0, "synthetic"), (800, "phrases"))),
    "text-d1": lambda: _continued("text-vanilla", _TEXT_STEPS, (0,), d=1,
                                  data__repeats=((0, "cross-phrase"),)),
    "text-fot": lambda: _continued("text-vanilla", _TEXT_STEPS, (0,), d_schedule=_TEXT_FOT_SCHEDULE,
                                   data__repeats=((0, "cross-phrase"),)),
    "text-plain-vanilla": lambda: _text(memory_layers=(), mode="plain"),
    "text-plain-d1": lambda: _continued("text-plain-vanilla", _PLAIN_STEPS, (2,), d=1),
    "text-plain-fot": lambda: _continued("text-plain-vanilla", _PLAIN_STEPS, (2,),
                                         d_schedule=_PLAIN_FOT_SCHEDULE),
    # smoke-sized: seconds on a CPU, used by tests and FOT_EDU_FAST=1
    "tiny-fot": lambda: TrainConfig(
        model=ModelConfig(n_layers=2, d_model=32, n_heads=2, d_ff=64, memory_layers=(1,)),
        data=DataConfig(task="dictionary", window=24, num_symbols=16, key_len=2, value_len=1,
                        entries_per_window=4),
        d_schedule=((0, 1), (20, 2)), batch_size=8, steps=40, warmup_steps=5, eval_every=20,
        checkpoint_every=20, eval_batches=2),
    "tiny-code": lambda: TrainConfig(
        model=ModelConfig(n_layers=2, d_model=32, n_heads=2, d_ff=64, memory_layers=(1,)),
        data=DataConfig(task="code", window=32), d_schedule=((0, 1), (20, 2)), batch_size=16,
        steps=40, warmup_steps=5, eval_every=20, checkpoint_every=20, eval_batches=2),
}


def preset(name: str) -> TrainConfig:
    """A fresh :class:`TrainConfig` for a named preset (see ``PRESETS``)."""
    if name not in PRESETS:
        raise ValueError(f"preset={name!r} is unknown: choose one of {sorted(PRESETS)}")
    return PRESETS[name]()
