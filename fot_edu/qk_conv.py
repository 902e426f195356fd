r"""Convolved queries and keys: each query and key mixes in those of the few tokens before it.

Paper: So et al. 2021, "Primer: Searching for Efficient Transformers"
(https://arxiv.org/abs/2109.08668), multi-dconv-head attention: a depthwise causal convolution
after the query, key and value projections. Here: queries and keys only, ``width`` taps.

Why. A smeared key (``fot_edu.smear``) holds the key of its token and of the one before, so one
head can copy after matching **one** earlier byte: in a byte-level model that is a guess among
every earlier place where that byte occurred. A convolution gives each channel of a query and of a
key its own mix of the last ``width`` tokens, so the channels of one head can hold different
offsets, and one head can match a context of several bytes ("the bytes before here are the bytes
before there") without a second layer to compose with. Per head :math:`h`, channel :math:`c`:

.. math::

    \tilde q_{t,c} = \sum_{s=0}^{W-1} w^{q}_{h,c,s}\, q_{t-s,c}, \qquad
    \tilde k_{j,c} = \sum_{s=0}^{W-1} w^{k}_{h,c,s}\, k_{j-s,c},

with zeros before the window's first token, computed before RoPE. At init :math:`w^q` is
``(1, 0, 0, ...)`` (the plain query) and :math:`w^k` is ``(1/2, 1/2, 0, ...)`` (the smeared key at
its init), so training starts where a smeared-key model starts and finds the other taps itself.

==================  =====================  ==================================================
paper               code                   shape
==================  =====================  ==================================================
:math:`q, k`        ``x``                  ``(b, h, n, dh)`` projected, before RoPE
:math:`w^q, w^k`    ``weight``             ``(h, dh, W)``; tap ``s`` multiplies token ``t - s``
==================  =====================  ==================================================

Across windows. A memory layer's window is not the start of its document: its first ``W - 1``
queries and keys mix in the last raw ones of the window before it. Crossbatch (``C_curr`` after
``C_prev``) convolves the two windows as one sequence; streaming and ``prefill`` keep the last
``W - 1`` raw queries and keys of what they stored in the memory (:func:`carried`, spanning
several windows when windows are shorter than that), zeros for a row whose document starts. An
ordinary layer reads its window alone in training and at inference, so zeros before its first
token are what it always sees. (``fot_edu.smear`` carries its one key the same way.)

Differences from the paper: FoT and LongLLaMA use neither this nor smeared keys. It is our
addition for scale, as smearing is: measured by ``experiments/copy_emergence.py --qk-conv``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

__all__ = ["causal_conv", "conv_window", "carried", "initial_weights"]


def initial_weights(heads: int, head_dim: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(w_q, w_k)``, each ``(heads, head_dim, width)``: the plain query, the evenly smeared key."""
    if not (isinstance(width, int) and width >= 2):
        raise ValueError(f"width={width!r} is not allowed: an integer >= 2 (1 is no convolution)")
    w_q, w_k = torch.zeros(heads, head_dim, width), torch.zeros(heads, head_dim, width)
    w_q[..., 0] = 1.0
    w_k[..., :2] = 0.5
    return w_q, w_k


def causal_conv(x: torch.Tensor, weight: torch.Tensor, before: torch.Tensor | None = None) -> torch.Tensor:
    """``out[:, h, t, c] = sum_s weight[h, c, s] * x[:, h, t - s, c]``.

    ``x``: ``(b, h, n, dh)``; ``weight``: ``(h, dh, W)``; ``before``: ``(b, h, W - 1, dh)``, the
    raw tokens before ``t = 0``, oldest first (None: zeros, nothing before). Returns ``(b, h, n, dh)``.
    """
    if x.dim() != 4 or weight.dim() != 3 or weight.shape[:2] != x.shape[1:2] + x.shape[3:]:
        raise ValueError(f"x must be (b, h, n, dh) and weight (h, dh, W), got {tuple(x.shape)} "
                         f"and {tuple(weight.shape)}")
    width, n = weight.shape[-1], x.shape[2]
    tail = x[:, :, :1].expand(-1, -1, width - 1, -1).shape
    if before is None:
        before = x.new_zeros(tail)
    elif before.shape != tail:
        raise ValueError(f"before must be (b, h, W - 1, dh) = {tuple(tail)}, got {tuple(before.shape)}")
    b, h, _, dh = x.shape
    padded = torch.cat([before.to(x.dtype), x], dim=2)  # W - 1 tokens before the first
    # one depthwise conv1d over the h * dh channels; conv1d correlates (out[t] = sum_k w[k] *
    # in[t + k]), so tap s, which multiplies token t - s, sits at k = W - 1 - s: flipped
    channels = padded.transpose(2, 3).reshape(b, h * dh, n + width - 1)
    taps = weight.to(x.dtype).reshape(h * dh, 1, width).flip(-1)
    return F.conv1d(channels, taps, groups=h * dh).view(b, h, dh, n).transpose(2, 3)


def carried(memory, x: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The last ``width - 1`` raw queries and keys stored in ``memory`` (a ``KNNMemory``), each
    ``(b, h, W - 1, dh)``, zeros for rows whose memory is empty (a new document); None if
    nothing was carried."""
    last = getattr(memory, "conv_carry", None)
    if last is None or last[0].shape != x[:, :, :1].expand(-1, -1, width - 1, -1).shape:
        return None
    filled = (memory.sizes > 0).to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)
    return tuple(t.to(x.device) * filled for t in last)


def conv_window(q: torch.Tensor, k: torch.Tensor, w_q: torch.Tensor, w_k: torch.Tensor, *,
                pairs: bool = False, memory=None, store: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """A layer's convolved ``(q, k)``, each ``(b', h, n, dh)``, for the way it reads its window.

    ``pairs``: crossbatch, ``b' = 2 b`` windows ``(C_prev, C_curr)`` of each row, convolved as one
    sequence of ``2 n``. ``memory``: streaming, the window continues :func:`carried`, and
    ``store`` (the window goes into memory) carries its last raw tokens on. Neither: the window
    alone, zeros before it.
    """
    if pairs:
        join = lambda t: rearrange(t, "(b w) h n dh -> b h (w n) dh", w=2)  # noqa: E731
        split = lambda t: rearrange(t, "b h (w n) dh -> (b w) h n dh", w=2)  # noqa: E731
        return split(causal_conv(join(q), w_q)), split(causal_conv(join(k), w_k))
    if memory is None:
        return causal_conv(q, w_q), causal_conv(k, w_k)
    width = w_q.shape[-1]
    before = carried(memory, q, width)
    if before is None:
        before = (q.new_zeros(q[:, :, :1].expand(-1, -1, width - 1, -1).shape),) * 2
    out = causal_conv(q, w_q, before[0]), causal_conv(k, w_k, before[1])
    if store:  # the last W - 1 raw tokens, reaching into earlier windows if this one is shorter
        memory.conv_carry = tuple(torch.cat([b.to(t.dtype), t.detach()], dim=2)[:, :, -(width - 1):].clone()
                                  for b, t in zip(before, (q, k)))
    return out
