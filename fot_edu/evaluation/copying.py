"""Copying inside the window: the skill a memory layer extends, measured and taught.

Reading memory is copying from far away: a query finds the earlier occurrence of what it is
reading and takes what followed (passkey: find "The pass key is", copy the number after it).
LongLLaMA's recipe (``fot_edu.training.longllama``) turns layers of a model that can already do this in
its own window into memory layers; a base that cannot copy gives them nothing to extend.

* :func:`copy_gap` measures the skill: a span is read twice in one window, and the loss on the
  second copy is compared with the loss on the first. A copying model predicts the second copy
  almost for free (gap near the first copy's loss); a model that only knows local statistics
  finds both equally hard (gap near 0).
* :func:`induction_scores` finds the heads that do it: on a random string read twice, the
  attention each layer's heads pay from the second copy's byte ``i`` to byte ``i + 1`` of the
  first copy (the byte that followed the same byte last time: Olsson et al. 2022's induction
  score). 1 is a perfect induction head; a head that attends uniformly scores about ``1 / t``.
Data that rewards copying (``fot_edu.data.repeats.with_repeats``) is what
``experiments/copy_emergence.py`` trains the text models' architecture on, recording when (if at
all) copying appears.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fot_edu.config import TrainConfig
from fot_edu.data.batches import eval_documents
from fot_edu.data.repeats import PRINTABLE
from fot_edu.evaluation.stats import bootstrap
from fot_edu.model import FoTModel

__all__ = ["copy_gap", "induction_scores", "induction_pattern_score"]


def _check_span(span: int, gap: int, window: int) -> None:
    for name, value, low in (("span", span, 2), ("gap", gap, 0)):
        if not (isinstance(value, int) and value >= low):
            raise ValueError(f"{name}={value!r} is not allowed: an integer >= {low}")
    if 2 * span + gap > window:
        raise ValueError(f"span={span}, gap={gap} are not allowed with window={window}: both copies "
                         f"and the gap (2 * span + gap = {2 * span + gap}) must fit in one window")


@torch.no_grad()
def copy_gap(model: FoTModel, cfg: TrainConfig, *, rows: int = 64, span: int = 100, gap: int = 56,
             content: str = "text", seed: int = 0) -> dict:
    """Loss (nats per byte) on the first and the second copy of a span read twice in one window.

    Each of ``rows`` rows is ``span`` bytes, ``gap`` other bytes, the same ``span`` bytes again
    (``content="text"``: all three from held-out book text of ``cfg``'s corpus, the span and the
    gap from random places of one document; ``"random"``: random printable bytes, which nothing
    but copying predicts). Scored: bytes 2..span of each copy (the first byte of a copy has
    nothing to copy from yet). ``gap`` = first - second, per row; interval: bootstrap over rows.
    """
    if content not in ("text", "random"):
        raise ValueError(f"content={content!r} is not allowed: 'text' or 'random'")
    if cfg.model.vocab_size != 256:
        raise ValueError(f"copy_gap needs a byte-level model (vocab_size 256), not "
                         f"vocab_size={cfg.model.vocab_size}")
    _check_span(span, gap, cfg.data.window)
    gen = torch.Generator().manual_seed(seed)
    if content == "text":
        docs = [d for d in eval_documents(cfg.data, "eval") if d.num_tokens > 2 * span + gap + 1]
        made = []
        for i in range(rows):
            doc = docs[i % len(docs)]
            start = int(torch.randint(0, doc.num_tokens - span, (1,), generator=gen))
            other = int(torch.randint(0, doc.num_tokens - gap, (1,), generator=gen))
            piece = doc.tokens[start:start + span]
            made.append(torch.cat([piece, doc.tokens[other:other + gap], piece]))
        tokens = torch.stack(made)
    else:
        piece = torch.randint(*PRINTABLE, (rows, span), generator=gen)
        tokens = torch.cat([piece, torch.randint(*PRINTABLE, (rows, gap), generator=gen), piece], 1)
    weight = next(model.parameters(), None)
    if weight is not None:  # the model's device: CPU or GPU
        tokens = tokens.to(weight.device)
    logits = model.eval()(tokens).logits[:, :-1]
    nll = F.cross_entropy(logits.flatten(0, 1).float(), tokens[:, 1:].flatten(), reduction="none")
    nll = nll.cpu().view(rows, -1)
    first = nll[:, :span - 1].mean(-1)  # predicting bytes 2..span of the first copy
    second = nll[:, span + gap:2 * span + gap - 1].mean(-1)  # the same bytes, the second time
    units = torch.stack([first, second], -1).double()
    return {"first_copy_nll": first.mean().item(), "second_copy_nll": second.mean().item(),
            "gap": (first - second).mean().item(),
            "gap_ci95": bootstrap(units, lambda r: (r[..., 0] - r[..., 1]).mean(-1)),
            "rows": rows, "content": content}


def induction_pattern_score(weights: torch.Tensor, span: int, gap: int) -> torch.Tensor:
    """Mean attention from the second copy's byte ``i`` to the first copy's byte ``i + 1``.

    ``weights``: ``(..., t, t)`` attention (query, key) of rows laid out as ``span`` bytes,
    ``gap`` bytes, the same ``span`` bytes again. Returns ``(...)``: the mean over
    ``i = 0..span-2`` of ``weights[..., span + gap + i, i + 1]``.
    """
    _check_span(span, gap, weights.shape[-1])
    i = torch.arange(span - 1, device=weights.device)
    return weights[..., span + gap + i, i + 1].mean(-1)


def _attention_weights(attn, x: torch.Tensor) -> torch.Tensor:
    """``(b, h, n, n)``: the causal attention of ``attn`` (a ``fot_edu.layer.Attention``) over
    the window ``x`` ``(b, n, D)`` read alone (no memory), as its forward computes it."""
    q, k, _ = attn.qkv(x)
    if not attn.is_memory or attn.rope_kept:  # rotated q, k; plain dot products
        q, k = q * attn.cfg.head_dim ** -0.5, (attn.rope(k) if attn.is_memory else k)
    else:  # unit q, k with a temperature per head
        q = q * attn.log_tau.exp().view(1, -1, 1, 1)
    n = x.shape[1]
    logits = (q @ k.transpose(-1, -2)).float()
    causal = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
    return torch.softmax(logits.masked_fill(~causal, float("-inf")), dim=-1)


@torch.no_grad()
def induction_scores(model: FoTModel, *, rows: int = 16, span: int = 100, gap: int = 56,
                     seed: int = 0) -> dict:
    """Induction score of every layer and head on ``rows`` random printable strings of ``span``
    bytes, ``gap`` random bytes, the same string again (:func:`induction_pattern_score`).

    Returns ``{"scores": [[layer 0's heads], [layer 1's heads], ...], "best": (layer, head),
    "uniform", "rows", "span", "gap"}``; scores are means over rows, read without memory.
    ``uniform`` is the score of a head that spreads its attention evenly over the causal past
    (``1 / (t + 1)`` at query position ``t``): a head near it does not look for copies at all.
    """
    _check_span(span, gap, model.cfg.max_window)
    gen = torch.Generator().manual_seed(seed)
    piece = torch.randint(*PRINTABLE, (rows, span), generator=gen)
    tokens = torch.cat([piece, torch.randint(*PRINTABLE, (rows, gap), generator=gen), piece], 1)
    weight = next(model.parameters())
    inputs = {}
    hooks = [block.attn.register_forward_pre_hook(
        lambda module, args, i=i: inputs.__setitem__(i, args[0])) for i, block in enumerate(model.blocks)]
    try:
        model.eval()(tokens.to(weight.device))
    finally:
        for hook in hooks:
            hook.remove()
    scores = torch.stack([induction_pattern_score(_attention_weights(block.attn, inputs[i]), span, gap)
                          .mean(0) for i, block in enumerate(model.blocks)]).cpu()  # (layers, h)
    best = divmod(int(scores.argmax()), scores.shape[1])
    positions = torch.arange(span + gap, 2 * span + gap - 1, dtype=torch.float64)  # the queries
    return {"scores": [[round(v, 4) for v in layer] for layer in scores.tolist()], "best": list(best),
            "uniform": round(float((1 / (positions + 1)).mean()), 4), "rows": rows, "span": span,
            "gap": gap}
