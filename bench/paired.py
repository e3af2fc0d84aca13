"""Paired verdicts (pure): each process of one side judged against the process of the other side
that ran next to it.

In an interleaved `tlbench ab` job (or `make bench-ci` against a baseline built in the job),
round k runs every run on A then B, round k + 1 on B then A (bench.runner), so a run's A and B
processes of one round ran back to back, under the same machine state. The machine's speed moves
between hours by more than any threshold and between processes of one hour by a few per cent;
the ratio B_k / A_k of one round cancels most of it. So the verdict is on those ratios:

- pairs with a process disturbed on either side (a median of record.DISTURBED or more of its
  CPUs' time lost to CPU steal or other processes' load) are left out first;
- of the rest, a pair whose log ratio lies more than OUTLIER_Z modified z-scores (Iglewicz and
  Hoaglin: 0.6745 (x - median) / MAD) from the others' median is left out as disturbed in a
  way the probes did not see — one rule, named in the row's note when it fires;
- Student's one-sample t on the remaining log ratios (mean 0: no change), and their geometric
  mean as the ratio. Not Wilcoxon's signed-rank test: its smallest two-sided p-value with n
  pairs is 2 / 2^n, so a CI job of 6 pairs could never reach 0.01; the t test reaches it with
  three, and the log ratios of quiet pairs are close to normal (they are ratios of medians of
  many steps). The outlier rule is what guards it against the heavy tail.

`detectable_change` says what slowdown N pairs at the measured spread catch 9 times in 10.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import brentq
from scipy.stats import nct, ttest_1samp
from scipy.stats import t as student_t

from bench import record

# Iglewicz and Hoaglin's cut for the modified z-score: a normal sample of the sizes used here
# (5-20 pairs) puts a point beyond it about once in several hundred samples.
OUTLIER_Z = 3.5
MIN_PAIRS_FOR_OUTLIERS = 5  # below, a median absolute deviation says too little to drop any
POWER = 0.9  # "caught 9 times in 10": the detection rate the CI job is sized for


@dataclass(frozen=True)
class Pairs:
    """One figure's paired rounds: log(new_k / base_k) of the pairs judged, and which rounds
    (1-based) were left out and why."""

    log_ratios: np.ndarray
    rounds: tuple[int, ...]  # the rounds judged
    disturbed: tuple[int, ...] = ()
    outliers: tuple[int, ...] = ()
    missing: tuple[int, ...] = ()  # a side's process not ok, or without the figure

    @property
    def n(self) -> int:
        return int(self.log_ratios.size)

    @property
    def ratio(self) -> float | None:
        """new/base of the figure: the geometric mean of the judged pairs' ratios."""
        return float(np.exp(self.log_ratios.mean())) if self.n else None

    @property
    def spread(self) -> float | None:
        """The standard deviation of the judged log ratios (≈ the pairs' relative spread)."""
        return float(self.log_ratios.std(ddof=1)) if self.n > 1 else None

    def p_value(self) -> float:
        """Two-sided one-sample t on the log ratios; 1.0 with fewer than two pairs or none
        varying (no evidence either way)."""
        if self.n < 2 or not self.spread:
            return 1.0
        p = float(ttest_1samp(self.log_ratios, 0.0).pvalue)
        return 1.0 if math.isnan(p) else p

    def note(self) -> str:
        parts = [f"{self.n} pairs of adjacent processes"]
        if self.disturbed:
            parts.append(f"round(s) {_listed(self.disturbed)} left out: a process of the pair "
                         f"lost {record.DISTURBED['steal']:.0%} or more of its CPUs' time to "
                         f"steal or other processes")
        if self.outliers:
            parts.append(f"round(s) {_listed(self.outliers)} left out as outlier pair(s) "
                         f"(log ratio beyond {OUTLIER_Z:g} modified z-scores of the others)")
        if self.missing:
            parts.append(f"round(s) {_listed(self.missing)} have no pair")
        return "; ".join(parts)


def _listed(rounds: tuple[int, ...]) -> str:
    return ", ".join(map(str, rounds))


def _disturbed(process: Any) -> bool:
    return any(record.disturbed(process, kind) is not None for kind in record.DISTURBANCES)


def pair(base_run: dict[str, Any], new_run: dict[str, Any], name: str) -> Pairs:
    """The figure `name` of each round's base and new processes, paired round by round."""
    logs: list[float] = []
    judged: list[int] = []
    disturbed: list[int] = []
    missing: list[int] = []
    for k, (b, n) in enumerate(itertools.zip_longest(record.rounds(base_run),
                                                     record.rounds(new_run)), start=1):
        values = [record.figures(p).get(name) if p is not None and p.status == "ok" else None
                  for p in (b, n)]
        if any(v is None or not v.value for v in values):
            missing.append(k)
        elif _disturbed(b) or _disturbed(n):
            disturbed.append(k)
        else:
            logs.append(math.log(values[1].value / values[0].value))
            judged.append(k)
    logs_a = np.asarray(logs, float)
    outliers = _outliers(logs_a)
    keep = ~outliers
    return Pairs(logs_a[keep], tuple(np.asarray(judged)[keep].tolist()), tuple(disturbed),
                 tuple(np.asarray(judged)[outliers].tolist()), tuple(missing))


def _outliers(logs: np.ndarray) -> np.ndarray:
    """Which log ratios lie beyond OUTLIER_Z modified z-scores of the median."""
    out = np.zeros(logs.size, bool)
    if logs.size < MIN_PAIRS_FOR_OUTLIERS:
        return out
    mad = float(np.median(np.abs(logs - np.median(logs))))
    if mad == 0:
        return out
    return np.abs(0.6745 * (logs - np.median(logs)) / mad) > OUTLIER_Z


def detectable_change(n: int, spread: float | None, alpha: float,
                      power: float = POWER) -> float | None:
    """The smallest change (as a fraction: 0.1 = 10%) that `n` pairs whose log ratios spread by
    `spread` (a standard deviation) detect with probability `power` in a two-sided one-sample t
    test at `alpha` — from the noncentral t distribution; None when it cannot be said (fewer
    than two pairs, no spread measured)."""
    if n < 2 or not spread:
        return None
    df = n - 1
    critical = float(student_t.ppf(1 - alpha / 2, df))

    def shortfall(effect: float) -> float:
        shift = effect * math.sqrt(n) / spread
        # the wrong tail is negligible for a positive shift; scipy's nct gives NaN for it
        # far out (e.g. 7 degrees of freedom, a shift of 10)
        wrong = float(nct.cdf(-critical, df, shift))
        return float(nct.sf(critical, df, shift)) + (0.0 if math.isnan(wrong) else wrong) - power

    upper = spread
    while shortfall(upper) < 0:
        upper *= 2
    return math.expm1(brentq(shortfall, 0.0, upper))
