"""Byte-level tokenizer: a text is the list of its UTF-8 bytes (256 ids).

Byte-level keeps the package offline and dependency-free, and makes "tokens" and "characters"
nearly the same unit, so a student can read a window of ids as text. Synthetic tasks
(dictionary lookup) use their own small vocabularies instead (see ``fot_edu.data.dictionary``).
"""
from __future__ import annotations

import torch

VOCAB_SIZE = 256
IGNORE = -100  # the target id that the loss and every metric skip (F.cross_entropy's ignore_index)


def encode(text: str) -> list[int]:
    """``"hi" -> [104, 105]``: the UTF-8 bytes of ``text``."""
    if not isinstance(text, str):
        raise TypeError(f"encode expects str, got {type(text).__name__}")
    return list(text.encode("utf-8"))


def decode(ids) -> str:
    """Inverse of :func:`encode`; bytes that do not form valid UTF-8 become U+FFFD."""
    if isinstance(ids, torch.Tensor):
        ids = ids.tolist()
    bad = [i for i in ids if not 0 <= int(i) < VOCAB_SIZE]
    if bad:
        raise ValueError(f"decode: ids must be in 0..{VOCAB_SIZE - 1}, got {bad[:5]}")
    return bytes(int(i) for i in ids).decode("utf-8", errors="replace")


def encode_tensor(text: str) -> torch.Tensor:
    """:func:`encode` as a ``(n,)`` long tensor."""
    return torch.tensor(encode(text), dtype=torch.long)
