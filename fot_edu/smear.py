r"""Smeared keys: each key mixes in the key of the token before it, so copying is one head away.

Paper: Olsson et al. 2022, "In-context Learning and Induction Heads"
(https://transformer-circuits.pub/2022/in-context-learning-and-induction-heads), the
"smeared key" model of its Argument 2.

Copying from context (an **induction head**: at a token ``A``, find the earlier ``A`` and predict
what followed it, ``B``) needs two steps in an ordinary transformer: a previous-token head in
one layer writes "the token before me was ``A``" into each position, and a head in a later layer
matches its query (``A``) against those keys. Small models trained on little data find that
composition slowly or not at all (``experiments/copy_emergence.py``). Smearing puts the previous
token's key into each key directly, with one learned scalar :math:`a_h` per head:

.. math::

    \tilde k_j = \sigma(a_h)\, k_j + \big(1 - \sigma(a_h)\big)\, k_{j-1}, \qquad a_h = 0
    \text{ at init (an even mix)},

computed before RoPE (a memory layer of kind ``"none"``: before normalising), so one head can
match "the token before ``B`` was ``A``" by itself.

==================  =====================  ==================================================
paper               code                   shape
==================  =====================  ==================================================
:math:`k_j`         ``keys``               ``(b, h, n, dh)`` projected, before RoPE
:math:`k_{j-1}`     ``before`` at j = 0    ``(b, h, 1, dh)``; zeros where nothing came before
:math:`a_h`         ``logit``              ``(h,)``; ``ModelConfig.smear_keys`` names layers
==================  =====================  ==================================================

Across windows. A memory layer's window is not the start of its document: its first key is
smeared with the last key of the window before it. Crossbatch (``C_curr`` after ``C_prev``)
smears the two windows as one sequence; streaming and ``prefill`` keep the last raw key of what
they stored in the memory (:func:`carried_key`, :func:`carry`). An ordinary layer sees its
window alone, in training and at inference, so its first key mixes with zeros.

Differences from the paper: FoT and LongLLaMA do not smear keys. It is our addition, made for
scale: a 4-layer, 128-wide byte model on a CPU budget does not find the two-layer circuit in
time, and without in-window copying a memory layer has nothing to extend.
"""
from __future__ import annotations

import torch
from einops import rearrange

__all__ = ["smear", "smear_window", "carried_key", "carry"]


def smear(keys: torch.Tensor, logit: torch.Tensor, before: torch.Tensor | None = None) -> torch.Tensor:
    """``sigmoid(logit) * k_j + (1 - sigmoid(logit)) * k_(j-1)`` per head: ``(b, h, n, dh)``.

    ``before``: ``(b, h, 1, dh)``, the key before the first one (None: zeros, nothing before).
    """
    if keys.dim() != 4 or logit.shape != (keys.shape[1],):
        raise ValueError(f"keys must be (b, h, n, dh) and logit (h,), got {tuple(keys.shape)} "
                         f"and {tuple(logit.shape)}")
    if before is None:
        before = keys.new_zeros(keys[:, :, :1].shape)
    elif before.shape != keys[:, :, :1].shape:
        raise ValueError(f"before must be (b, h, 1, dh) = {tuple(keys[:, :, :1].shape)}, "
                         f"got {tuple(before.shape)}")
    share = torch.sigmoid(logit).to(keys.dtype).view(1, -1, 1, 1)
    previous = torch.cat([before.to(keys.dtype), keys[:, :, :-1]], dim=2)
    return share * keys + (1 - share) * previous


def carried_key(memory, keys: torch.Tensor) -> torch.Tensor | None:
    """The raw key stored last in ``memory`` (a ``KNNMemory``) for each row, zeros for rows
    whose memory is empty (a new document): ``(b, h, 1, dh)``, or None if nothing was carried."""
    last = getattr(memory, "smear_carry", None)
    if last is None or last.shape != keys[:, :, :1].shape:
        return None
    filled = (memory.sizes > 0).to(device=last.device, dtype=last.dtype).view(-1, 1, 1, 1)
    return (last * filled).to(keys.device)


def carry(memory, keys: torch.Tensor) -> None:
    """Remember the last raw key of ``keys`` ``(b, h, n, dh)``, which ``memory`` is about to store."""
    memory.smear_carry = keys[:, :, -1:].detach().clone()


def smear_window(keys: torch.Tensor, logit: torch.Tensor, *, pairs: bool = False, memory=None,
                 store: bool = False) -> torch.Tensor:
    """A layer's smeared keys ``(b', h, n, dh)`` for the way it reads its window.

    ``pairs``: crossbatch, ``b' = 2 b`` windows ``(C_prev, C_curr)`` of each row, smeared as one
    sequence of ``2 n``. ``memory``: streaming, the first key mixes with :func:`carried_key`, and
    ``store`` (the window goes into memory) carries this window's last key on. Neither: the
    window alone, zeros before it.
    """
    if pairs:
        two = rearrange(keys, "(b w) h n dh -> b h (w n) dh", w=2)
        return rearrange(smear(two, logit), "b h (w n) dh -> (b w) h n dh", w=2)
    if memory is None:
        return smear(keys, logit)
    smeared = smear(keys, logit, carried_key(memory, keys))
    if store:
        carry(memory, keys)
    return smeared
