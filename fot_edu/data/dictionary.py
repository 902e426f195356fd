"""Dictionary lookup: a synthetic task that only a model with working memory can solve.

**Dictionary lookup** (paper §5.2, App. D). A document is a list of definitions ``<k> key <v>
value`` followed, in later windows, by questions ``<q> key <v> value`` about keys defined earlier.
The local window holds the question but not the definition, so the value can only come from
memory. Loss and accuracy count only the value tokens after ``<q>``: everything else is random.
Crossbatch training (§3.2) makes it harder on purpose: the memory layer also sees other documents'
definitions, with *different* values for *other* keys, and must pick its own.

A document of ``w`` windows of ``n`` tokens, ``E = entries_per_window`` entries per window:

| window       | holds                                                                       |
|--------------|-----------------------------------------------------------------------------|
| 0 (C_prev)   | ``E`` definitions of fresh keys                                             |
| 1 .. w-2     | ``ceil(E/2)`` questions on earlier windows' keys + fresh definitions, mixed |
| w-1 (C_curr) | ``E`` questions about keys of earlier windows, in shuffled order            |

With ``w = 2`` (crossbatch training) that is: C_prev defines, C_curr asks about every key of C_prev.
Every key is distinct within a document; ``<pad>`` fills each window after its entries.

Vocabulary: symbols ``0 .. S-1``, then ``<k> = S``, ``<v> = S+1``, ``<q> = S+2``, ``<pad> = S+3``.

Differences from the paper: 32 symbols and keys/values of 2 tokens by default (paper: 64 symbols,
4 tokens) so a 3-layer model learns the task on a CPU in minutes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from fot_edu.config import DataConfig
from fot_edu.data.tokenizer import IGNORE
from fot_edu.runtime import OnDevice

# ---------------------------------------------------------------------------------------------
# dictionary lookup

@dataclass(frozen=True)
class DictionaryVocab:
    """Token ids of the dictionary task: symbols ``0 .. S-1``, then the four markers."""

    num_symbols: int  # S

    k = property(lambda self: self.num_symbols)  # "<k>": a definition follows
    v = property(lambda self: self.num_symbols + 1)  # "<v>": the value follows
    q = property(lambda self: self.num_symbols + 2)  # "<q>": a question follows
    pad = property(lambda self: self.num_symbols + 3)  # "<pad>": fills a window after its entries
    size = property(lambda self: self.num_symbols + 4)  # symbols + 4 markers

    def name(self, token: int) -> str:
        markers = {self.k: "<k>", self.v: "<v>", self.q: "<q>", self.pad: "<pad>"}
        return markers.get(int(token), str(int(token)))


@dataclass(eq=False)
class DictionaryDocument:
    """One synthetic document: ``tokens`` and loss ``targets``, both ``(w * n,)`` long."""

    id: int
    name: str
    tokens: torch.Tensor
    targets: torch.Tensor

    @property
    def num_tokens(self) -> int:
        return int(self.tokens.shape[0])


def _check_dictionary(cfg: DataConfig) -> None:
    if cfg.task != "dictionary":
        raise ValueError(f"task={cfg.task!r} is not allowed here: 'dictionary'")


def _key_codes_to_digits(codes: np.ndarray, cfg: DataConfig) -> np.ndarray:
    """Integer key codes in ``0 .. S**key_len - 1`` -> ``(..., key_len)`` symbols, base S."""
    powers = cfg.num_symbols ** np.arange(cfg.key_len - 1, -1, -1)
    return (codes[..., None] // powers) % cfg.num_symbols


def _draw_keys(count: int, cfg: DataConfig, rng: np.random.Generator, what: str) -> np.ndarray:
    space = cfg.num_symbols ** cfg.key_len
    if count > space:
        raise ValueError(f"{what} needs {count} distinct keys but num_symbols={cfg.num_symbols} "
                         f"and key_len={cfg.key_len} give only {space}: raise "
                         f"num_symbols or key_len, or ask for fewer entries")
    return _key_codes_to_digits(rng.choice(space, size=count, replace=False), cfg)


def _window(entries: list[tuple[int, np.ndarray, np.ndarray]], cfg: DataConfig) -> np.ndarray:
    """``[(marker, key, value), ...]`` -> one window ``(n,)``: entries, then ``<pad>``."""
    vocab = DictionaryVocab(cfg.num_symbols)
    out = np.full(cfg.window, vocab.pad, dtype=np.int64)
    pos = 0
    for marker, key, value in entries:
        row = np.concatenate([[marker], key, [vocab.v], value])
        out[pos:pos + len(row)] = row
        pos += len(row)
    return out


def answer_mask(tokens: torch.Tensor, cfg: DataConfig) -> torch.Tensor:
    """True at the value tokens of questions (the ``value_len`` tokens after ``<q> key <v>``).

    ``tokens``: ``(..., L)``; entries never cross the last axis, so windows or whole documents work.
    """
    vocab = DictionaryVocab(cfg.num_symbols)
    is_q = tokens == vocab.q
    mask = torch.zeros_like(is_q)
    for offset in range(cfg.key_len + 2, cfg.key_len + 2 + cfg.value_len):
        mask[..., offset:] |= is_q[..., :-offset]
    return mask


def answer_targets(tokens: torch.Tensor, cfg: DataConfig) -> torch.Tensor:
    """Next-token targets that are ``-100`` except where the next token is an answer value token."""
    mask = answer_mask(tokens, cfg)
    targets = torch.full_like(tokens, IGNORE)
    targets[..., :-1] = torch.where(mask[..., 1:], tokens[..., 1:], IGNORE)
    return targets


def make_dictionary_document(cfg: DataConfig, windows: int, rng: np.random.Generator,
                             doc_id: int = 0) -> DictionaryDocument:
    """A document of ``windows`` windows laid out as in the table of the module docstring."""
    _check_dictionary(cfg)
    if windows < 2:
        raise ValueError(f"windows={windows!r} is not allowed: at least 2 (definitions, questions)")
    vocab = DictionaryVocab(cfg.num_symbols)
    E = cfg.entries_per_window
    asked_mid = math.ceil(E / 2)
    fresh = [E] + [E - asked_mid] * (windows - 2) + [0]
    keys = _draw_keys(sum(fresh), cfg, rng, f"a document of {windows} windows")
    values = rng.integers(0, cfg.num_symbols, size=(len(keys), cfg.value_len))
    out, defined, next_key = [], [], 0
    for j in range(windows):
        asked = 0 if j == 0 else (E if j == windows - 1 else asked_mid)
        entries = [(vocab.q, keys[i], values[i])
                   for i in rng.choice(defined, size=asked, replace=False)] if asked else []
        new = list(range(next_key, next_key + fresh[j]))
        entries += [(vocab.k, keys[i], values[i]) for i in new]
        order = rng.permutation(len(entries)) if j > 0 else range(len(entries))
        out.append(_window([entries[i] for i in order], cfg))
        defined += new
        next_key += fresh[j]
    tokens = torch.from_numpy(np.concatenate(out))
    return DictionaryDocument(id=doc_id, name=f"dictionary-{doc_id}", tokens=tokens,
                              targets=answer_targets(tokens, cfg))


def dictionary_documents(cfg: DataConfig, count: int, windows: int = 2, seed: int = 0,
                         first_id: int = 0) -> list[DictionaryDocument]:
    """``count`` documents, a pure function of the arguments (for streaming evaluation)."""
    rng = np.random.default_rng([int(seed), 11])
    return [make_dictionary_document(cfg, windows, rng, first_id + i) for i in range(count)]


@dataclass
class DictionaryEvalBatch(OnDevice):
    """Own documents plus distractors' definitions, for evaluation with a crowded memory.

    ``tokens``/``targets``: ``(b, 2, n)`` own (C_prev, C_curr); ``distractors``: ``(b, N, n)``
    definition windows of N other documents (load them into memory too); ``doc_ids``: ``(b,)``;
    ``distractor_ids``: ``(b, N)``. A distractor never defines a key of the own document (unless
    ``redefine=True`` asks for exactly that), nor, while the key space lasts, another
    distractor's (see :func:`dictionary_eval_batch`).
    """

    tokens: torch.Tensor
    targets: torch.Tensor
    distractors: torch.Tensor
    doc_ids: torch.Tensor
    distractor_ids: torch.Tensor


def dictionary_eval_batch(cfg: DataConfig, batch_size: int, num_distractors: int,
                          seed: int = 0, *, redefine: bool = False,
                          first: int = 0) -> DictionaryEvalBatch:
    """Documents ``first .. first + batch_size - 1`` of evaluation set ``seed``, each with the
    definition windows of ``num_distractors`` other documents.

    **A fixed evaluation set.** Own document ``i`` (its keys, values and the order of its
    questions) is a function of ``(seed, i)`` alone: the same whatever ``num_distractors``,
    ``batch_size`` or ``first`` ask for, so accuracies at different N are measured on the same
    questions. The distractors are drawn after it, from their own stream, and are nested:
    distractor ``t`` of document ``i`` is the same for every ``N > t``, so N = 15 holds the
    distractors of N = 7 plus 8 more.

    Their keys are distinct from the own document's (a distractor never redefines a key the
    question asks about: a wrong answer is the memory's fault, not the data's) and from each
    other's, taken in turn from a shuffle of the keys the own document does not use. Once those
    run out (``(N + 1) * entries_per_window > num_symbols ** key_len``), each further distractor
    draws its own distinct keys among them (distractors then share keys with each other, never
    with the own document).

    ``redefine=True``: every distractor defines exactly the own document's keys, with other
    values. Content-addressed memory cannot tell these apart by key: the test of what
    memory attention can and cannot separate.
    """
    _check_dictionary(cfg)
    for name, value, low in (("batch_size", batch_size, 1), ("num_distractors", num_distractors, 0),
                             ("first", first, 0)):
        if not (isinstance(value, int) and value >= low):
            raise ValueError(f"{name}={value!r} is not allowed: an integer >= {low}")
    vocab = DictionaryVocab(cfg.num_symbols)
    E, N, S = cfg.entries_per_window, num_distractors, cfg.num_symbols
    space = S ** cfg.key_len
    if not redefine and N and space - E < E:
        raise ValueError(f"num_symbols={S} and key_len={cfg.key_len} give {space} keys: too few "
                         f"for distractors beside {E} own keys")
    own, distractors = [], []
    for i in range(first, first + batch_size):
        rng = np.random.default_rng([int(seed), i, 13])  # the own document: (seed, i) alone
        codes = rng.choice(space, size=E, replace=False)
        values = rng.integers(0, S, size=(E, cfg.value_len))
        keys = _key_codes_to_digits(codes, cfg)
        defs = [(vocab.k, keys[j], values[j]) for j in range(E)]
        asks = [(vocab.q, keys[j], values[j]) for j in rng.permutation(E)]
        own.append(np.stack([_window(defs, cfg), _window(asks, cfg)]))
        free = np.random.default_rng([int(seed), i, 17]).permutation(
            np.setdiff1d(np.arange(space), codes))  # keys the own document does not use
        windows = []
        for t in range(N):
            rng_t = np.random.default_rng([int(seed), i, t, 19])  # distractor t: same for any N > t
            if redefine:  # another value than the own document's, in every token
                their_codes = codes
                their_values = (values + rng_t.integers(1, S, size=(E, 1))) % S
            else:
                their_codes = (free[t * E:(t + 1) * E] if (t + 1) * E <= len(free)
                               else rng_t.choice(free, size=E, replace=False))
                their_values = rng_t.integers(0, S, size=(E, cfg.value_len))
            their_keys = _key_codes_to_digits(their_codes, cfg)
            windows.append(_window([(vocab.k, their_keys[j], their_values[j]) for j in range(E)],
                                   cfg))
        distractors.append(np.stack(windows) if N else np.zeros((0, cfg.window), dtype=np.int64))
    tokens = torch.from_numpy(np.stack(own))
    doc_ids = torch.arange(first, first + batch_size)
    # distractor t of document i: (t + 1) * 2**32 + i, never an own id, unique in the batch
    distractor_ids = (torch.arange(1, N + 1)[None, :] << 32) + doc_ids[:, None]
    return DictionaryEvalBatch(tokens=tokens, targets=answer_targets(tokens, cfg),
                               distractors=torch.from_numpy(np.stack(distractors)),
                               doc_ids=doc_ids, distractor_ids=distractor_ids)


def format_window(tokens, cfg: DataConfig) -> str:
    """A window as text, ``<k> 3 17 <v> 5 9 <k> ...``, trailing pads shown as ``<pad>*count``."""
    vocab = DictionaryVocab(cfg.num_symbols)
    ids = [int(t) for t in (tokens.tolist() if isinstance(tokens, torch.Tensor) else tokens)]
    pads = 0
    while ids and ids[-1] == vocab.pad:
        ids.pop()
        pads += 1
    words = [vocab.name(t) for t in ids] + ([f"<pad>*{pads}"] if pads else [])
    return " ".join(words)
