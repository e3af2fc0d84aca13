"""Timing and interval helpers: timed calls, an asynchronous queue's completions in
sub-windows, and the batch-means interval of autocorrelated samples. Pure numpy (and scipy)."""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Callable, Sequence

import numpy as np

# A test-only slowdown, off unless set: TLBENCH_INJECT_SLOWDOWN=0.10 makes every timed training
# step (full training's micro-steps and updates) 10% longer, by sleeping a tenth of the step's
# own time inside the timed window. It exists to measure whether `compare` catches a known
# slowdown (`make drift-rates`); a run it touched records it (`injected_slowdown`).
INJECT_VAR = "TLBENCH_INJECT_SLOWDOWN"


def injected_slowdown() -> float:
    """The fraction TLBENCH_INJECT_SLOWDOWN asks for (0 when unset)."""
    text = os.environ.get(INJECT_VAR, "").strip()
    try:
        fraction = float(text or 0)
    except ValueError:
        fraction = -1.0
    if not 0 <= fraction <= 10:
        raise ValueError(f"{INJECT_VAR}={text!r}: give a fraction between 0 and 10 "
                         f"(0.10 for a 10% slowdown), or unset it")
    return fraction


def timed(fn: Callable[[], object], slowdown: float = 0.0) -> tuple[object, float]:
    """`fn()`'s result (waited for: a tensor is turned into a float) and its seconds, made
    `slowdown` longer by a sleep inside the window (the injected slowdown; 0: none)."""
    t0 = time.perf_counter()
    out = fn()
    if out is not None:
        out = float(out)  # wait for the result, not only the dispatch
    if slowdown:
        time.sleep((time.perf_counter() - t0) * slowdown)
    return out, time.perf_counter() - t0


# Student's t 0.975 quantiles by degrees of freedom (scipy.stats.t.ppf(0.975, df), to float
# precision; a test checks them): a batch-means interval has at most 30 batches, and the worker
# environments — ITEX's has no scipy — decide a growing window with the same interval.
T_975 = (12.706204736174694, 4.302652729749462, 3.1824463052837078, 2.7764451051977934,
         2.5705818356363146, 2.4469118511449786, 2.364624251592784, 2.306004135204166,
         2.262157162798205, 2.228138851986274, 2.200985160091639, 2.1788128296672284,
         2.1603686564627913, 2.144786687917804, 2.131449545559776, 2.1199052992212546,
         2.1098155778333156, 2.1009220402410382, 2.0930240544083087, 2.085963447265864,
         2.0796138447276795, 2.0738730679040254, 2.0686576104190486, 2.0638985616280245,
         2.0595385527532972, 2.0555294386428735, 2.0518305164802846, 2.0484071417952454,
         2.045229642132703)


def batch_means_interval(samples: Sequence[float]) -> tuple[float | None, float | None, str]:
    """95% interval of the mean of autocorrelated samples (consecutive steps of one process),
    by batch means: b = ⌊√n⌋ consecutive batches (2 to 30), whose means are close to
    independent, and Student's t with b - 1 degrees of freedom. Below 4 samples each is its own
    batch (too few to batch; the method says so). The samples are durations: a low bound under 0
    is 0. Returns (low, high, the method in words); one sample has no interval (None, None,
    why)."""
    x = np.asarray(samples, dtype=float)
    if x.size < 2:
        return None, None, f"no interval: {x.size} sample(s)"
    b = x.size if x.size < 4 else int(min(30, np.sqrt(x.size)))
    size = x.size // b
    means = x[: b * size].reshape(b, size).mean(axis=1)
    half = float(T_975[b - 2] * means.std(ddof=1) / np.sqrt(b))
    center = float(x.mean())
    method = (f"batch means, {b} batches of {size}" if size > 1
              else f"{b} samples, too few to batch")
    return max(0.0, center - half), center + half, f"{method}, Student's t with {b - 1} df"


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


