r"""Long inputs, window by window: fill a kNN memory as you read, then answer.

Paper: Focused Transformer §4.1 and §5.1; the passkey experiment of Fig. 1.

A model trained on windows of ``n`` tokens reads an input of length :math:`L \gg n` as
:math:`\lceil L / n \rceil` windows. For each window, every memory layer first **searches** its
``KNNMemory`` with the window's queries (top-``k``, or everything with ``k=None``: dense), attends
to what it found plus the window's causal keys, and only then **adds** the window's own keys and
values. Ordinary layers see the current window alone. So the effective context is the memory's
capacity, not the training window: that is how FoT extends context (LongLLaMA: 8k training,
256k at inference).

``generate`` does the same with a prompt, then decodes greedily: the unfinished last window is
the local context; whenever it holds ``n`` tokens it is pushed into memory and a new one starts.

:func:`read_window` is one step of that reading, for every row at once: clear the memory of rows
whose document starts here, then search, attend and add. Evaluation calls it without gradients;
stream training (the Memorizing Transformer's recipe, ``mode="stream"`` in ``fot_edu.training.train``)
calls it with them: the gradient reaches the current window only, since what memory returns was
stored detached.
"""
from __future__ import annotations

import torch

from fot_edu.memory import KNNMemory
from fot_edu.model import FoTModel, ModelOutput


def read_window(model: FoTModel, tokens: torch.Tensor, memories: dict[int, KNNMemory], *,
                k: int | None = None, doc_ids: torch.Tensor | None = None,
                reset: torch.Tensor | None = None, logits: bool = True) -> ModelOutput | None:
    """Read one window ``tokens`` ``(b, n)`` into ``memories`` and return its output.

    ``reset`` ``(b,)`` bool: rows whose document starts with this window; their memory is
    cleared first, so a row never reads another document's keys. ``logits=False``: only fill the
    memories (``FoTModel.prefill``, exact and cheaper) and return None. With logits ``model``
    may also be a wrapper of the FoTModel (``DistributedDataParallel``).
    """
    if reset is not None and bool(reset.any()):
        for memory in memories.values():
            memory.clear(reset)
    if not logits:
        model.prefill(tokens, memories, k=k, doc_ids=doc_ids)
        return None
    return model(tokens, memories=memories, k=k, doc_ids=doc_ids)


@torch.no_grad()
def stream_logits(model: FoTModel, tokens: torch.Tensor, window: int,
                  memories: dict[int, KNNMemory] | None = None, k: int | None = None,
                  doc_ids: torch.Tensor | None = None, capacity: int | None = None,
                  reset: torch.Tensor | None = None) -> torch.Tensor:
    """Logits ``(b, L, vocab)`` for ``tokens`` ``(b, L)`` read ``window`` tokens at a time.

    ``memories``: per-layer stores to read and fill (made here with ``capacity`` slots, default
    all of ``L``, when not given). ``k=None``: dense memory attention. ``doc_ids`` ``(b,)`` is
    stored beside every key. ``reset`` ``(b, num_windows)`` bool clears a row's memory before
    that window (single-document evaluation at a document boundary).
    """
    if tokens.dim() != 2:
        raise ValueError(f"tokens must be (b, L), got shape {tuple(tokens.shape)}")
    if not isinstance(window, int) or not 1 <= window <= model.cfg.max_window:
        raise ValueError(f"window={window!r} is not allowed: an integer in 1..{model.cfg.max_window}")
    b, length = tokens.shape
    if length == 0:
        raise ValueError(f"tokens of shape {tuple(tokens.shape)} is an empty document: at least 1 token")
    if memories is None:
        memories = model.new_memories(b, capacity or max(length, 1))
    starts = range(0, length, window)
    if reset is not None and tuple(reset.shape) != (b, len(starts)):
        raise ValueError(f"reset must be (b, num_windows) = ({b}, {len(starts)}), got {tuple(reset.shape)}")
    logits = [read_window(model, tokens[:, start:start + window], memories, k=k, doc_ids=doc_ids,
                          reset=None if reset is None else reset[:, j]).logits
              for j, start in enumerate(starts)]
    return torch.cat(logits, dim=1)


@torch.no_grad()
def generate(model: FoTModel, prompt: torch.Tensor, max_new_tokens: int, window: int,
             k: int | None = None, capacity: int | None = None, stop_token: int | None = None,
             *, memories: dict[int, KNNMemory] | None = None, backend: str = "exact"):
    """Greedy continuation of ``prompt`` ``(b, L)``: ``(b, max_new_tokens)`` new token ids.

    The last ``window`` tokens of the prompt are the local context; everything before them is
    streamed into memory first. When the local context outgrows ``window``, its older half moves
    to memory, so the model always sees between ``window / 2`` and ``window`` recent tokens, as
    in training (the question it is answering stays local; the answer is found in memory). A
    window that moved to memory whole would leave the next token with a local context of one.

    ``memories``: stores to read and fill (e.g. prefilled with :meth:`FoTModel.prefill`, or
    shared across calls); by default new ones of ``capacity`` slots with search ``backend``.
    The prompt before its last window is put into memory with ``prefill`` (exact, no logits).
    """
    if prompt.dim() != 2 or prompt.shape[1] == 0:
        raise ValueError(f"prompt must be (b, L) with L >= 1, got shape {tuple(prompt.shape)}")
    b, length = prompt.shape
    if memories is None:
        memories = model.new_memories(b, capacity or length + max_new_tokens, backend)
    split = max(0, length - window)
    for start in range(0, split, window):
        model.prefill(prompt[:, start:min(start + window, split)], memories, k=k)
    local = prompt[:, split:]
    new_tokens = []
    for _ in range(max_new_tokens):
        logits = model(local, memories=memories, k=k, add_to_memory=False).logits
        next_token = logits[:, -1].argmax(dim=-1, keepdim=True)
        new_tokens.append(next_token)
        local = torch.cat([local, next_token], dim=1)
        if local.shape[1] > window:  # the older half becomes memory
            older = max(1, window // 2)
            model.prefill(local[:, :older], memories, k=k)
            local = local[:, older:]
        if stop_token is not None and bool((next_token == stop_token).all()):
            break
    return torch.cat(new_tokens, dim=1)
