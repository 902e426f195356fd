"""Corpora as sets of documents: what "long context" means in the paper's experiments (§5.1).

The Focused Transformer paper measures perplexity on four long-document corpora: PG-19 books,
arXiv papers, GitHub code and Isabelle proofs. What matters for FoT is not the text itself but that
each corpus is a *set of documents*: within a document, far-away tokens help predict the next one
(a function defined 2,000 lines earlier, a character introduced in chapter one), and between
documents they do not. Memory attention must learn to use the first and ignore the second.

Our stand-ins, all usable offline on a fresh checkout:

| paper (§5.1)    | here       | one document                       | from                     |
|-----------------|------------|------------------------------------|--------------------------|
| GitHub code     | ``code``   | a ``.py`` file of CPython's stdlib | ``fot_edu/shipped/code.jsonl.gz``   |
| PG-19           | ``books``  | a book (its first ~48 KB)          | ``fot_edu/shipped/books.jsonl.gz``  |
| Isabelle proofs | ``proofs`` | a section of Metamath's ``set.mm`` | ``fot_edu/shipped/proofs.jsonl.gz`` |

Every corpus is read from its committed file, whatever Python runs this: the documents, and so the
train/eval split, are the same everywhere (the ``code`` file was taken once from Python 3.11.7's
standard library; the shipped ``code-*`` checkpoints were trained on it). Train and eval are split
by whole document (:func:`split_documents`): a model must never have seen the document whose memory
it is evaluated on. ``fot_edu/shipped/README.md`` records sources and licences; ``fot_edu.data.corpus_build``
rebuilds the committed files from their sources.

Differences from the paper: our corpora are tiny (megabytes, not gigabytes) and books are cut to
their first pages, so the "long" in long context is thousands of tokens here, not hundreds of
thousands. ``python -m fot_edu data build --large`` writes bigger versions to ``~/.cache/fot_edu/large/`` (``FOT_EDU_CACHE``).
"""
from __future__ import annotations

import functools
import gzip
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from fot_edu.data.tokenizer import IGNORE
from fot_edu.runtime import CACHE_DIR, SHIPPED

CORPORA = ("code", "books", "proofs")
DATA_DIR = Path(os.environ.get("FOT_EDU_DATA_DIR", SHIPPED))
LARGE_DIR = CACHE_DIR / "large"
EVAL_FRACTION = 0.1  # share of each corpus held out, by whole document
SPLIT_SEED = 0  # one split for every training seed, recorded in each .meta.json


@dataclass(eq=False)
class Document:
    """One document of a corpus: its position ``id`` in the corpus, a readable ``name``, its text.

    ``tokens`` are the text's UTF-8 bytes (the byte-level tokenizer of ``fot_edu.data.tokenizer``);
    ``targets`` the next token at every position (``-100`` after the last one).
    """

    id: int
    name: str
    text: str
    source: str = field(default="", repr=False)  # file, book or section it was cut from

    @cached_property
    def byte_array(self) -> np.ndarray:
        """``(L,)`` uint8: the UTF-8 bytes, kept once so batches are cheap slices."""
        return np.frombuffer(self.text.encode("utf-8"), dtype=np.uint8)

    @property
    def num_tokens(self) -> int:
        return int(self.byte_array.shape[0])

    @property
    def tokens(self) -> torch.Tensor:
        """``(L,)`` long: the byte ids of the whole document."""
        return torch.from_numpy(self.byte_array.astype(np.int64))

    @property
    def targets(self) -> torch.Tensor:
        """``(L,)`` long: ``tokens[t + 1]``, and ``-100`` at the last position."""
        tokens = self.tokens
        return torch.cat([tokens[1:], torch.tensor([IGNORE])])


# ---------------------------------------------------------------------------------------------
# loading

def load_corpus(name: str, large: bool = False) -> list[Document]:
    """The documents of corpus ``name`` ("code", "books" or "proofs"), ids 0..D-1 in a fixed order.

    ``large=True`` reads the bigger version written by ``python -m fot_edu data build --large``.
    Loaded once per process; the list is a fresh copy, the documents are shared.
    """
    if name not in CORPORA:
        raise ValueError(f"corpus={name!r} is unknown: choose one of {CORPORA}")
    return list(_load(name, bool(large)))


def corpus_info(name: str, large: bool = False) -> dict:
    """How corpus ``name`` was built: its ``.meta.json`` (source, licence, manifest; for ``code``
    also the Python version its stdlib came from), ``{}`` where there is none."""
    if name not in CORPORA:
        raise ValueError(f"corpus={name!r} is unknown: choose one of {CORPORA}")
    path = _corpus_path(name, large)
    meta_path = path.with_name(path.name.replace(".jsonl.gz", ".meta.json"))
    return json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}


def clear_cache() -> None:
    """Forget loaded corpora (after rebuilding their files)."""
    _load.cache_clear()


@functools.lru_cache(maxsize=None)
def _load(name: str, large: bool) -> tuple[Document, ...]:
    path = _corpus_path(name, large)
    if not path.exists():
        hint = ("run `python -m fot_edu data build --large`" if large
                else "the committed file is missing from this checkout")
        raise FileNotFoundError(f"corpus {name!r}: {path} not found; {hint}")
    return tuple(read_jsonl(path))


def _corpus_path(name: str, large: bool) -> Path:
    return (LARGE_DIR if large else DATA_DIR) / f"{name}.jsonl.gz"


def read_jsonl(path: Path) -> list[Document]:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    except UnicodeDecodeError as err:
        raise ValueError(f"corpus file {str(path)!r} is not UTF-8 text: byte {err.object[err.start:err.start + 1]!r} "
                         f"at offset {err.start}; corpus files must be gzipped UTF-8 JSON lines") from None
    return [Document(id=i, name=r["name"], text=r["text"], source=r.get("source", ""))
            for i, r in enumerate(rows)]


def split_documents(docs: list[Document], eval_fraction: float = EVAL_FRACTION,
                    seed: int = SPLIT_SEED) -> tuple[list[Document], list[Document]]:
    """Split by whole document: ``(train, eval)``, each in id order, the same for the same seed.

    At least one document goes to each side.
    """
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"eval_fraction={eval_fraction!r} is not allowed: a number in (0, 1)")
    if len(docs) < 2:
        raise ValueError(f"docs has {len(docs)} document(s): splitting needs at least 2")
    order = sorted(docs, key=lambda d: d.id)
    n_eval = min(len(order) - 1, max(1, round(eval_fraction * len(order))))
    perm = np.random.default_rng([int(seed), 1]).permutation(len(order))
    eval_idx = set(perm[:n_eval].tolist())
    train = [d for i, d in enumerate(order) if i not in eval_idx]
    evals = [d for i, d in enumerate(order) if i in eval_idx]
    return train, evals
