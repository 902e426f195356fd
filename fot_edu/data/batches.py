"""From documents to batches: windows, (C_prev, C_curr) pairs and document streams.

FoT never sees a whole long document at once. A document is cut into windows of ``n`` tokens and
processed in order; what came before the current window is reachable only through memory
(inference, §4.1) or, in crossbatch training, through the previous window ``C_prev`` (§3.2).

| paper (§3.2, App. F)      | here                                                         |
|---------------------------|--------------------------------------------------------------|
| ``b`` documents per batch | ``Batch`` rows, one document each, all different            |
| ``C_prev``, ``C_curr``    | ``Batch.tokens[:, 0]``, ``Batch.tokens[:, 1]``: consecutive windows |
| which document is which   | ``Batch.doc_ids``: for r_d, retrieval precision and plots    |
| long-document evaluation  | :func:`iter_stream_windows`: each row streams whole documents |
| MT training (Wu et al.)   | :func:`training_stream`: the same, endless, a window a step  |

:func:`training_batch` is a pure function of its arguments (the random generator is seeded from
``(seed, step, split)``), so a crashed run resumes exactly by regenerating batch ``step``.
Corpora are split into train/eval once, with a fixed seed (``SPLIT_SEED``), so every training seed
is evaluated on the same documents.

Streaming evaluation: ``b`` rows, each reading one document window by window until it ends, then
the next one from the queue; ``new_doc`` marks the windows that start a document, where
single-document evaluation clears that row's memory and multi-document evaluation keeps it (the
setting where distraction, §3.3, shows). Stream training (``mode="stream"``, the Memorizing
Transformer's recipe) reads the same kind of stream, endless (:func:`stream_documents`), and
clears a row's memory at every new document.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from fot_edu.config import DataConfig
from fot_edu.data import dictionary
from fot_edu.data.corpora import (CORPORA, EVAL_FRACTION, SPLIT_SEED, Document, load_corpus,
                                  split_documents)
from fot_edu.data.passkey import retrieval_pair
from fot_edu.data.tokenizer import IGNORE, VOCAB_SIZE
from fot_edu.runtime import OnDevice

__all__ = ["Batch", "Document", "StreamStep", "load_corpus", "split_documents", "vocab_size",
           "pad_token", "training_batch", "eval_documents", "iter_stream_windows",
           "stream_documents", "training_stream", "WindowStream", "CORPORA"]

SPLITS = ("train", "eval")


@dataclass
class Batch(OnDevice):
    """b rows, each w consecutive windows of n tokens of one document (w=2: C_prev, C_curr)."""

    tokens: torch.Tensor  # (b, w, n) long
    targets: torch.Tensor  # (b, w, n) long: next token of the document; -100 where no loss
    doc_ids: torch.Tensor  # (b,) long: the document each row's windows come from
    offsets: torch.Tensor | None = None  # (b,) long: where in its document each row starts

    def select(self, index) -> "Batch":
        """The rows ``index`` (a slice, indices or a mask) of every field."""
        return Batch(*(None if getattr(self, f.name) is None else getattr(self, f.name)[index]
                       for f in dataclasses.fields(self)))

    @staticmethod
    def cat(batches: list["Batch"]) -> "Batch":
        """The rows of ``batches``, one after the other."""
        return Batch(*(torch.cat([getattr(b, f.name) for b in batches])
                       for f in dataclasses.fields(Batch)))


def vocab_size(cfg: DataConfig) -> int:
    """256 (bytes) for text corpora; symbols + 4 markers for the dictionary task."""
    if cfg.task == "dictionary":
        return dictionary.DictionaryVocab(cfg.num_symbols).size
    return VOCAB_SIZE


def pad_token(cfg: DataConfig) -> int:
    """The id that fills windows after a document ends (its targets are always -100)."""
    return dictionary.DictionaryVocab(cfg.num_symbols).pad if cfg.task == "dictionary" else 0


def _corpus(cfg: DataConfig) -> str:
    """The corpus behind a task: the retrieval curriculum hides its needles in book text."""
    return "books" if cfg.task == "retrieval" else cfg.task


@functools.lru_cache(maxsize=None)
def _split(name: str, large: bool) -> dict[str, tuple[Document, ...]]:
    train, evals = split_documents(load_corpus(name, large), EVAL_FRACTION, SPLIT_SEED)
    return {"train": tuple(train), "eval": tuple(evals)}


def _check_common(split: str, batch_size: int, step: int, seed: int, windows: int) -> None:
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not allowed: one of {SPLITS}")
    for name, value, low in (("batch_size", batch_size, 1), ("step", step, 0), ("seed", seed, 0),
                             ("windows", windows, 1)):
        if not (isinstance(value, (int, np.integer)) and value >= low):
            raise ValueError(f"{name}={value!r} is not allowed: an integer >= {low}")


def rows_available(cfg: DataConfig, split: str, windows: int = 2) -> int | None:
    """How many distinct documents of ``split`` hold a row of ``windows`` windows (the most rows a
    corpus batch can have); None for the synthetic tasks, which make as many rows as asked."""
    if cfg.task in ("dictionary", "retrieval"):
        return None
    span = windows * cfg.window + 1
    return sum(d.num_tokens >= span for d in _split(_corpus(cfg), cfg.large)[split])


def held_out_rows(cfg: DataConfig, batch_size: int, d_max: int = 1) -> int:
    """Rows of a held-out batch: ``batch_size``, or as many documents as the held-out split has
    when that is fewer (``books``: 8), if that still fits ``d_max``; otherwise a ``ValueError``
    at once, before any training (rather than at the first evaluation, minutes in)."""
    available = rows_available(cfg, "eval")
    if available is None or available >= batch_size:
        return batch_size
    if available < d_max:
        raise ValueError(f"d={d_max} is not allowed for corpus {cfg.task!r}: its held-out split has "
                         f"only {available} documents of 2 windows of {cfg.window} tokens, too few "
                         f"for the held-out loss with d={d_max}")
    return available


def training_batch(cfg: DataConfig, split: str, batch_size: int, step: int, seed: int = 0,
                   windows: int = 2) -> Batch:
    """Batch number ``step``: ``batch_size`` rows of ``windows`` consecutive windows each.

    Corpora: distinct documents of ``split`` long enough for ``windows * n + 1`` tokens, each at a
    random offset. Dictionary: fresh synthetic documents (see ``fot_edu.data.dictionary``), loss only on
    the answers. Retrieval: one (C_prev, C_curr) pair a row, needles spliced into passages of the
    ``books`` split (``retrieval_pair``), loss only on the numbers after the phrases.
    """
    _check_common(split, batch_size, step, seed, windows)
    rng = np.random.default_rng([int(seed), int(step), SPLITS.index(split), 3])
    n = cfg.window
    if cfg.task == "dictionary":
        first_id = (SPLITS.index(split) * (1 << 40)) + int(step) * batch_size  # unique per row
        docs = [dictionary.make_dictionary_document(cfg, windows, rng, first_id + i)
                for i in range(batch_size)]
        tokens = torch.stack([d.tokens for d in docs]).reshape(batch_size, windows, n)
        targets = torch.stack([d.targets for d in docs]).reshape(batch_size, windows, n)
        return Batch(tokens, targets, torch.tensor([d.id for d in docs]),
                     torch.zeros(batch_size, dtype=torch.long))
    if cfg.task == "retrieval":
        if windows != 2:
            raise ValueError(f"windows={windows} is not allowed for task 'retrieval': 2 (C_prev, C_curr)")
        texts = [d.byte_array for d in _split(_corpus(cfg), cfg.large)[split] if d.num_tokens > n]
        pairs = [retrieval_pair(cfg, texts, rng) for _ in range(batch_size)]
        first_id = (SPLITS.index(split) * (1 << 40)) + int(step) * batch_size  # unique per row
        return Batch(torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs]),
                     torch.arange(first_id, first_id + batch_size),
                     torch.zeros(batch_size, dtype=torch.long))
    span = windows * n + 1
    pool = [d for d in _split(_corpus(cfg), cfg.large)[split] if d.num_tokens >= span]
    if len(pool) < batch_size:
        raise ValueError(f"batch_size={batch_size} is not allowed for corpus {cfg.task!r} split "
                         f"{split!r}: only {len(pool)} documents hold {windows} windows of "
                         f"{n} tokens (+1), and rows must be different documents")
    chosen = rng.choice(len(pool), size=batch_size, replace=False)
    rows, offsets = [], []
    for i in chosen:
        doc = pool[int(i)]
        start = int(rng.integers(0, doc.num_tokens - span + 1))
        rows.append(doc.byte_array[start:start + span])
        offsets.append(start)
    data = torch.from_numpy(np.stack(rows).astype(np.int64))  # (b, w * n + 1)
    return Batch(tokens=data[:, :-1].reshape(batch_size, windows, n),
                 targets=data[:, 1:].reshape(batch_size, windows, n),
                 doc_ids=torch.tensor([pool[int(i)].id for i in chosen]),
                 offsets=torch.tensor(offsets))


def eval_documents(cfg: DataConfig, split: str = "eval", count: int | None = None,
                   windows: int = 8, seed: int = 0) -> list:
    """Documents to stream through :func:`iter_stream_windows`.

    Corpora: the split's documents (the first ``count`` of them in id order, or all). Dictionary:
    ``count`` (default 64) synthetic documents of ``windows`` windows.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not allowed: one of {SPLITS}")
    if count is not None and count < 1:
        raise ValueError(f"count={count!r} is not allowed: a positive integer or None")
    if cfg.task == "dictionary":
        base = (1 << 41) + SPLITS.index(split) * (1 << 40)
        return dictionary.dictionary_documents(cfg, count or 64, windows,
                                          seed=seed * 2 + SPLITS.index(split), first_id=base)
    docs = list(_split(_corpus(cfg), cfg.large)[split])
    return docs[:count] if count is not None else docs


