r"""Passkey retrieval (paper Fig. 1): a number hidden in filler text far longer than the training
window, asked for at the end.

Prompts come from ``fot_edu.data.passkey``; here they are drawn fairly and read. Each length's keys
and depths come from its own seed (:func:`passkey_prompts`), and every reading (top-k, dense, no
memory) reads that same set, so two readings can be compared prompt by prompt
(:func:`passkey_paired`). The prompt is streamed window by window (``fot_edu.streaming``); "no
memory" is the same window-by-window reading with memory off, never one window longer than the
model was trained on. Every figure comes with its sample size and a 95% interval
(``fot_edu.evaluation.stats``).
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from fot_edu.config import TrainConfig
from fot_edu.data.passkey import filler_chars_for_tokens, passkey_prompt, score_passkey
from fot_edu.data.tokenizer import decode, encode_tensor
from fot_edu.evaluation.stats import mcnemar, wilson
from fot_edu.model import FoTModel
from fot_edu.streaming import generate


def parse_length(spec: str, window: int) -> int:
    """``"4096"`` -> 4096 tokens; ``"32x"`` -> 32 times the training context (``2 * window``:
    C_prev + C_curr, what the model saw at once in training)."""
    text = str(spec).strip()
    try:
        tokens = int(float(text[:-1]) * 2 * window) if text.endswith("x") else int(text)
    except ValueError:
        tokens = None
    if tokens is None or tokens < 1:
        raise ValueError(f"length={spec!r} is not allowed: a token count like 4096 or a multiple "
                         f"of the training context like 32x")
    return tokens


def passkey_prompts(lengths, window: int, trials: int = 50, seed: int = 0) -> dict[str, list]:
    """The prompt set: ``{length: [(text, key), ...]}``, ``trials`` prompts per length.

    Each length ``L`` (in tokens, see :func:`parse_length`) has its own prompts: prompt ``t``
    uses the ``t``-th number of ``numpy.random.SeedSequence((seed, L))``, which draws its key
    and the depth of its key line (:func:`fot_edu.data.passkey.passkey_prompt`). So keys and depths
    are independent from one length to the next, a length's first ``t`` prompts do not depend on
    ``trials``, and every reading asked with the same ``(seed, trials)`` reads the same prompts.
    Every length is checked before any prompt is built.
    """
    if not (isinstance(trials, int) and trials >= 1):
        raise ValueError(f"trials={trials!r} is not allowed: a positive integer")
    if not (isinstance(seed, int) and seed >= 0):
        raise ValueError(f"seed={seed!r} is not allowed: an integer >= 0")
    fillers = {}
    for spec in lengths:
        tokens = parse_length(spec, window)
        try:
            fillers[str(spec)] = (tokens, filler_chars_for_tokens(tokens))
        except ValueError as err:
            raise ValueError(f"length={spec!r} ({tokens} tokens) is too short: {err}") from None
    prompts = {}
    for spec, (tokens, filler_chars) in fillers.items():
        seeds = np.random.SeedSequence((seed, tokens)).generate_state(trials)
        prompts[spec] = [passkey_prompt(filler_chars, seed=int(s)) for s in seeds]
    return prompts


@torch.no_grad()
def passkey_answers(model: FoTModel, cfg: TrainConfig, prompts, *, k: int | None = None,
                    memory: bool = True, device="cpu", progress: bool = False,
                    desc: str = "passkey") -> list[dict]:
    """Greedy answers to ``prompts`` ``[(text, key), ...]`` (any wording: build your own with
    :func:`fot_edu.data.passkey.passkey_prompt`): ``[{"key", "generated", "correct"}, ...]``.

    The prompt is read the way it would be at any length (:func:`fot_edu.streaming.generate`):
    its last window of ``n = cfg.data.window`` tokens is the local context, and while decoding
    the local context stays between ``n / 2`` and ``n`` tokens. With ``memory`` everything
    before it goes into memory (top-``k``, or dense with ``k=None``) and the model answers from
    there. ``memory=False`` ("no memory"): the same reading with memory off, so every layer sees
    only the local context: at most one window of ``n`` positions, what its RoPE layers saw in
    training. It can answer only when the key line lies in that last window.
    """
    if cfg.model.vocab_size != 256:
        raise ValueError(f"passkey needs a byte-level model (vocab_size 256), this checkpoint has "
                         f"vocab_size={cfg.model.vocab_size} (task {cfg.data.task!r})")
    model = model.to(device).eval()
    answers = []
    for text, key in tqdm(prompts, desc=desc, disable=not progress):
        tokens = encode_tensor(text)[None].to(device)
        new = generate(model, tokens, max_new_tokens=8, window=cfg.data.window, k=k,
                       memories=None if memory else {})  # {}: no store to read or fill
        generated = decode(new[0])
        answers.append({"key": key, "generated": generated, "correct": score_passkey(generated, key)})
    return answers


def passkey_accuracy(model: FoTModel, cfg: TrainConfig, lengths=("1x", "4x", "16x", "32x"), *,
                     trials: int = 50, k: int | None = None, seed: int = 0, device="cpu",
                     progress: bool = False, examples: list | None = None,
                     memory: bool = True) -> dict:
    """Passkey retrieval (Fig. 1) with the exact evaluation template: greedy decoding after the
    prompt has been streamed into memory; correct when the generated number equals the key.

    ``trials`` prompts per length from :func:`passkey_prompts` (keys and depths drawn anew for
    each length; the same prompts for every reading with the same ``seed``, so readings are
    paired prompt by prompt). ``examples``: a list that receives ``{"length", "key",
    "generated", "correct"}`` for every prompt; ``memory``: see :func:`passkey_answers`.
    Returns ``{"accuracy": {length: share}, "n": ..., "ci95": ...}`` (Wilson, over prompts).
    """
    prompt_sets = passkey_prompts(lengths, cfg.data.window, trials, seed)
    result, ci95 = {}, {}
    for spec, prompts in prompt_sets.items():
        answers = passkey_answers(model, cfg, prompts, k=k, memory=memory, device=device,
                                  progress=progress, desc=f"passkey {spec}")
        result[spec] = sum(a["correct"] for a in answers) / trials
        ci95[spec] = wilson(result[spec], trials)
        if examples is not None:
            examples.extend({"length": spec, **a} for a in answers)
    return {"accuracy": result, "n": {"accuracy": {spec: trials for spec in result}},
            "ci95": {"accuracy": ci95}}


def passkey_paired(examples_a: list, examples_b: list) -> dict:
    """Two readings of the same prompts, compared prompt by prompt (``examples`` lists of
    :func:`passkey_accuracy`): ``{length: {"only_a", "only_b", "p"}}``, the prompts only reading
    A answered, only B answered, and the exact McNemar p-value (``fot_edu.evaluation.stats.mcnemar``)."""
    prompts = [[(e["length"], e["key"]) for e in examples] for examples in (examples_a, examples_b)]
    if prompts[0] != prompts[1]:
        raise ValueError("the two readings did not read the same prompts: run both with the "
                         "same lengths, trials and seed")
    counts = {}
    for a, b in zip(examples_a, examples_b):
        pair = counts.setdefault(a["length"], {"only_a": 0, "only_b": 0})
        pair["only_a"] += a["correct"] and not b["correct"]
        pair["only_b"] += b["correct"] and not a["correct"]
    return {spec: {**c, "p": mcnemar(c["only_a"], c["only_b"])} for spec, c in counts.items()}
