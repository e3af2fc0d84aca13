"""How often `compare` cries wolf, and how often it catches a known slowdown, on real processes.

Input: the two result files of one interleaved `tlbench ab` job with many processes a run (its
repeats), side A as it is and side B with the test-only slowdown (TLBENCH_INJECT_SLOWDOWN). Each
trial keeps `half` pairs of processes of every run and judges them with `bench.compare` on pairs
(bench.paired), as `tlbench ab` judges a job of `half` rounds:

- A/A: `half` pairs of consecutive rounds of A (round k against round k + 1) — any `worse` row
  is a false alarm. Two processes of A a round apart ran further apart in time than an A/B pair
  of one round, so a drift through the job weighs more on them: the A/A rate errs high;
- detection: `half` rounds, A against B of the same rounds — a run B slowed (it records
  `injected_slowdown`) is caught when its judged training figure is `worse`; B's other runs,
  not slowed, are A/A pairs of one round and should come out `same`.

Different trials share processes (there are only so many), so the trials are not independent:
read the rates as what this machine's noise allows at that many pairs, not as a precise
probability. Pure: no runtime is imported.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from typing import Any

from bench import compare, record

TRAINING = record.headline_name("full_training", {})  # the figure the slowdown should move


class RatesError(ValueError):
    """Results that cannot give the rates (too few processes, a failed run)."""


def processes(doc: dict[str, Any]) -> int:
    """The processes every ok run of a result has (its rounds)."""
    counts = {r["run_id"]: len(record.rounds(r)) for r in doc["runs"] if r["status"] == "ok"}
    if not counts:
        raise RatesError("no run finished ok")
    return min(counts.values())


def keep_rounds(doc: dict[str, Any], rounds: tuple[int, ...]) -> dict[str, Any]:
    """The result as if only these rounds (0-based) had been run; runs not ok are left out."""
    runs = []
    for run in doc["runs"]:
        if run["status"] != "ok":
            continue
        procs = record.rounds(run)
        chosen = [procs[i] for i in rounds]
        runs.append(record.to_dict(dataclasses.replace(
            chosen[0], repeats=tuple(record.to_dict(p) for p in chosen[1:]))))
    return {**doc, "runs": runs}


def draws(n: int, half: int, trials: int, seed: int,
          consecutive: bool) -> list[tuple[tuple[int, ...], ...]]:
    """`trials` distinct draws of `half` pairs of `n` rounds (0-based): the same rounds on both
    sides, or (`consecutive`) rounds k on one side and k + 1 on the other, no round twice."""
    need = 2 * half if consecutive else half
    if need > n:
        raise RatesError(f"{half} pairs of {'consecutive rounds' if consecutive else 'rounds'} "
                         f"need {need} rounds; the results have {n} a run: rerun with --repeats "
                         f"{need} or lower --half")
    rng = random.Random(seed)
    seen: list[tuple[tuple[int, ...], ...]] = []
    for _ in range(trials * 100):
        if consecutive:
            starts = sorted(rng.sample(range(n - 1), half))
            if any(b - a < 2 for a, b in itertools.pairwise(starts)):
                continue
            pair = (tuple(starts), tuple(k + 1 for k in starts))
        else:
            rounds = tuple(sorted(rng.sample(range(n), half)))
            pair = (rounds, rounds)
        if pair not in seen:
            seen.append(pair)
        if len(seen) == trials:
            break
    return seen


def _trial(base: dict[str, Any], new: dict[str, Any], pair: tuple[tuple[int, ...], ...],
           max_slowdown_pct: float, alpha: float) -> dict[str, Any]:
    rows = compare.compare(keep_rounds(base, pair[0]), keep_rounds(new, pair[1]),
                           max_slowdown_pct, alpha, pairs=True)
    return {"base_rounds": [i + 1 for i in pair[0]], "new_rounds": [i + 1 for i in pair[1]],
            "rows": [{"run_id": r.run_id, "metric": r.metric, "status": r.status,
                      "time_change_pct": r.time_change_pct, "p_value": r.p_value}
                     for r in rows]}


def slowed(doc: dict[str, Any]) -> dict[str, float]:
    """The runs of a result that the test-only slowdown touched, with its fraction."""
    return {r["run_id"]: r["injected_slowdown"] for r in doc["runs"]
            if r.get("injected_slowdown")}


def measure(a: dict[str, Any], b: dict[str, Any], half: int, trials: int = 10, seed: int = 0,
            max_slowdown_pct: float = compare.DEFAULT_MAX_SLOWDOWN_PCT,
            alpha: float = compare.ALPHA) -> dict[str, Any]:
    """The A/A and detection trials and their rates (see the module's docstring)."""
    if slowed(a):
        raise RatesError(f"side A was slowed ({', '.join(slowed(a))}): A must be the stack as "
                         f"it is, B the one with TLBENCH_INJECT_SLOWDOWN")
    injected = slowed(b)
    if not injected:
        raise RatesError("side B has no run with an injected slowdown: run B's workers with "
                         "TLBENCH_INJECT_SLOWDOWN=0.10 (tlbench ab --b-env)")
    n = min(processes(a), processes(b))
    aa = [_trial(a, a, pair, max_slowdown_pct, alpha)
          for pair in draws(processes(a), half, trials, seed, consecutive=True)]
    ab = [_trial(a, b, pair, max_slowdown_pct, alpha)
          for pair in draws(n, half, trials, seed + 1, consecutive=False)]
    training = [run_id for run_id in injected if run_id.startswith("full_training")]

    def caught(trial: dict[str, Any], run_id: str) -> bool:
        return any(r["run_id"] == run_id and r["metric"] == TRAINING
                   and r["status"] == compare.WORSE for r in trial["rows"])

    def untouched_worse(trial: dict[str, Any]) -> int:
        return sum(r["status"] == compare.WORSE for r in trial["rows"]
                   if r["run_id"] not in injected)

    return {
        "half": half, "processes": {"A": processes(a), "B": processes(b)},
        "max_slowdown_pct": max_slowdown_pct, "alpha": alpha,
        "injected": injected,
        "aa": {"trials": aa, "false_alarms": sum(any(r["status"] == compare.WORSE
                                                     for r in t["rows"]) for t in aa),
               "improved": sum(any(r["status"] == compare.IMPROVED for r in t["rows"])
                               for t in aa)},
        "detection": {"trials": ab,
                      "caught": {run_id: sum(caught(t, run_id) for t in ab)
                                 for run_id in training},
                      "all_caught": sum(all(caught(t, run_id) for run_id in training)
                                        for t in ab),
                      "false_alarms_elsewhere": sum(untouched_worse(t) > 0 for t in ab)},
    }