@dataclass
class StreamStep(OnDevice):
    """One step of a document stream: every row's next window."""

    tokens: torch.Tensor  # (b, n) long; pad where a row has no document left
    targets: torch.Tensor  # (b, n) long; -100 where no loss (padding, last token, non-answers)
    doc_ids: torch.Tensor  # (b,) long; -1 for a row with no document left
    new_doc: torch.Tensor  # (b,) bool; True where this window is the first of its document
    active: torch.Tensor  # (b,) bool; False for a row with no document left


def iter_stream_windows(docs: Iterable, batch_size: int, window: int, pad_id: int = 0,
                        max_tokens_per_doc: int | None = None) -> Iterator[StreamStep]:
    """Stream ``docs`` through ``batch_size`` rows, ``window`` tokens per row per step.

    A document keeps its row from its first window to its last; then the row takes the next
    document in ``docs`` order. ``docs`` need ``id``, ``tokens`` and ``targets`` (``Document``
    and ``dictionary.DictionaryDocument`` have them). ``max_tokens_per_doc`` keeps only a document's
    first tokens. Ends when every document has been streamed (never, when ``docs`` is endless:
    :func:`stream_documents`).
    """
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size={batch_size!r} is not allowed: a positive integer")
    if not (isinstance(window, int) and window >= 1):
        raise ValueError(f"window={window!r} is not allowed: a positive integer")
    queue = (d for d in docs if d.num_tokens > 0)
    # per row: [doc id, tokens, targets, position of the next window]
    rows: list[list] = [[None, None, None, 0] for _ in range(batch_size)]
    while True:
        tokens = torch.full((batch_size, window), pad_id, dtype=torch.long)
        targets = torch.full((batch_size, window), IGNORE, dtype=torch.long)
        doc_ids = torch.full((batch_size,), -1, dtype=torch.long)
        new_doc = torch.zeros(batch_size, dtype=torch.bool)
        for r, row in enumerate(rows):
            if row[1] is None or row[3] >= len(row[1]):
                doc = next(queue, None)
                if doc is None:
                    rows[r] = row = [None, None, None, 0]
                    continue
                toks, tgts = doc.tokens, doc.targets.clone()
                if max_tokens_per_doc is not None and len(toks) > max_tokens_per_doc:
                    toks, tgts = toks[:max_tokens_per_doc], tgts[:max_tokens_per_doc]
                    tgts[-1] = IGNORE
                rows[r] = row = [doc.id, toks, tgts, 0]
                new_doc[r] = True
            piece = slice(row[3], row[3] + window)
            length = len(row[1][piece])
            tokens[r, :length] = row[1][piece]
            targets[r, :length] = row[2][piece]
            doc_ids[r] = row[0]
            row[3] += window
        active = doc_ids >= 0
        if not active.any():
            return
        yield StreamStep(tokens, targets, doc_ids, new_doc, active)


