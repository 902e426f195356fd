"""Exercises of the evaluation notebooks: the numbers that the long-context and passkey results
report.

``perplexity`` (exp of the mean cross-entropy over the targets that count), ``score_passkey``
(is the first number of an answer the key?), ``parse_length`` (``"4096"`` or ``"32x"`` as a
number of tokens) and ``relative_drop`` (what a memory of ``M`` tokens saves, ``1 - ppl(M) /
ppl(0)``, pooled over the documents: the ``drop`` of ``perplexity.perplexity_vs_memory``). See
``fot_edu.teaching.exercises`` for how a check works.
"""
from __future__ import annotations

import numbers
import re

import torch
import torch.nn.functional as F

from fot_edu.data.passkey import score_passkey as _library_score_passkey
from fot_edu.data.tokenizer import IGNORE
from fot_edu.evaluation.passkey import parse_length as _library_parse_length
from fot_edu.evaluation.perplexity import relative_drop as _library_relative_drop
from fot_edu.teaching.assignments import Exercise, number_problem, randn, to_float

__all__ = ["perplexity", "score_passkey", "parse_length", "relative_drop"]


# -- perplexity (the long-context notebook) -----------------------------------------------------

def _perplexity_cases() -> list[dict]:
    gen = torch.Generator().manual_seed(7)
    cases = []  # (b, n, vocab, share of ignored targets): none, most, all but one
    for b, n, vocab, ignored in [(2, 6, 7, 0.3), (1, 5, 4, 0.0), (3, 4, 11, 0.6), (1, 1, 2, 0.0),
                                 (2, 3, 5, 1.0)]:
        targets = torch.randint(0, vocab, (b, n), generator=gen)
        drop = torch.rand(b, n, generator=gen) < ignored
        drop[0, 0], drop[-1, -1] = ignored > 0, False  # one ignored (where any are), one kept
        cases.append(dict(logits=randn(gen, b, n, vocab, scale=2.0), targets=targets.masked_fill(drop, IGNORE)))
    return cases


def _nll(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """The cross-entropy over the kept targets, in nats."""
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE, reduction=reduction)


def _kept(a: dict, scores: torch.Tensor | None = None) -> torch.Tensor:
    """Each kept target's score, 1-d: its log-probability, or its entry of ``scores``."""
    keep = a["targets"] != IGNORE
    scores = torch.log_softmax(a["logits"], dim=-1) if scores is None else scores
    return scores[keep].gather(-1, a["targets"][keep][:, None])[:, 0]


perplexity = Exercise(
    "perplexity", "(logits, targets) -> float", _perplexity_cases,
    reference=lambda **a: _nll(**a).exp().item(), convert=to_float,
    compare=lambda got, expected, a: number_problem(got, expected),
    mistakes=[
        ("the ignored targets counted: average the loss over the kept targets (targets != -100) "
         "only, not over all b * n positions (reduction='none' then .mean() counts them as zeros).",
         lambda a, got: (_nll(**a, reduction="sum") / a["targets"].numel()).exp()),
        ("exp of the SUM of the losses: perplexity is exp of their MEAN.",
         lambda a, got: _nll(**a, reduction="sum").exp()),
        ("the loss itself, not exponentiated: perplexity is exp(mean cross-entropy).",
         lambda a, got: _nll(**a)),
        ("the probabilities averaged (1 / mean p): perplexity averages the LOG-probabilities, "
         "exp(-mean log p), a geometric mean.", lambda a, got: 1 / _kept(a).exp().mean()),
        ("the probabilities averaged, not their logs (exp(-mean p)): perplexity is "
         "exp(-mean log p).", lambda a, got: (-_kept(a).exp().mean()).exp()),
        ("the sign: exp(mean log p) is 1 / perplexity; the loss is the NEGATIVE log-probability.",
         lambda a, got: _kept(a).mean().exp()),
        ("the raw logits taken as log-probabilities: take log_softmax over the vocabulary first "
         "(F.cross_entropy does it for you).", lambda a, got: (-_kept(a, a["logits"]).mean()).exp()),
        ("2 ** mean loss: F.cross_entropy is in nats (natural log), so perplexity is exp(mean), "
         "not 2 ** mean (that is for a loss in bits, log2).", lambda a, got: 2 ** _nll(**a)),
        ("the targets shifted once more: targets[:, t] is already the token after position t, "
         "so logits[:, t] goes with targets[:, t].",
         lambda a, got: _nll(a["logits"][:, :-1], a["targets"][:, 1:]).exp()),
    ],
    against="exp of F.cross_entropy(..., ignore_index=-100)",
    hint_text="""
        Keep the positions whose target is not -100 (fot_edu.data.tokenizer.IGNORE): keep = targets
        != -100, then logits[keep] is (kept, vocab) and targets[keep] is (kept,). The mean
        cross-entropy over them (F.cross_entropy, in nats) is the mean negative log-probability
        of the right token; perplexity is its exp, as a Python float (.item()).""",
    solution_source='''
        def perplexity(logits, targets):
            keep = targets != -100                                 # fot_edu.data.tokenizer.IGNORE
            nll = F.cross_entropy(logits[keep], targets[keep])     # mean over kept targets, nats
            return torch.exp(nll).item()
        ''')


