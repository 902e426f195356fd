"""Passkey retrieval and the retrieval curriculum: find a number hidden far back, and copy it.

**Passkey retrieval** (Fig. 1; template of Mohtashami & Jaggi 2023): a random number K hidden in
a long stretch of filler text, asked for at the end. :func:`passkey_prompt` builds it exactly,
:func:`filler_chars_for_tokens` sizes it to a token budget, :func:`score_passkey` grades an answer.

**Retrieval curriculum** (task ``"retrieval"``, what ``passkey-fot`` is trained on). It shares
nothing with the passkey template but the skill: ``C_prev`` is book text (the ``books`` corpus)
with ``E`` needles ``"{phrase} {number}."`` spliced in, each phrase a random run of 2-5 words of
another book passage; ``C_curr`` is other book text in which every phrase comes back, and the
loss is only on the ``" {number}."`` that follows it. No instruction line, no repeated filler, no
"pass key" wording: a model that passes the passkey test has learned to find the earlier
occurrence of what it is reading, through memory, and copy what came next.
"""
from __future__ import annotations

import re

import numpy as np
import torch

from fot_edu.config import DataConfig
from fot_edu.data.tokenizer import IGNORE

PASSKEY_INSTRUCTION = ("There is an important info hidden inside a lot of irrelevant text. Find it "
                       "and memorize them. I will quiz you about the important information there.")
PASSKEY_FILLER = ("The grass is green. The sky is blue. The sun is yellow. Here we go. "
                  "There and back again.")
PASSKEY_QUESTION = "What is the pass key? The pass key is"
PASSKEY_MAX = 50000


def passkey_line(key: int) -> str:
    return f"The pass key is {key}. Remember it. {key} is the pass key."


def filler_text(chars: int, block: str = PASSKEY_FILLER) -> str:
    """The first ``chars`` characters of ``block`` repeated (blocks joined by a space)."""
    repeats = chars // (len(block) + 1) + 1
    return " ".join([block] * repeats)[:chars]


def passkey_prompt(filler_chars: int, seed: int, *, depth: float | None = None,
                   filler: str = PASSKEY_FILLER, key: int | None = None,
                   key_range: tuple[int, int] = (1, PASSKEY_MAX),
                   instruction: str = PASSKEY_INSTRUCTION,
                   question: str = PASSKEY_QUESTION) -> tuple[str, int]:
    """``(prompt, K)``: the five lines instruction / filler / key line / filler / question.

    The ``filler_chars`` characters of filler are split at a uniformly random point between the
    prefix and the suffix; each part is the start of the repeated filler. K is uniform in 1..50000.
    Both come from ``numpy.random.default_rng(seed)``: the key first, then the split point.

    For new experiments: ``depth`` (0..1) puts the key line at that fraction of the filler
    instead; ``filler`` is the repeated block (any text, e.g. a book passage); ``key`` fixes K, or
    ``key_range`` (inclusive) draws it from another range (longer numbers); ``instruction`` and
    ``question`` change the wording (the defaults are the template of DESIGN §2).
    """
    if not (isinstance(filler_chars, int) and filler_chars >= 0):
        raise ValueError(f"filler_chars={filler_chars!r} is not allowed: an integer >= 0")
    if depth is not None and not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth={depth!r} is not allowed: a fraction in 0..1")
    low, high = key_range
    if not 0 <= low <= high:
        raise ValueError(f"key_range={key_range!r} is not allowed: (low, high) with 0 <= low <= high")
    if not filler:
        raise ValueError("filler='' is not allowed: some text to repeat")
    rng = np.random.default_rng(int(seed))
    drawn = int(rng.integers(low, high + 1))
    key = drawn if key is None else int(key)
    prefix_chars = int(rng.integers(0, filler_chars + 1)) if depth is None else round(depth * filler_chars)
    lines = [instruction, filler_text(prefix_chars, filler), passkey_line(key),
             filler_text(filler_chars - prefix_chars, filler), question]
    return "\n".join(lines), key


