"""Raw samples → statistics. Pure numpy; warm-up is sliced off by the caller and kept apart."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np


def summarize(samples: Sequence[float]) -> dict[str, float | int]:
    """Median, IQR, spread and percentiles of raw samples (seconds or any unit)."""
    x = np.asarray(samples, dtype=float)
    if x.size == 0:
        raise ValueError("no samples to summarise")
    q1, median, q3, p90, p99 = np.percentile(x, [25, 50, 75, 90, 99])
    return {
        "n": int(x.size),
        "median": float(median),
        "mean": float(x.mean()),
        "stdev": float(x.std(ddof=1)) if x.size > 1 else 0.0,
        "q1": float(q1),
        "q3": float(q3),
        "iqr": float(q3 - q1),
        "p90": float(p90),
        "p99": float(p99),
        "min": float(x.min()),
        "max": float(x.max()),
    }


def mean_interval(samples: Sequence[float], confidence: float = 0.95, resamples: int = 2000,
                  seed: int = 0) -> tuple[float, float]:
    """Bootstrap percentile interval of the mean (no normality assumed; seeded, so repeatable)."""
    x = np.asarray(samples, dtype=float)
    if x.size < 2:
        raise ValueError("a confidence interval needs at least 2 samples")
    rng = np.random.default_rng(seed)
    means = rng.choice(x, size=(resamples, x.size), replace=True).mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


def project_total(step_samples: Sequence[float], steps: int, fixed_s: float = 0.0,
                  confidence: float = 0.95) -> dict[str, float | int | str]:
    """Project the wall time of `steps` steps from a steady-state window of step times.

    total = fixed_s + steps x mean(step); the interval comes from the mean's bootstrap interval.
    The mean (not the median) is used because a total is a sum: slow steps count.
    """
    lo, hi = mean_interval(step_samples, confidence)
    mean = float(np.mean(step_samples))
    return {
        "kind": "projected",
        "steps": steps,
        "window_steps": len(step_samples),
        "confidence": confidence,
        "total_s": fixed_s + steps * mean,
        "total_s_low": fixed_s + steps * lo,
        "total_s_high": fixed_s + steps * hi,
    }


def time_calls(fn: Callable[[], object], *, warmup_s: float, duration_s: float,
               min_samples: int = 5) -> tuple[list[float], list[float]]:
    """Call `fn` for a time-based warm-up, then for a measurement window; return both samples.

    Time-based windows (not fixed counts) because some runtimes need seconds to reach steady
    state. At least `min_samples` calls are measured even when one call outlasts the window.
    """
    warm: list[float] = []
    start = time.perf_counter()
    while not warm or time.perf_counter() - start < warmup_s:
        t0 = time.perf_counter()
        fn()
        warm.append(time.perf_counter() - t0)
    timed: list[float] = []
    start = time.perf_counter()
    while len(timed) < min_samples or time.perf_counter() - start < duration_s:
        t0 = time.perf_counter()
        fn()
        timed.append(time.perf_counter() - t0)
    return warm, timed
