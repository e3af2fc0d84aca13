"""Serving under a latency bound, measured by MLPerf's LoadGen, declared: its spec (the suite's
[serving]), its figures — SingleStream latency percentiles, Offline samples/s and the Server
peak: the most queries per second whose run LoadGen judges valid with 99% of them answered
within the bound — and its headline (the Server peak). Its run is
`bench.scenarios.serving.run`; LoadGen is driven by `bench.loadgen`.

The Server peak is this figure, defined here once: `tlbench tune`'s latency-bound objective
reads it from here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.loadgen import INSTALL
from bench.record.figure import HIGHER, LOWER, NEITHER, Figure, median
from bench.record.schema import Record
from bench.scenarios.base import Scenario
from bench.spec import at_least, fail

# The default bound, a multiple of the run's own SingleStream p90 (scaled up where the Server's
# system answers one query slower, as OpenVINO's throughput streams do): room for a query to
# wait for the batch before it and to be served in a batch of `server_batch` (which took 1.5-3x a
# single query on the 2-vCPU VMs), so that the bound can be met and batching can pay.
BOUND_FACTOR = 4.0
PEAK = "server peak QPS"


@dataclass(frozen=True)
class ServingSpec:
    """LoadGen's SingleStream, Offline and Server scenarios on the stack's predictor. Runs are
    far shorter than MLPerf's 600 s minimum (labelled so in the record)."""

    batch_size: int = 32  # Offline: the batches the system under test runs
    server_batch: int = 4  # Server: the most waiting queries served in one batch
    warmup_s: float = 2.0  # each compiled shape warmed before LoadGen starts
    single_stream_s: float = 10.0  # LoadGen's minimum duration of each run
    offline_s: float = 10.0
    server_s: float = 10.0
    # a Server run's minimum queries: LoadGen's early stopping needs about 460 for a p99 at
    # 99% confidence with none over the bound, more with some over it
    server_queries: int = 600
    # 0: BOUND_FACTOR x this run's SingleStream p90 (x the Server's batch-1 slowdown, if any)
    latency_bound_ms: float = 0.0
    search_steps: int = 5  # Server runs of the peak search (a bisection in log space)

    def check(self, where: str) -> None:
        at_least(f"{where}.batch_size", self.batch_size, 1)
        at_least(f"{where}.server_batch", self.server_batch, 1)
        at_least(f"{where}.warmup_s", self.warmup_s, 0.0)
        for key in ("single_stream_s", "offline_s", "server_s"):
            if getattr(self, key) <= 0:
                fail(f"{where}.{key}", f"must be > 0 seconds, e.g. {key} = 10")
        at_least(f"{where}.server_queries", self.server_queries, 1)
        at_least(f"{where}.latency_bound_ms", self.latency_bound_ms, 0.0)
        at_least(f"{where}.search_steps", self.search_steps, 1)


def _samples(record: Record, name: str) -> np.ndarray:
    if name == "singlestream":
        return np.asarray(record.series[name].samples, dtype=float) * 1e3
    return record.series[name].rates()


def peak_note(serving: dict) -> str:
    """What the Server peak figure says beside its value: the bound, the bracketing runs, or
    that no rate met the bound and the lowest p99 seen."""
    peak, bound = serving["peak"], serving["bound_ms"]
    if peak["qps"] is None:
        lowest = peak.get("lowest_p99_ms")
        seen = f"; lowest p99 seen {lowest:.1f} ms" if lowest is not None else ""
        return f"no valid rate at this bound ({bound:.1f} ms){seen}"
    above = peak.get("invalid_above")
    bracket = f", invalid at {above:.1f}" if above is not None else ", no invalid rate tried"
    return f"p99 within {bound:.1f} ms ({serving['bound_rule']}){bracket}"


def invalid(serving: dict, scenario: str) -> str | None:
    """LoadGen's reason when its `scenario` run (SingleStream or Offline) was invalid."""
    run = next((r for r in serving.get("runs", ()) if r["scenario"] == scenario), None)
    return None if run is None or run["valid"] else f"invalid by LoadGen: {run['reason']}"


def _figures(record: Record) -> list[Figure]:
    lat = np.asarray(record.series["singlestream"].samples, dtype=float) * 1e3
    serving = record.serving or {}
    peak = serving.get("peak") or {}
    single, bulk = invalid(serving, "SingleStream"), invalid(serving, "Offline")
    offline = next((r["loadgen"] for r in serving.get("runs", ()) if r["scenario"] == "Offline"),
                   {})

    def unless(why: str | None, value: float) -> float | None:
        return None if why else value  # an invalid run is shown with its reason, not a figure

    return [
        Figure("singlestream p50 ms", unless(single, median(lat)), "ms", LOWER,
               None if single else "singlestream", note=single or ""),
        Figure("singlestream p90 ms", unless(single, float(np.percentile(lat, 90))), "ms",
               LOWER, note=single or "MLPerf's SingleStream metric"),
        Figure("singlestream p99 ms", unless(single, float(np.percentile(lat, 99))), "ms",
               LOWER, note=single or ""),
        Figure("offline samples/s", unless(bulk, offline.get("samples_per_s")), "samples/s",
               HIGHER, note=bulk or "LoadGen's: every sample over the whole run (MLPerf's "
                                    "Offline metric)"),
        Figure("offline group samples/s", unless(bulk, median(record.series["offline"].rates())),
               "samples/s", HIGHER, None if bulk else "offline",
               note=bulk or "the median of groups of about a second of completions, each at "
                            "least one batch: what compare judges"),
        Figure(PEAK, peak.get("qps"), "queries/s", HIGHER, headline=True,
               note=peak_note(serving) if peak else ""),
        Figure("server p99 ms at peak", peak.get("p99_ms"), "ms", LOWER),
        Figure("latency bound ms", serving.get("bound_ms"), "ms", NEITHER,
               note=serving.get("bound_rule", "")),
    ]


SCENARIO = Scenario("serving", ServingSpec, _figures, _samples, headline=lambda _params: PEAK,
                    needs=(("mlperf_loadgen", INSTALL),), default=False)