def filler_chars_for_tokens(target_tokens: int, key: int | None = None) -> int:
    """Filler length that makes the prompt ``target_tokens`` byte tokens long (at most that).

    The filler is ASCII, so one character is one token of the byte tokenizer. Without ``key`` the
    key line is sized for a 5-digit key: the prompt then lands at most 8 tokens under the target.
    """
    key_line = passkey_line(key if key is not None else PASSKEY_MAX)
    empty_prompt = "\n".join([PASSKEY_INSTRUCTION, "", key_line, "", PASSKEY_QUESTION])
    fixed = len(empty_prompt.encode("utf-8"))
    if not (isinstance(target_tokens, int) and target_tokens >= fixed):
        raise ValueError(f"target_tokens={target_tokens!r} is not allowed: at least {fixed}, "
                         f"the prompt without filler")
    return target_tokens - fixed


def score_passkey(generated_text: str, key: int) -> bool:
    """True when the first number in the generated continuation is exactly ``key``."""
    match = re.search(r"\d+", generated_text)
    return match is not None and int(match.group()) == int(key)


# ---------------------------------------------------------------------------------------------
# retrieval curriculum (passkey-fot's training data; see the module docstring)

def _passage(texts: list, length: int, rng: np.random.Generator) -> np.ndarray:
    """``length`` consecutive bytes of a random document of ``texts`` (byte arrays)."""
    doc = texts[int(rng.integers(len(texts)))]
    start = int(rng.integers(0, len(doc) - length + 1))
    return doc[start:start + length]


def _phrase(texts: list, rng: np.random.Generator) -> bytes:
    """2-5 whole words of a random passage, on one line."""
    while True:
        words = bytes(_passage(texts, 80, rng)).replace(b"\n", b" ").split()[1:-1]
        count = int(rng.integers(2, 6))
        if len(words) >= count:
            start = int(rng.integers(0, len(words) - count + 1))
            phrase = b" ".join(words[start:start + count])
            if len(phrase) >= 8:
                return phrase


def _splice(filler: np.ndarray, inserts: list, rng: np.random.Generator) -> tuple[np.ndarray, list]:
    """``filler`` with ``inserts`` (byte strings) put at random points, in order.

    Returns the bytes and the start offset of every insert."""
    cuts = np.sort(rng.integers(0, len(filler) + 1, size=len(inserts)))
    pieces, starts, pos, prev = [], [], 0, 0
    for cut, insert in zip(cuts, inserts):
        pieces.append(filler[prev:cut])
        pos += cut - prev
        starts.append(pos)
        pieces.append(np.frombuffer(insert, dtype=np.uint8))
        pos += len(insert)
        prev = cut
    pieces.append(filler[prev:])
    return np.concatenate(pieces), starts


def retrieval_pair(cfg: DataConfig, texts: list, rng: np.random.Generator):
    """One row of the retrieval curriculum: ``(tokens, targets)``, each ``(2, n)`` long.

    ``texts``: byte arrays (``np.uint8``) of book text, each longer than ``n``.
    """
    if cfg.task != "retrieval":
        raise ValueError(f"task={cfg.task!r} is not allowed here: 'retrieval'")
    n, count = cfg.window, cfg.entries_per_window
    phrases = [_phrase(texts, rng) for _ in range(count)]
    numbers = [b" %d." % int(rng.integers(1, PASSKEY_MAX + 1)) for _ in range(count)]
    needles = [p + a for p, a in zip(phrases, numbers)]
    room = n - sum(len(x) for x in needles)
    if room < 0:
        raise ValueError(f"entries_per_window={count} needles of up to {max(map(len, needles))} "
                         f"bytes do not fit a window of {n}: raise window or lower the count")
    prev, _ = _splice(_passage(texts, room, rng), needles, rng)
    order = rng.permutation(count)
    curr, starts = _splice(_passage(texts, room, rng), [needles[i] for i in order], rng)
    tokens = torch.from_numpy(np.stack([prev, curr]).astype(np.int64))
    targets = torch.full_like(tokens, IGNORE)
    for start, i in zip(starts, order):
        first = start + len(phrases[i])  # the answer " {number}." occupies first .. end - 1
        end = start + len(needles[i])
        targets[1, first - 1:end - 1] = tokens[1, first:end]
    return tokens, targets