def completion_bins(ends: Sequence[float], start: float, stop: float,
                    bin_s: float = 1.0, min_per_bin: int = 4) -> list[float]:
    """An asynchronous queue's completions in [start, stop) as samples of time per request.

    The completions are cut into about one group per `bin_s` of the window (fewer when a group
    would hold under `min_per_bin` completion instants), each of consecutive completions; a
    group's sample is the time from the completion before it (the last one before `start`, if
    `ends` has one, for the first group) to its last completion, over its requests. Requests
    completed at one instant (a batch answered at once) are one instant of their number, so a
    group never ends where it starts. The groups are delimited by completions, not by clock
    edges, so a sample is not a whole count of requests over a fixed length (a 1.6% step at 62
    requests a second), and the requests over the groups' summed time is the window's own rate.
    A window with one completion instant is one sample, its length over its requests. Request
    latencies are not used: with several requests in flight they include the wait for a free
    one."""
    times = np.sort(np.asarray(ends, dtype=float))
    inside = times[(times >= start) & (times < stop)]
    if inside.size == 0:  # also where stop <= start
        return []
    instants, counts = np.unique(inside, return_counts=True)
    anchor = times[times < start][-1:]
    marks = np.concatenate([anchor, instants])  # the anchor, then every completion instant
    done = np.cumsum(np.concatenate([np.zeros(anchor.size), counts]))  # requests up to each
    if marks.size == 1:
        return [(stop - start) / float(counts[0])]
    gaps = marks.size - 1  # the instants after the first mark
    groups = int(max(1, min(round((stop - start) / bin_s), gaps // min_per_bin)))
    cuts = np.linspace(0, gaps, groups + 1).round().astype(int)  # indices into marks
    return [float(marks[b] - marks[a]) / float(done[b] - done[a])
            for a, b in itertools.pairwise(cuts)]


# The machine's own speed at the time of a run, by a fixed kernel that no backend under test
# runs: numpy's float32 multiply and add over arrays that stay in cache, one thread, on each of
# the run's CPUs in turn (at most REFERENCE_MAX_CPUS of them, evenly spread). A shared VM's
# speed drifts between hours by more than a regression threshold — on the 2-vCPU dev VM the
# same training process ran at 20.5 and at 12 img/s, with no CPU steal either time — and only
# a measurement of the machine beside the run's own tells that drift from a slower stack.
REFERENCE_ELEMENTS = 32_768
REFERENCE_CALLS = 1_000  # per chunk: a chunk is about 10 ms on a 2020s core
REFERENCE_CHUNKS = 7
REFERENCE_MAX_CPUS = 8
REFERENCE_UNIT = "Gelem/s"


def reference_kernel() -> str:
    """What the reference rate measures, with the numpy that ran it: rates of two numpy
    versions (two environments) are of different code, and never compared."""
    return (f"numpy {np.__version__} float32 multiply+add of {REFERENCE_ELEMENTS} elements, "
            f"one thread per CPU, median of {REFERENCE_CHUNKS} chunks")


def reference_rate(cpus: Sequence[int]) -> dict[str, object]:
    """The reference kernel's rate (elements per second, in 1e9) on each of these CPUs, the
    calling thread pinned to each in turn and given back its affinity after; `rate` is their
    mean. About 0.1 s a CPU. Not for inside a timed window."""
    picked = sorted(cpus)
    if len(picked) > REFERENCE_MAX_CPUS:
        picked = [picked[i] for i in np.linspace(0, len(picked) - 1,
                                                 REFERENCE_MAX_CPUS).round().astype(int)]
    x = np.linspace(0.5, 1.5, REFERENCE_ELEMENTS, dtype=np.float32)
    y = np.full_like(x, 0.999)
    z = np.empty_like(x)
    original = os.sched_getaffinity(0)  # 0: this thread's own, on Linux
    per_cpu = {}
    try:
        for cpu in picked:
            os.sched_setaffinity(0, {cpu})
            chunks = []
            for _ in range(REFERENCE_CHUNKS):
                t0 = time.perf_counter()
                for _ in range(REFERENCE_CALLS):
                    np.multiply(x, y, out=z)
                    np.add(z, x, out=z)
                chunks.append(time.perf_counter() - t0)
            per_cpu[str(cpu)] = 2 * REFERENCE_CALLS * REFERENCE_ELEMENTS / float(
                np.median(chunks)) / 1e9
    finally:
        os.sched_setaffinity(0, original)
    return {"rate": float(np.mean(list(per_cpu.values()))), "per_cpu": per_cpu}


def reference(before: dict[str, object], after: dict[str, object]) -> dict[str, object]:
    """A process's record of the machine's speed: the reference rate just before and just
    after its scenario, and their geometric mean (`rate`), the figure compare reads."""
    return {"rate": math.sqrt(float(before["rate"]) * float(after["rate"])),
            "unit": REFERENCE_UNIT, "kernel": reference_kernel(),
            "before": before, "after": after}
