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

Ordinary layers only (``ModelConfig.qk_conv`` refuses memory layers): a memory layer would need
the last ``W - 1`` queries and keys carried across window boundaries, as ``fot_edu.smear`` carries
its one key, and that is not built. An ordinary layer reads its window alone in training and at
inference, so zeros before the first token are what it always sees.

Differences from the paper: FoT and LongLLaMA use neither this nor smeared keys. It is our
addition for scale, as smearing is: measured by ``experiments/copy_emergence.py --qk-conv``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["causal_conv", "initial_weights"]


def initial_weights(heads: int, head_dim: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(w_q, w_k)``, each ``(heads, head_dim, width)``: the plain query, the evenly smeared key."""
    if not (isinstance(width, int) and width >= 2):
        raise ValueError(f"width={width!r} is not allowed: an integer >= 2 (1 is no convolution)")
    w_q, w_k = torch.zeros(heads, head_dim, width), torch.zeros(heads, head_dim, width)
    w_q[..., 0] = 1.0
    w_k[..., :2] = 0.5
    return w_q, w_k


def causal_conv(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``out[:, h, t, c] = sum_s weight[h, c, s] * x[:, h, t - s, c]`` (zeros before t = 0).

    ``x``: ``(b, h, n, dh)``; ``weight``: ``(h, dh, W)``. Returns ``(b, h, n, dh)``.
    """
    if x.dim() != 4 or weight.dim() != 3 or weight.shape[:2] != x.shape[1:2] + x.shape[3:]:
        raise ValueError(f"x must be (b, h, n, dh) and weight (h, dh, W), got {tuple(x.shape)} "
                         f"and {tuple(weight.shape)}")
    width, n = weight.shape[-1], x.shape[2]
    padded = F.pad(x, (0, 0, width - 1, 0))  # W - 1 zero tokens before the first
    weight = weight.to(x.dtype)
    return sum(weight[None, :, None, :, s] * padded[:, :, width - 1 - s: width - 1 - s + n]
               for s in range(width))
