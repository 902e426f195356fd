r"""Reading inputs far longer than the training window: perplexity as memory grows, and passkey.

Paper: Focused Transformer §4.1 and §5.1 (perplexity against memory size, Fig. 5/6), Fig. 1
(passkey retrieval far beyond the training context).

Both stream a long input window by window (``fot_edu.streaming``): each window's memory queries
search the kNN memory, then its keys join it. :func:`perplexity_vs_memory` measures the same
tokens of held-out documents with a memory of 0, 1k, 4k, ... tokens of their own text;
:func:`passkey_accuracy` hides a number in filler text and asks for it at the
end. Every figure comes with its sample size and a 95% interval (``fot_edu.stats``).

Passkey, fairly: :func:`passkey_prompts` draws each length's keys and depths from its own seed,
and every reading (top-k, dense, no memory) reads that same set, so two readings can be compared
prompt by prompt (:func:`passkey_paired`). "No memory" is the same window-by-window reading with
memory off, never one window longer than the model was trained on.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import TrainConfig
from .datasets import eval_documents, iter_stream_windows, pad_token
from .perplexity import nll_rows, perplexities
from .model import FoTModel
from .passkey import filler_chars_for_tokens, passkey_prompt, score_passkey
from .stats import bootstrap, exp_ratio_of_sums, mcnemar, wilson
from .streaming import generate, read_window
from .tokenizer import decode, encode_tensor


@dataclass(frozen=True)
class _Span:
    """The part of a document a memory size reads: ``tokens``/``targets`` from some offset on."""

    id: int
    tokens: torch.Tensor
    targets: torch.Tensor

    @property
    def num_tokens(self) -> int:
        return int(self.tokens.shape[0])


def relative_drop(units: torch.Tensor) -> torch.Tensor:
    """For units ``(nll with memory, tokens, nll without, tokens)``: 1 - perplexity ratio."""
    return 1 - exp_ratio_of_sums(units[..., :2]) / exp_ratio_of_sums(units[..., 2:4])


@torch.no_grad()
def perplexity_vs_memory(model: FoTModel, cfg: TrainConfig, memory_tokens=(0, 1024, 4096, 16384), *,
                         score_from: int | None = None, num_docs: int | None = None,
                         max_tokens_per_doc: int | None = None, batch_size: int = 8,
                         k: int | None = None, device="cpu", progress: bool = False) -> dict:
    """Perplexity of held-out documents against the size of a single-document memory (§5.1).

    Every memory size scores **the same tokens**: each document's windows from ``score_from``
    tokens on (default: the largest size, rounded up to whole windows), up to
    ``max_tokens_per_doc`` (default: the whole document). A memory of ``M`` tokens (a FIFO, so it
    holds the ``M`` tokens before the window read) starts reading ``M`` tokens before
    ``score_from``, so it is full when scoring starts; ``M = 0`` reads the window alone. Documents
    shorter than ``score_from`` plus one window are left out; ``num_docs`` keeps the first ones.

    Returns ``{"perplexity": {M: p}, "drop": {M: 1 - p(M) / p(0)}, "n": ..., "ci95": ...}``:
    ``n`` counts documents, the intervals resample them (bootstrap; ``drop`` paired, the same
    documents for both sizes). ``drop`` needs 0 among the sizes.
    """
    sizes = sorted({int(m) for m in memory_tokens})
    if not sizes or sizes[0] < 0:
        raise ValueError(f"memory_tokens={memory_tokens!r} is not allowed: token counts >= 0")
    n = cfg.data.window
    start = score_from if score_from is not None else -(-sizes[-1] // n) * n
    if not (isinstance(start, int) and start >= sizes[-1] and start % n == 0):
        raise ValueError(f"score_from={score_from!r} is not allowed: a multiple of the window "
                         f"({n}) of at least the largest memory size ({sizes[-1]})")
    end = max_tokens_per_doc
    if end is not None and end < start + n:
        raise ValueError(f"max_tokens_per_doc={end!r} is not allowed: at least score_from + one "
                         f"window = {start + n}")
    docs = [d for d in eval_documents(cfg.data, "eval") if d.num_tokens >= start + n]
    docs = docs[:num_docs] if num_docs is not None else docs
    if not docs:
        raise ValueError(f"no held-out document of {cfg.data.task!r} is longer than score_from + "
                         f"one window ({start + n} tokens): lower the memory sizes or score_from")
    model = model.to(device).eval()
    memory_model = bool(model.cfg.memory_layers)
    sums = {}
    for size in tqdm(sizes, desc="memory sizes", disable=not progress):
        begin = start - -(-size // n) * n  # whole windows, so windows line up with score_from
        spans = [_Span(d.id, d.tokens[begin:end], d.targets[begin:end]) for d in docs]
        memories = model.new_memories(batch_size, size) if size and memory_model else {}
        offset = torch.zeros(batch_size, dtype=torch.long)
        per_doc = {d.id: torch.zeros(2, dtype=torch.float64) for d in docs}
        for step in iter_stream_windows(spans, batch_size, n, pad_token(cfg.data)):
            offset = torch.where(step.new_doc, 0, offset + n)
            out = read_window(model, step.tokens.to(device), memories, k=k,
                              doc_ids=step.doc_ids.to(device), reset=step.new_doc)
            rows = nll_rows(out.logits, step.targets.to(device)).double()
            for r in torch.nonzero(step.active & (offset + begin >= start)).flatten().tolist():
                per_doc[int(step.doc_ids[r])] += rows[r]
        sums[size] = torch.stack([per_doc[d.id] for d in docs])
    out = perplexities(sums)
    if 0 in sums:
        paired = {size: torch.cat([sums[size], sums[0]], -1) for size in sizes if size}
        out["drop"] = {size: float(relative_drop(u[None])[0]) for size, u in paired.items()}
        out["n"]["drop"] = {size: len(u) for size, u in paired.items()}
        out["ci95"]["drop"] = {size: bootstrap(u, relative_drop) for size, u in paired.items()}
    return {**{key: value for key, value in out.items() if key not in ("n", "ci95")},
            "n": out["n"], "ci95": out["ci95"]}


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
    and the depth of its key line (:func:`fot_edu.passkey.passkey_prompt`). So keys and depths
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
    :func:`fot_edu.passkey.passkey_prompt`): ``[{"key", "generated", "correct"}, ...]``.

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
    A answered, only B answered, and the exact McNemar p-value (``fot_edu.stats.mcnemar``)."""
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
