"""Intervals for the figures we report: every number comes with its sample size and a 95% interval.

* :func:`wilson`: a proportion (accuracy over value tokens, passkey over prompts), Wilson's score
  interval, which stays inside 0..1 and is honest for small ``n`` and for proportions near 0 or 1.
* :func:`bootstrap`: anything else (r_d, perplexity, ratios), by resampling the independent units
  (documents, windows; :func:`sum_by_group` pools dependent ones first) with replacement, 1000 times from a fixed seed, and taking the 2.5% and
  97.5% quantiles of the statistic.
* :func:`mcnemar`: two readings of the same prompts (top-k against dense memory), compared
  prompt by prompt: only the prompts on which they disagree count, and the exact binomial test
  asks whether one reading wins those more often than a coin would.

Value tokens of one document are not independent of each other, so a Wilson interval over tokens
is narrower than one over documents would be; the figures say which unit they count.
"""
from __future__ import annotations

import math
from typing import Callable

import torch


def wilson(p: float, n: int, z: float = 1.96) -> list[float]:
    """95% Wilson score interval of a proportion ``p`` measured on ``n`` trials."""
    if n <= 0:
        return [0.0, 1.0]
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(max(0.0, p * (1 - p)) / n + z * z / (4 * n * n)) / den
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def bootstrap(units: torch.Tensor, statistic: Callable[[torch.Tensor], torch.Tensor],
              draws: int = 1000, seed: int = 0) -> list[float]:
    """95% bootstrap interval of ``statistic`` over the rows of ``units`` ``(u, ...)``.

    ``statistic`` maps a ``(draws, u, ...)`` resample to ``(draws,)`` values; e.g. for a mean of
    ``(sum, count)`` pairs: ``lambda x: x[..., 0].sum(-1) / x[..., 1].sum(-1)``.
    """
    units = torch.as_tensor(units, dtype=torch.float64)
    if len(units) < 2:
        value = float(statistic(units[None])[0]) if len(units) else float("nan")
        return [round(value, 4), round(value, 4)]
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(len(units), (draws, len(units)), generator=generator)
    values = statistic(units[picks])
    low, high = torch.quantile(values, torch.tensor([0.025, 0.975], dtype=values.dtype)).tolist()
    return [round(low, 4), round(high, 4)]


def sum_by_group(units: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """``units`` ``(u, k)`` summed within each group of ``groups`` ``(u,)``: ``(g, k)``, groups in
    increasing order. Units of one group (pairs cut from one document) are not independent; a
    bootstrap of a ratio of sums must resample the groups, so hand it these sums."""
    units, groups = torch.as_tensor(units), torch.as_tensor(groups).flatten()
    if len(groups) != len(units):
        raise ValueError(f"groups has {len(groups)} entries for {len(units)} units: one per unit")
    ids, index = torch.unique(groups, return_inverse=True)
    return units.new_zeros((len(ids), *units.shape[1:])).index_add_(0, index.to(units.device), units)


def ratio_of_sums(resample: torch.Tensor) -> torch.Tensor:
    """For units ``(sum, count)``: the pooled mean ``sum / count`` of each resample."""
    return resample[..., 0].sum(-1) / resample[..., 1].sum(-1).clamp(min=1)


def exp_ratio_of_sums(resample: torch.Tensor) -> torch.Tensor:
    """For units ``(nll sum, tokens)``: the pooled perplexity of each resample."""
    return ratio_of_sums(resample).exp()


def mcnemar(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar p-value for paired outcomes: ``only_a`` items right under reading
    A alone, ``only_b`` under B alone (items right or wrong under both say nothing about which
    is better). 1.0 when the readings never disagree."""
    if min(only_a, only_b) < 0:
        raise ValueError(f"only_a={only_a!r}, only_b={only_b!r} are not allowed: counts >= 0")
    total = only_a + only_b
    tail = sum(math.comb(total, i) for i in range(min(only_a, only_b) + 1)) / 2 ** total
    return float(f"{min(1.0, 2 * tail):.3g}")  # 3 significant digits: small p-values stay > 0
