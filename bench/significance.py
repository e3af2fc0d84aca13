"""The significance tests a comparison uses (pure): the Hodges–Lehmann ratio and Mann–Whitney U
for one process's samples a side, Welch's t on the logarithms of several processes' figures, and
Holm's adjustment of a comparison's p-values together. The paired test of one job's rounds is in
bench.paired."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.stats import mannwhitneyu, ttest_ind

HL_MAX_SIDE = 1500  # beyond, each side is reduced to evenly spaced order statistics


def _quantiles(x: np.ndarray) -> np.ndarray:
    """At most HL_MAX_SIDE evenly spaced order statistics: the same distribution, fewer pairs."""
    if x.size <= HL_MAX_SIDE:
        return x
    return np.sort(x)[np.linspace(0, x.size - 1, HL_MAX_SIDE).round().astype(int)]


def hodges_lehmann_ratio(base: Any, new: Any) -> float:
    """Median of all pairwise new/base ratios (in log space, so it is symmetric).

    Thousands of millisecond samples a side would make millions of pairs: each side is then
    reduced to its quantiles first, which moves the estimate by far less than its own noise.
    """
    logs = np.subtract.outer(_quantiles(np.log(np.asarray(new, float))),
                             _quantiles(np.log(np.asarray(base, float))))
    return float(np.exp(np.median(logs)))


def min_p_value(n1: int, n2: int) -> float:
    """The smallest two-sided exact Mann–Whitney p-value possible with n1 and n2 samples:
    2 / C(n1 + n2, n1), computed in logarithms (the binomial has thousands of digits at a few
    hundred samples a side, more than a float holds)."""
    if not (n1 and n2):
        return 1.0
    log_comb = math.lgamma(n1 + n2 + 1) - math.lgamma(n1 + 1) - math.lgamma(n2 + 1)
    return min(1.0, math.exp(math.log(2.0) - log_comb))


def holm(p_values: list[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (same order as given)."""
    m = len(p_values)
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted



def welch(base: np.ndarray, new: np.ndarray) -> float:
    p = float(ttest_ind(np.log(new), np.log(base), equal_var=False).pvalue)
    return 1.0 if math.isnan(p) else p  # every value tied: no evidence of a difference


def mann_whitney(base: np.ndarray, new: np.ndarray) -> float:
    p = float(mannwhitneyu(new, base, alternative="two-sided").pvalue)
    return 1.0 if math.isnan(p) else p
