"""Serving under MLPerf's LoadGen: the stack's predictor is LoadGen's system under test, the
query sample library the held-out face images, decoded before the clock.

In order: each compiled shape warmed; a null system under test (answers at once) measures what
LoadGen and the dispatching thread cost per query on this machine; SingleStream (one query at a
time, batch 1, as the inference scenario's batch-1 latency runs it: OpenVINO's LATENCY hint);
Offline (every query at once, batches of `batch_size`); then the Server peak search at the
latency bound: Poisson arrivals at a target rate, the waiting queries served together up to
`server_batch`; the default bound is BOUND_FACTOR x SingleStream's p90, times how much slower
the Server system answers one query where it does. LoadGen's threads run on a core the run leaves
free where the machine has one (the record says which), else on the run's own CPUs, as a
serving process's would.
"""

from __future__ import annotations

import itertools
import resource
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench import loadgen, pinning
from bench.backends.base import Backend
from bench.measure import completion_bins
from bench.record import Series
from bench.scenarios.common import Progress, held_out, load_model, prepare, tiled
from bench.scenarios.serving import BOUND_FACTOR, ServingSpec

SHORT = ("runs of {s:g} s and more (LoadGen's minimum duration here), far shorter than MLPerf's "
         "600 s: not an MLPerf result")


def _call(server: loadgen.Server, batch: np.ndarray) -> float:
    """One batch through the server, waited for: its seconds."""
    finished = threading.Event()
    t0 = time.perf_counter()
    server.submit(batch, lambda _out: finished.set())
    finished.wait()
    return time.perf_counter() - t0


def _warm(server: loadgen.Server, images: np.ndarray, size: int,
          seconds: float) -> list[float]:
    """Calls of one batch size for `seconds` (at least two): their times, the first apart."""
    batch = tiled(images, size)
    times = [_call(server, batch)]
    start = time.perf_counter()
    while len(times) < 2 or time.perf_counter() - start < seconds:
        times.append(_call(server, batch))
    return times


def _null() -> loadgen.Server:
    """A system under test that answers at once: what is left is LoadGen's and ours."""
    return loadgen.Server(lambda batch, done: done(batch), (1,), lambda: None, "answers at once")


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def loadgen_cost(images: np.ndarray, out: Path, seconds: float = 2.0,
                 cpus: tuple[int, ...] = ()) -> dict[str, Any]:
    """LoadGen's own cost on this machine: a SingleStream run of a null system under test, the
    process's CPU seconds and the latency per query (LoadGen, its Python binding, our
    dispatching thread)."""
    cpu = _cpu_s()
    outcome = loadgen.run(loadgen.Settings("SingleStream", seconds, 64, 1e-4), images, _null(),
                          out / "null", cpus)
    queries = len(outcome.latencies_s)
    return {"queries": queries, "cpu_ms_per_query": (_cpu_s() - cpu) * 1e3 / max(queries, 1),
            "p50_latency_ms": float(np.median(outcome.latencies_s)) * 1e3 if queries else None}


OFFLINE_RETRIES = 2  # a query sized from a rate too low, re-run at twice the fastest rate seen


def _offline(server: loadgen.Server, images: np.ndarray, spec: ServingSpec, rate: float,
             out: Path, seed: int, cpus: tuple[int, ...]) -> loadgen.Outcome:
    """Offline: LoadGen sizes its one query from the expected rate (rate x duration x 1.1), so
    a stack faster than the warm batches said (an asynchronous queue; a machine that was busier
    during the warm-up) finishes before the minimum duration: it runs again, expecting twice the
    fastest rate LoadGen measured, at most `OFFLINE_RETRIES` times."""
    settings = loadgen.Settings("Offline", spec.offline_s, 1, expected_qps=rate, seed=seed)
    outcome = loadgen.run(settings, images, server, out, cpus)
    fastest = rate
    for _ in range(OFFLINE_RETRIES):
        if outcome.figures.get("min_duration_met") is not False:
            break
        fastest = max(fastest, outcome.figures.get("samples_per_s") or 0.0)
        settings = replace(settings, expected_qps=2 * fastest)
        outcome = loadgen.run(settings, images, server, out, cpus)
    return outcome


