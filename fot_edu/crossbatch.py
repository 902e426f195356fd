r"""Crossbatch training: let each document's window see its own previous window and d-1 others'.

Paper: Focused Transformer §3.2 and App. F (https://arxiv.org/abs/2307.03170).

In one sentence: a batch holds ``b`` documents, each giving two consecutive windows
:math:`C_\text{prev}, C_\text{curr}` of ``n`` tokens, and in memory layers the queries of row
``i``'s :math:`C_\text{curr}` attend, in one softmax, to their own causal keys and to all keys of
the :math:`C_\text{prev}` windows of rows :math:`\{i, i+1, \dots, i+d-1\} \bmod b`.

The own :math:`C_\text{prev}` is the **positive** (it holds what the window needs), the other
``d - 1`` are **negatives** (plausible-looking, irrelevant keys). Everything is differentiable:
the loss pushes the queries towards the positive's keys *and away from* the negatives' keys, as in
contrastive learning, but with no new loss and no new parameters: it is the ordinary LM loss. The
result is a key space in which keys of different documents are far apart, so that at inference a
memory crowded with other documents does not distract (§3.3, ``fot_edu.evaluation.distraction``).

``d = 1`` sees only its own previous window: the non-contrastive baseline ("FoT d=1"), which is
also what the Memorizing Transformer trains on. ``d`` must be in ``1..b``. The paper's advice:
start with small ``d`` (<= 8), raise it later; a large ``d`` from step 0 makes the model learn to
ignore the previous context altogether (``TrainConfig.d_schedule``).

==========================  =====================  ==========================================
paper                       code                   shape
==========================  =====================  ==========================================
:math:`C_\text{prev}` keys  ``prev_keys``          ``(b, h, n, dh)``
contexts seen by row i      ``context_rows[i]``    ``(b, c)`` with ``c = d``; column 0 = own
keys row i attends          ``mem_keys[i]``        ``(b, h, c * n, dh)``
==========================  =====================  ==========================================

Beyond the paper (its stated future work): ``negatives="hard"`` picks as the ``d - 1``
negatives the rows whose :math:`C_\text{prev}` keys are most similar (mean key, cosine) to the
row's own :math:`C_\text{prev}`, instead of neighbours by index.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange


def _check_d(d: int, b: int) -> None:
    if not isinstance(d, int) or not 1 <= d <= b:
        raise ValueError(f"d={d!r} is not allowed: the crossbatch dimension must be an integer "
                         f"in 1..b where b={b} is the batch size")


def neighbour_rows(b: int, d: int, device=None) -> torch.Tensor:
    """``(b, d)``: row ``i`` sees ``C_prev`` of rows ``i, i+1, ..., i+d-1 (mod b)``."""
    _check_d(d, b)
    return (torch.arange(b, device=device)[:, None] + torch.arange(d, device=device)[None, :]) % b


def hard_negative_rows(prev_keys: torch.Tensor, d: int) -> torch.Tensor:
    """``(b, d)``: the own row first, then the ``d - 1`` rows whose mean ``C_prev`` key is most
    similar to the own one (averaged over heads). Chosen without gradient."""
    b = prev_keys.shape[0]
    _check_d(d, b)
    with torch.no_grad():
        mean_key = F.normalize(prev_keys.float().mean(dim=2), dim=-1)  # (b, h, dh)
        sim = torch.einsum("ihd,jhd->ij", mean_key, mean_key) / prev_keys.shape[1]
        sim.fill_diagonal_(float("-inf"))
        others = sim.topk(d - 1, dim=1).indices if d > 1 else sim.new_zeros(b, 0).long()
    own = torch.arange(b, device=prev_keys.device)[:, None]
    return torch.cat([own, others], dim=1)


def crossbatch_memory(prev_keys: torch.Tensor, prev_values: torch.Tensor, d: int,
                      negatives: str = "neighbours", doc_ids: torch.Tensor | None = None):
    """The keys/values each row's ``C_curr`` attends besides its own causal keys.

    Args:
        prev_keys, prev_values: ``(b, h, n, dh)`` of the ``C_prev`` windows (keep the graph:
            gradients must reach the negatives).
        d: crossbatch dimension, ``1 <= d <= b``.
        negatives: ``"neighbours"`` (the paper) or ``"hard"`` (most similar ``C_prev``).
        doc_ids: ``(b,)`` document id of each row; default: the row index.

    Returns:
        ``mem_keys``, ``mem_values`` ``(b, h, d * n, dh)`` (context-major: own ``C_prev``
        first), ``context_rows`` ``(b, d)`` and ``context_docs`` ``(b, d)``: the row and the
        document each context came from, for r_d and plots.
    """
    if prev_keys.dim() != 4 or prev_keys.shape != prev_values.shape:
        raise ValueError(f"prev_keys/prev_values must be (b, h, n, dh) and equal, got "
                         f"{tuple(prev_keys.shape)} and {tuple(prev_values.shape)}")
    b = prev_keys.shape[0]
    if negatives == "neighbours":
        rows = neighbour_rows(b, d, prev_keys.device)
    elif negatives == "hard":
        rows = hard_negative_rows(prev_keys, d)
    else:
        raise ValueError(f"negatives={negatives!r} is not allowed: 'neighbours' or 'hard'")
    if doc_ids is None:
        doc_ids = torch.arange(b, device=prev_keys.device)
    mem_keys = rearrange(prev_keys[rows], "b c h n dh -> b h (c n) dh")
    mem_values = rearrange(prev_values[rows], "b c h n dh -> b h (c n) dh")
    return mem_keys, mem_values, rows, doc_ids.to(rows.device)[rows]


def context_mass(weights: torch.Tensor, n_local: int, num_contexts: int) -> torch.Tensor:
    """Attention mass per memory context: ``(b, h, n, n_local + c * m)`` -> ``(b, h, n, c)``.

    The local part is dropped; the memory part is summed per context (each ``m`` slots long).
    """
    memory = weights[..., n_local:]
    return rearrange(memory, "b h n (c m) -> b h n c m", c=num_contexts).sum(dim=-1)


def own_context_share(weights: torch.Tensor, n_local: int, num_contexts: int) -> torch.Tensor:
    """Per query, the share of its memory mass on the first context (the own ``C_prev``):
    ``(b, h, n, n_local + c * m)`` -> ``(b, h, n)``. Local mass counts in neither part (r_d)."""
    mass = context_mass(weights, n_local, num_contexts)
    return mass[..., 0] / mass.sum(-1).clamp(min=1e-12)