# -- score_passkey (the passkey notebook) -------------------------------------------------------

def _first_number(text: str) -> str:
    match = re.search(r"\d+", text)
    return match.group() if match else ""


def _as_bool(x) -> bool:
    if isinstance(x, bool) or (torch.is_tensor(x) and x.dtype == torch.bool and x.numel() == 1):
        return bool(x)
    raise TypeError(f"expected True or False, got {type(x).__name__}")


score_passkey = Exercise(
    "score_passkey", "(generated_text, key) -> bool", lambda: [
        dict(generated_text=text, key=key) for text, key in
        [(" 42532. Remember", 42532), ("42532", 42532), (" 142532", 42532), (" 425321", 42532),
         (" 1234 42532", 42532), (" 4253", 42532), (" the key", 42532), ("", 42532), ("\n7.", 7)]],
    reference=lambda **a: _library_score_passkey(**a), convert=_as_bool,
    compare=lambda got, expected, a: None if got == expected else f"expected {expected}, got {got}",
    mistakes=[
        ("the first digits only: ' 425321' starts with the key but is another number. Compare the "
         "whole first number (re.search(r'\\d+', ...)).",
         lambda a, got: _first_number(a["generated_text"])[:len(str(a["key"]))] == str(a["key"])),
        ("any number equal to the key: only the FIRST number of the answer counts ('1234 42532' "
         "answered 1234).", lambda a, got: str(a["key"]) in re.findall(r"\d+", a["generated_text"])),
        ("the leading digits of the key accepted: ' 4253' is a different number, the whole key "
         "must be there.", lambda a, got: _first_number(a["generated_text"]) != ""
         and str(a["key"]).startswith(_first_number(a["generated_text"]))),
        ("a substring test (str(key) in text): '142532' contains the key but is another number. "
         "Take the first number and compare it whole.",
         lambda a, got: str(a["key"]) in a["generated_text"]),
        ("False where the first number IS the key: convert the matched text before comparing "
         "('42532' == 42532 is False in Python; int('42532') == 42532 is True).",
         lambda a, got: False),
    ],
    against="fot_edu.data.passkey.score_passkey",
    hint_text="""
        Find the first run of digits: re.search(r"\\d+", generated_text) returns a match (or None
        when there is no digit at all). The answer is right when that whole number, as an int,
        equals key: not a part of it, not a later number.""",
    solution_source='''
        import re

        def score_passkey(generated_text, key):
            match = re.search(r"\\d+", generated_text)            # the first number, if any
            return match is not None and int(match.group()) == key
        ''')


