"""Data that rewards copying: random strings written twice into rows of a batch.

A model learns to copy from its context (an induction head: find the earlier occurrence of what it
is reading, predict what followed) only when its data pays for it. Book text pays little: it
rarely repeats a long stretch inside one window. Here a string of random printable bytes is
written twice into a window, at random places, so that only looking back predicts the second
copy; written into random bytes instead of text (``background="random"``) it is the classic
setting in which small transformers learn copying. ``across=True`` puts the first copy in the
window before (``C_prev``), so that only a memory layer reading it predicts the second.
``lead > 0`` copies the ``lead`` bytes of text before the first copy too, in front of the second:
finding that phrase again predicts the string from its first byte on, as finding "The pass key
is" predicts a passkey's first digit (mixes ``phrases``, inside one window, and ``cross-phrase``).

A training run names its data by a schedule (``DataConfig.repeats``: ``((step, mix), ...)``, the
mixes of :data:`MIXES`), applied to its training batches by :func:`scheduled_repeats`; for example
``((0, "synthetic"), (800, "phrases"))`` (``text-vanilla``'s): copying on random bytes first, then
phrases and strings in book text.

The copy gap (``fot_edu.evaluation.copying``) measures the skill this data teaches.
"""
from __future__ import annotations

import numpy as np
import torch

from fot_edu.data.batches import Batch

__all__ = ["with_repeats", "scheduled_repeats", "MIXES", "PRINTABLE"]

PRINTABLE = (32, 127)  # the byte range of random strings: printable ASCII
MIXES = {  # the arguments of with_repeats for each mix a DataConfig.repeats schedule names
    "none": None,  # the corpus as it is
    "synthetic": dict(share=1.0, background="random"),  # every row: random bytes, a string twice
    "strings": dict(share=0.5),  # half the rows: a string twice inside each window of book text
    "cross": dict(share=0.5, across=True),  # half the rows: a string in C_prev, again in C_curr
    "cross-phrase": dict(share=0.5, across=True, lead=24),  # ... with the 24 bytes before it
    "phrases": dict(share=0.5, lead=24),  # half the rows: a phrase and a string, twice in a window
}


def with_repeats(batch: Batch, share: float, rng: np.random.Generator, *, lengths=(16, 64),
                 background: str = "text", across: bool = False, lead: int = 0) -> Batch:
    """``batch`` with a random string written twice into every window of a ``share`` of its rows.

    In each chosen window a string of ``L`` random printable bytes (``L`` uniform in
    ``lengths``, inclusive) is written at a random place and again at a random later place of the
    same window, so the distance varies and only the string's bytes, not their position, say
    what comes next. ``background="text"`` keeps the rest of the row (book text);
    ``"random"`` replaces it with random bytes too (the rows then teach nothing but copying).
    ``across=True`` writes the first copy into window ``j - 1`` and the second into window ``j``
    instead (for pairs: ``C_prev``, then ``C_curr``), so that only reading the window before (a
    memory layer's job) predicts the second copy. ``lead``: the ``lead`` bytes before the first
    copy are copied with it, so the second copy is a phrase of text (of ``C_prev``, with
    ``across``) followed by the random string; finding the phrase again predicts the string from
    its first byte on (a passkey's shape: "The pass key is", then the number).
    Targets follow the tokens (the next byte of the row). Returns a new batch; ``rng`` decides
    everything, so a seeded generator makes the same batch again.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share={share!r} is not allowed: a number in [0, 1]")
    if background not in ("text", "random"):
        raise ValueError(f"background={background!r} is not allowed: 'text' or 'random'")
    b, w, n = batch.tokens.shape
    low, high = lengths
    if across and w < 2:
        raise ValueError(f"across=True is not allowed with {w} window a row: it needs at least 2")
    if not (isinstance(low, int) and 1 <= low <= high and 2 * high <= n):
        raise ValueError(f"lengths={lengths!r} is not allowed with window={n}: 1 <= low <= high "
                         f"and two strings of the longest length must fit (2 * high <= {n})")
    room = lead + high if across else 2 * (lead + high)  # what one window must hold
    if not (isinstance(lead, int) and lead >= 0 and room <= n):
        raise ValueError(f"lead={lead!r} is not allowed: an integer >= 0 with the phrase and the "
                         f"longest string {'' if across else 'twice '}in a window of {n}")
    flat = torch.cat([batch.tokens.reshape(b, -1), batch.targets.reshape(b, -1)[:, -1:]], 1).clone()
    for row in np.flatnonzero(rng.random(b) < share):
        if background == "random":
            flat[row] = torch.from_numpy(rng.integers(*PRINTABLE, flat.shape[1]))
        for j in range(1 if across else 0, w):
            size = int(rng.integers(low, high + 1))
            if across:  # anywhere in window j - 1 (after its lead), then anywhere in window j
                first = (j - 1) * n + int(rng.integers(lead, n - size + 1))
                second = j * n + int(rng.integers(0, n - size - lead + 1))
            else:  # second: where the copied phrase starts (lead bytes before the string)
                first = j * n + int(rng.integers(lead, n - 2 * size - lead + 1))
                second = int(rng.integers(first + size + lead, j * n + n - size + 1)) - lead
            string = torch.from_numpy(rng.integers(*PRINTABLE, size))
            flat[row, first:first + size] = string
            flat[row, second:second + lead + size] = flat[row, first - lead:first + size]
    return Batch(flat[:, :-1].reshape(b, w, n), flat[:, 1:].reshape(b, w, n), batch.doc_ids,
                 batch.offsets)


def scheduled_repeats(batch: Batch, schedule, step: int, seed: int = 0) -> Batch:
    """Training batch ``step`` with the mix ``schedule`` (``DataConfig.repeats``) names for it:
    the last ``(start, mix)`` with ``start <= step``; before the first, the batch as it is. The
    strings are drawn from ``(seed, step)``, so a run and its resumption write the same ones."""
    current = [mix for start, mix in schedule if start <= step]
    mix = MIXES[current[-1]] if current else None
    if mix is None:
        return batch
    return with_repeats(batch, rng=np.random.default_rng([int(seed), int(step), 11]), **mix)
