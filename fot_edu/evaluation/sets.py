"""Fixed evaluation sets: a model's figures are measured on data that does not change with the N
(distractors in memory) or d asked for, so figures at different N are paired, and two models are
read on the same data.

| figures                       | the fixed set                                            | n counts      |
|-------------------------------|----------------------------------------------------------|---------------|
| dictionary accuracy, r        | documents 0 .. D-1 of ``dictionary_eval_batch(seed=...)`` | value tokens, values, documents |
| r_d (``distraction``)         | groups of 32 held-out pairs at eval steps 1000, 1001, ... | pairs         |
| perplexity with distractors   | :func:`perplexity_eval_set`: every held-out window       | files         |

Distractors are drawn after the own data, never from the own document, and nested: N = 15 holds
N = 7's distractors and 8 more.
"""
from __future__ import annotations

import numpy as np
import torch

from fot_edu.config import DataConfig, TrainConfig
from fot_edu.data.batches import SPLITS, Batch, _corpus, _split, pad_token, training_batch
from fot_edu.data.corpora import CORPORA
from fot_edu.data.tokenizer import IGNORE


def eval_pairs(cfg: DataConfig, split: str = "eval") -> Batch:
    """Every window of every document of a corpus split but the first, as ``C_curr`` with the
    window before it as ``C_prev``: ``(P, 2, n)``, in document order, ``offsets`` where each
    ``C_prev`` starts. A document's last window may be short: ``pad_token`` fills it, with no
    targets; the last token has no target. Documents of at most ``n + 1`` tokens give no pair.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not allowed: one of {SPLITS}")
    if cfg.task in ("dictionary", "retrieval"):
        raise ValueError(f"task={cfg.task!r} is not allowed here: a corpus, one of {CORPORA}")
    n, pad = cfg.window, pad_token(cfg)
    tokens, targets, doc_ids, offsets = [], [], [], []
    for doc in _split(_corpus(cfg), cfg.large)[split]:
        length = doc.num_tokens
        windows = -(-(length - 1) // n)  # windows with at least one target
        if windows < 2:
            continue
        data = np.full(windows * n + 1, pad, dtype=np.int64)
        data[:length] = doc.byte_array
        after = data[1:].copy()
        after[length - 1:] = IGNORE
        x, y = data[:-1].reshape(windows, n), after.reshape(windows, n)
        tokens.append(np.stack([x[:-1], x[1:]], axis=1))
        targets.append(np.stack([y[:-1], y[1:]], axis=1))
        doc_ids += [doc.id] * (windows - 1)
        offsets += [j * n for j in range(windows - 1)]
    if not tokens:
        raise ValueError(f"no document of corpus {cfg.task!r} split {split!r} is longer than "
                         f"{n + 1} tokens (two windows of window={n})")
    return Batch(torch.from_numpy(np.concatenate(tokens)), torch.from_numpy(np.concatenate(targets)),
                 torch.tensor(doc_ids), torch.tensor(offsets))


def perplexity_eval_set(cfg: TrainConfig, max_distractors: int, *, batches: int | None = None,
                        seed: int = 1234, pool_per_doc: int = 8):
    """The fixed set behind ``perplexity.perplexity_with_distractors``.

    Returns ``(pairs, units, pool, pool_ids, chosen)``: ``pairs`` a ``Batch`` of ``(C_prev,
    C_curr)``; ``units`` ``(P,)`` the bootstrap unit of each pair; ``pool`` ``(D, n)`` windows that
    serve as distractors, with document ids ``pool_ids``; ``chosen`` ``(P, max_distractors)``
    the pool index of each pair's distractors, in order (nested: the first N are N's).

    Corpora: every held-out window but each file's first, as ``C_curr`` after the window before
    it (:func:`eval_pairs`), in a fixed shuffled order of which ``batches`` keeps the first
    ``16 * batches`` (None: all); units are files; distractors are windows of other files
    (``pool_per_doc`` random whole windows each), other files chosen per pair.
    Other tasks (retrieval): ``16 * batches`` (default 64) synthetic pairs at eval steps
    1234, ...; units are pairs; pair ``p``'s distractors are the ``C_prev`` of pairs
    ``p + 1, p + 2, ...``.
    """
    data = cfg.data
    if data.task in ("dictionary", "retrieval"):
        groups = [training_batch(data, "eval", 16, step=seed + i, seed=cfg.seed)
                  for i in range(batches or 4)]
        pairs = Batch.cat(groups)
        total = len(pairs.doc_ids)
        if max_distractors >= total:
            raise ValueError(f"{max_distractors} distractors is not allowed: at most {total - 1} "
                             f"(other pairs of the fixed set; raise batches)")
        chosen = (torch.arange(total)[:, None] + torch.arange(1, max_distractors + 1)) % total
        return pairs, torch.arange(total), pairs.tokens[:, 0], pairs.doc_ids, chosen
    pairs = eval_pairs(data, "eval")
    order = torch.from_numpy(np.random.default_rng([seed, 5]).permutation(len(pairs.doc_ids)))
    index = order if batches is None else order[:16 * batches]
    docs = sorted(set(pairs.doc_ids.tolist()))
    if max_distractors >= len(docs):
        raise ValueError(f"{max_distractors} distractors is not allowed: at most {len(docs) - 1} "
                         f"(other held-out files)")
    pool, pool_ids, where = [], [], {}
    for doc in docs:  # pool_per_doc random C_prev windows (whole windows) of each file
        own = (pairs.doc_ids == doc).nonzero().flatten()  # C_prev windows are always whole
        picks = np.random.default_rng([seed, doc, 7]).choice(len(own), min(pool_per_doc, len(own)),
                                                             replace=False)
        where[doc] = list(range(len(pool), len(pool) + len(picks)))
        pool += [pairs.tokens[own[int(j)], 0] for j in picks]
        pool_ids += [doc] * len(picks)
    chosen = torch.zeros(len(index), max_distractors, dtype=torch.long)
    for row, p in enumerate(index.tolist()):  # a function of the pair, not of its place
        rng = np.random.default_rng([seed, p, 9])
        others = [d for d in docs if d != int(pairs.doc_ids[p])]
        for t, j in enumerate(rng.permutation(len(others))[:max_distractors]):
            slots = where[others[j]]
            chosen[row, t] = slots[int(rng.integers(len(slots)))]
    units = torch.tensor([docs.index(d) for d in pairs.doc_ids[index].tolist()])
    return pairs.select(index), units, torch.stack(pool), torch.tensor(pool_ids), chosen