# -- parse_length (the passkey notebook) --------------------------------------------------------

def _as_number(x) -> int | float:
    if torch.is_tensor(x) and x.numel() == 1:
        x = x.item()
    if isinstance(x, numbers.Real) and not isinstance(x, bool):
        return int(x) if isinstance(x, numbers.Integral) else float(x)
    raise TypeError(f"expected an int (a number of tokens), got {type(x).__name__}")


def _tokens_problem(got: int | float, expected: int, a: dict) -> str | None:
    if isinstance(got, float):
        return f"expected an int (a number of tokens), got the float {got!r}"
    return None if got == expected else f"expected {expected}, got {got}"


def _length(a: dict, context: int | None = None, whole: bool = False, cast=int) -> int | float:
    """parse_length with one part changed: the training context (2 * window tokens), the
    multiple truncated to a whole number first, or the type of an ``x`` result."""
    spec, context = a["spec"], 2 * a["window"] if context is None else context
    if not spec.endswith("x"):
        return int(spec)
    multiple = float(spec[:-1])
    return cast((int(multiple) if whole else multiple) * context)


parse_length = Exercise(
    "parse_length", "(spec, window) -> int", lambda: [
        dict(spec=spec, window=window) for spec, window in
        [("4096", 128), ("32x", 128), ("1.5x", 100), ("1x", 64), ("0.5x", 10), ("2.5x", 4), ("1", 7)]],
    reference=lambda **a: _library_parse_length(**a), convert=_as_number, compare=_tokens_problem,
    mistakes=[
        ("x times the window: the training context is 2 * window (C_prev + C_curr, what the model "
         "saw at once), so '32x' is 32 * 2 * window tokens.", lambda a, got: _length(a, context=a["window"])),
        ("a float result: a number of tokens is an int, int(...) it.",
         lambda a, got: _length(a, cast=float)),
        ("the multiple truncated before multiplying: '1.5x' is 1.5 * 2 * window, not "
         "1 * 2 * window; parse it with float(), take int() of the product.",
         lambda a, got: _length(a, whole=True)),
        ("the multiple taken as a number of tokens: '32x' means 32 training contexts, "
         "32 * 2 * window tokens.", lambda a, got: _length(a, context=1)),
    ],
    against="fot_edu.evaluation.passkey.parse_length",
    hint_text="""
        Two forms: a plain count ("4096" -> int("4096")), or a multiple of the training context
        ending in x ("32x", "1.5x"). The training context is 2 * window tokens (C_prev and
        C_curr together), so "32x" is float("32") * 2 * window, as an int.""",
    solution_source='''
        def parse_length(spec, window):
            if spec.endswith("x"):                                  # a multiple of the context
                return int(float(spec[:-1]) * 2 * window)           # 2 * window: C_prev + C_curr
            return int(spec)                                        # a token count
        ''')


# -- relative_drop (the LongLLaMA notebook) -----------------------------------------------------

def _drop_cases() -> list[dict]:
    gen = torch.Generator().manual_seed(8)
    cases = []  # documents, mean loss without memory, what memory changes it by per document
    for docs, loss, change in [(3, 1.4, -0.15), (5, 2.0, -0.05), (2, 1.1, 0.08), (1, 1.6, -0.2),
                               (4, 1.3, 0.0)]:
        tokens = torch.randint(200, 5000, (docs,), generator=gen).double()  # unequal documents
        without = loss + 0.4 * torch.rand(docs, generator=gen, dtype=torch.float64)
        with_memory = without + change * (0.5 + torch.rand(docs, generator=gen, dtype=torch.float64))
        cases.append(dict(with_memory=torch.stack([with_memory * tokens, tokens], -1),
                          without_memory=torch.stack([without * tokens, tokens], -1)))
    return cases