def stream_documents(cfg: DataConfig, split: str = "train", seed: int = 0,
                     batch_size: int = 1) -> Iterator:
    """Endless documents for stream training, a pure function of the arguments. Dictionary: of
    ``cfg.doc_windows`` windows, but the first ``batch_size`` of 2, 3, ..., ``doc_windows`` in turn,
    so rows change documents at different steps. Corpora: the split, each pass shuffled anew."""
    _check_common(split, batch_size, 0, seed, 1)
    rng = np.random.default_rng([int(seed), SPLITS.index(split), 17])
    if cfg.task == "dictionary":
        first_id = (1 << 42) + SPLITS.index(split) * (1 << 40)
        for i in itertools.count():
            windows = 2 + i % (cfg.doc_windows - 1) if i < batch_size else cfg.doc_windows
            yield dictionary.make_dictionary_document(cfg, windows, rng, first_id + i)
    if cfg.task not in CORPORA:
        raise ValueError(f"task={cfg.task!r} is not allowed for streaming: 'dictionary' or one of "
                         f"{CORPORA}")
    docs = _split(cfg.task, cfg.large)[split]
    while True:
        yield from (docs[int(i)] for i in rng.permutation(len(docs)))


class WindowStream:
    """``index -> StreamStep``: window ``index`` of the stream ``make()`` starts. In order, one
    iterator step a call; an earlier index (a resumed run) starts afresh and skips to it."""

    def __init__(self, make: Callable[[], Iterator[StreamStep]]):
        self.make, self.iterator, self.next_index = make, None, 0

    def __call__(self, index: int) -> StreamStep:
        if self.iterator is None or index < self.next_index:
            self.iterator, self.next_index = self.make(), 0
        for _ in range(index - self.next_index):
            next(self.iterator)
        self.next_index = index + 1
        step = next(self.iterator, None)
        if step is None:
            raise ValueError(f"the stream ended before window {index}: give it more documents")
        return step


def training_stream(cfg: DataConfig, split: str, batch_size: int, seed: int = 0) -> WindowStream:
    """The stream that ``mode="stream"`` trains on: ``batch_size`` rows, each reading
    :func:`stream_documents` one window at a time (:func:`iter_stream_windows`)."""
    return WindowStream(lambda: iter_stream_windows(stream_documents(cfg, split, seed, batch_size),
                                                    batch_size, cfg.window, pad_token(cfg)))