def run(run: dict[str, Any], backend: Backend, progress: Progress) -> dict[str, Any]:
    problem = loadgen.missing()
    if problem:
        raise RuntimeError(problem)
    spec = ServingSpec(**run["params"])
    split, base, facts = prepare(run, progress)
    progress("load model into the runtime")
    loaded = load_model(run, backend, base, facts["weights"], split)
    images = held_out(split.test, run["model"]["image_size"])
    out = (Path(run["log"]).with_suffix(".loadgen") if run.get("log")
           else Path(tempfile.mkdtemp(prefix="tlbench-loadgen-")))
    seed = run["data"]["seed"]

    single = backend.server(loaded, (1,), latency=True)
    one = backend.server(loaded, loadgen.buckets(spec.server_batch))
    offline = backend.server(loaded, (spec.batch_size,))
    progress(f"warm-up: batch 1, {', '.join(map(str, one.sizes))} and {spec.batch_size}")
    single_warm = _warm(single, images, 1, spec.warmup_s)
    server_warm = {size: _warm(one, images, size, spec.warmup_s) for size in one.sizes}
    batch_warm = _warm(offline, images, spec.batch_size, spec.warmup_s)
    single_median = float(np.median(single_warm[1:]))

    apart = pinning.apart_from_run()  # a core the run leaves free, for LoadGen's threads
    progress("LoadGen's own cost: a null system under test")
    cost = loadgen_cost(images, out, cpus=apart)

    progress(f"SingleStream: {spec.single_stream_s:g} s")
    stream = loadgen.run(loadgen.Settings("SingleStream", spec.single_stream_s, 64,
                                          expected_latency_s=single_median,
                                          seed=seed), images, single, out / "singlestream",
                           apart)
    progress(f"Offline: {spec.offline_s:g} s")
    bulk = _offline(offline, images, spec, spec.batch_size / float(np.median(batch_warm[1:])),
                    out / "offline", seed, apart)

    p90 = float(np.percentile(stream.latencies_s, 90))
    # The Server's own batch-1 answer can be slower than SingleStream's (OpenVINO serves on its
    # throughput streams, SingleStream on the LATENCY hint): a bound from SingleStream alone could
    # be one the Server meets at no rate. Medians of the two warm-ups, which ran back to back,
    # say by how much; a warm-up's few slow first calls move its p90, hardly its median.
    slower = max(1.0, float(np.median(server_warm[1][1:])) / single_median)
    bound_s = spec.latency_bound_ms / 1e3 or BOUND_FACTOR * p90 * slower
    rule = ("the suite's latency_bound_ms" if spec.latency_bound_ms
            else f"{BOUND_FACTOR:g} x this run's SingleStream p90" + (
                f" x {slower:.2f}, the Server system's batch-1 median over SingleStream's"
                if slower > 1 else ""))
    high = len(bulk.latencies_s) / max(bulk.completions_s)  # what full batches held
    low = min(0.25 / float(np.median(stream.latencies_s)), high / 4)
    step = itertools.count(1)  # search_steps, and the floor when every step was invalid

    def probe(qps: float) -> loadgen.Outcome:
        k = next(step)
        which = f"{k}/{spec.search_steps}" if k <= spec.search_steps else "the floor"
        progress(f"Server peak search {which}: {qps:.1f} queries/s",
                 min(k - 1, spec.search_steps), spec.search_steps)
        return loadgen.run(loadgen.Settings("Server", spec.server_s, spec.server_queries,
                                            target_qps=qps, latency_bound_s=bound_s, seed=seed),
                           images, one, out / f"server-{k}", apart)

    peak = loadgen.find_peak(probe, low, high, spec.search_steps)
    at_peak = next((o for o in peak.tried if o.valid and o.target_qps == peak.qps), None)
    return {
        "model": facts,
        "data": split.describe(),
        "series": {
            "singlestream": Series.of(1, single_warm[0], single_warm[1:], stream.latencies_s),
            # a synchronous stack answers a batch at one instant: at least one batch a group
            "offline": Series.of(1, None, [], completion_bins(
                bulk.completions_s, 0.0, np.nextafter(max(bulk.completions_s), np.inf),
                min_per_bin=1), per="bin"),
        },
        "serving": {
            "loadgen": loadgen.version(),
            "logs": str(out),
            "duration": SHORT.format(s=min(spec.single_stream_s, spec.offline_s,
                                           spec.server_s)),
            "threads": (f"LoadGen's threads on CPU {', '.join(map(str, apart))}, a core apart "
                        f"from the stack's" if apart else
                        "LoadGen's threads share the run's CPUs with the stack (no core spare)"),
            "loadgen_cost": cost,
            "single_mode": single.mode,
            "server_mode": one.mode,
            "offline_mode": offline.mode,
            "bound_ms": bound_s * 1e3,
            "server_batch1_slower": slower,
            "bound_rule": rule,
            "runs": [o.to_dict() for o in (stream, bulk, *peak.tried)],
            "peak": {"qps": peak.qps, "invalid_above": peak.invalid_above,
                     "p99_ms": at_peak.p99_ms if at_peak else None,
                     "lowest_p99_ms": peak.lowest_p99_ms(), "bracket": [low, high]},
        },
    }