def _ppl(units: torch.Tensor, per_doc: bool = False) -> torch.Tensor:
    """Pooled perplexity of ``(docs, 2)`` units (``exp(sum nll / sum tokens)``), or each
    document's own (``per_doc``)."""
    if per_doc:
        return (units[:, 0] / units[:, 1]).exp()
    return (units[:, 0].sum() / units[:, 1].sum()).exp()


def _pooled_loss(units: torch.Tensor) -> torch.Tensor:
    """The mean loss over all the documents' tokens, ``sum nll / sum tokens``."""
    return units[:, 0].sum() / units[:, 1].sum()


def _mean_loss(units: torch.Tensor) -> torch.Tensor:
    """The documents' mean losses averaged with equal weight (not by their tokens)."""
    return (units[:, 0] / units[:, 1]).mean()


relative_drop = Exercise(
    "relative_drop", "(with_memory, without_memory) -> float", _drop_cases,
    reference=lambda **a: float(_library_relative_drop(
        torch.cat([a["with_memory"], a["without_memory"]], -1)[None])[0]),
    convert=to_float, compare=lambda got, expected, a: number_problem(got, expected),
    mistakes=[
        ("the documents' own drops averaged: pool first. Perplexity over all the documents is "
         "exp(total loss / total tokens) with memory and without; the drop is 1 minus their ratio "
         "(a long document counts for its tokens, as the shipped figures do).",
         lambda a, got: (1 - _ppl(a["with_memory"], True) / _ppl(a["without_memory"], True)).mean()),
        ("the documents' mean losses averaged with equal weight: sum the losses and the tokens "
         "over the documents first (exp(sum nll / sum tokens)), so that every token counts once.",
         lambda a, got: 1 - (_mean_loss(a["with_memory"]) - _mean_loss(a["without_memory"])).exp()),
        ("the ratio upside down: the drop is 1 - ppl(M) / ppl(0), the share of the memoryless "
         "perplexity that memory removes (positive when memory helps).",
         lambda a, got: 1 - _ppl(a["without_memory"]) / _ppl(a["with_memory"])),
        ("a rise, not a drop (the sign): ppl(M) / ppl(0) - 1 is positive when memory HURTS; the "
         "drop is 1 - ppl(M) / ppl(0).", lambda a, got: _ppl(a["with_memory"]) / _ppl(a["without_memory"]) - 1),
        ("the ratio itself: subtract it from 1 (1 - ppl(M) / ppl(0)), so that no change gives 0.",
         lambda a, got: _ppl(a["with_memory"]) / _ppl(a["without_memory"])),
        ("the losses compared, not the perplexities: 1 - loss(M) / loss(0) uses the mean "
         "cross-entropies; exponentiate them first (perplexity = exp(mean loss)).",
         lambda a, got: 1 - _pooled_loss(a["with_memory"]) / _pooled_loss(a["without_memory"])),
        ("an absolute difference, ppl(0) - ppl(M): the drop is relative, 1 - ppl(M) / ppl(0), "
         "so that models of different perplexities can be compared.",
         lambda a, got: _ppl(a["without_memory"]) - _ppl(a["with_memory"])),
    ],
    against="the drop of fot_edu.evaluation.perplexity.perplexity_vs_memory",
    hint_text="""
        Each row is one document: [its summed negative log-likelihood (nats), its token count].
        Pool the documents: loss = sum of column 0 / sum of column 1, perplexity = exp(loss), once
        with memory and once without (the same tokens are scored both times). The drop is
        1 - ppl(M) / ppl(0), a Python float: positive when memory helps, 0 when it changes
        nothing, negative when it hurts.""",
    solution_source='''
        def relative_drop(with_memory, without_memory):
            ppl_m = torch.exp(with_memory[:, 0].sum() / with_memory[:, 1].sum())       # pooled
            ppl_0 = torch.exp(without_memory[:, 0].sum() / without_memory[:, 1].sum())
            return (1 - ppl_m / ppl_0).item()
        ''')
