"""Serving, declared: its spec (the suite's [inference]), its figures — batch-1 latency
percentiles and batched throughput — and its headline (the throughput). Its run is
`bench.scenarios.inference.run`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.record.figure import HIGHER, LOWER, Figure, efficiency, median
from bench.record.schema import Record
from bench.scenarios.base import Scenario
from bench.spec import at_least, fail

THROUGHPUT = "throughput img/s"  # at the run's batch_size
LATENCY_P50 = "latency bs1 p50 ms"


@dataclass(frozen=True)
class InferenceSpec:
    """Latency at batch 1 and throughput at `batch_size`, each over a time window."""

    batch_size: int = 32
    warmup_s: float = 3.0
    duration_s: float = 10.0

    def check(self, where: str) -> None:
        at_least(f"{where}.batch_size", self.batch_size, 1)
        at_least(f"{where}.warmup_s", self.warmup_s, 0.0)
        if self.duration_s <= 0:
            fail(f"{where}.duration_s", "must be > 0, e.g. duration_s = 10")


def _samples(record: Record, name: str) -> np.ndarray:
    if name == "latency_bs1":
        return np.asarray(record.series[name].samples, dtype=float) * 1e3
    return record.series[name].rates()


def _figures(record: Record) -> list[Figure]:
    lat = np.asarray(record.series["latency_bs1"].samples, dtype=float) * 1e3
    batch = record.params["batch_size"]
    name = f"throughput_bs{batch}"
    mode = (record.throughput or {}).get("mode", "")
    # one name whatever the batch (a run parameter, in the note): a tuned batch size is then
    # the same figure as the default's (`tlbench tune`'s throughput objective)
    if name in record.series:
        throughput = Figure(THROUGHPUT, median(record.series[name].rates()), "img/s", HIGHER,
                            name, headline=True, note=f"batch {batch}; {mode}")
    else:  # schema 1 kept no completions to judge; its figure, counted from completions
        throughput = Figure(THROUGHPUT, record.measured.get("throughput_images_per_s"), "img/s",
                            HIGHER, headline=True,
                            note=f"batch {batch}; {record.note or mode}")
    flops = record.model.get("forward_flops")
    gflops = throughput.value * flops / 1e9 if flops and throughput.value else None
    return [
        Figure(LATENCY_P50, median(lat), "ms", LOWER, "latency_bs1"),
        Figure("latency bs1 p90 ms", float(np.percentile(lat, 90)), "ms", LOWER),
        Figure("latency bs1 p99 ms", float(np.percentile(lat, 99)), "ms", LOWER),
        Figure("bs1 img/s", 1e3 / median(lat), "img/s", HIGHER),
        throughput,
        Figure("infer GFLOP/s", gflops, "GFLOP/s", HIGHER),
        efficiency(record, gflops),
    ]


SCENARIO = Scenario("inference", InferenceSpec, _figures, _samples,
                    headline=lambda _params: THROUGHPUT, instances=True)
