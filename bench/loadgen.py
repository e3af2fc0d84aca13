"""MLPerf LoadGen driving a system under test, and what it measured, read back from its logs.

LoadGen (`mlcommons-loadgen`, imported as `mlperf_loadgen`) issues the queries — one after
another for SingleStream, all at once for Offline, Poisson arrivals at a target rate for
Server —, times every one from its scheduled time to its completion, and says whether the run is
valid by MLPerf's rules (minimum duration and queries, early stopping, and for Server the
latency bound at the 99th percentile). It calls our system under test (`Dispatcher`) with the
queries; the stack's `Server` runs them, each batch on the smallest compiled shape that holds it
(`buckets`: powers of two up to the largest), padded.

The system under test has one policy for every stack: the queries that are waiting when the
stack can take a batch are taken together, up to `largest` (no timer holds a batch back to fill
it). A synchronous stack (TensorFlow, PyTorch, JAX) runs one batch at a time, so batches form
while it is busy; an asynchronous queue (OpenVINO) takes a batch as soon as one of its requests
is free.

What LoadGen measured is read from its own files: the per-sample latencies from its trace (the
"Sample" events: scheduled → complete, in ns), its verdict and figures from the detail log's
`:::MLLOG` lines. The files are written to the directory the caller names (beside the run's
worker log), never to the current folder.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

INSTALL = "pip install mlcommons-loadgen==6.0.17 (make install and make itex install it)"
SCENARIOS = ("SingleStream", "Offline", "Server")

# a stack's batch runner: submit(images, done) runs `images` and calls done(outputs) when
# they are finished, in any thread
Submit = Callable[[np.ndarray, Callable[[np.ndarray], None]], None]


def missing() -> str | None:
    """Why LoadGen cannot be imported here (with the install command), or None."""
    try:
        import mlperf_loadgen  # noqa: F401
    except ImportError as e:
        return f"MLPerf LoadGen is not installed in this environment ({e}): {INSTALL}"
    return None


def version() -> str:
    from importlib.metadata import version as dist_version

    return dist_version("mlcommons-loadgen")


def buckets(largest: int) -> tuple[int, ...]:
    """The batch shapes a server compiles: the powers of two below `largest`, and `largest`. A
    batch of n queries runs on the smallest that holds it, padded: a CPU computes the padding
    too, so a batch of 2 padded to 32 would cost what 32 queries do."""
    sizes, size = [], 1
    while size < largest:
        sizes.append(size)
        size *= 2
    return (*sizes, largest)


def bucket(n: int, sizes: tuple[int, ...]) -> int:
    return next(size for size in sizes if size >= n)


@dataclass(frozen=True)
class Server:
    """How a stack serves: `submit` (see Submit), the batch shapes it compiled (a batch holds at
    most the largest), `wait` (until every submitted batch is done) and how it runs them."""

    submit: Submit
    sizes: tuple[int, ...]
    wait: Callable[[], None]
    mode: str

    @property
    def largest(self) -> int:
        return self.sizes[-1]


@dataclass
class Outcome:
    """One LoadGen run: its scenario and settings, LoadGen's verdict and figures, and every
    sample's latency and completion time as LoadGen timed them (seconds)."""

    scenario: str
    target_qps: float | None
    valid: bool
    reason: str  # LoadGen's reason when invalid, else its early-stopping note ("" if none)
    latencies_s: list[float]
    completions_s: list[float]  # from the test's first scheduled query
    figures: dict[str, float] = field(default_factory=dict)  # LoadGen's own, from its log
    batches: int = 0  # batches the system under test ran

    @property
    def p99_ms(self) -> float | None:
        """LoadGen's 99th percentile (what its Server validity is judged on), else ours."""
        if "p99_ns" in self.figures:
            return self.figures["p99_ns"] / 1e6
        return float(np.percentile(self.latencies_s, 99)) * 1e3 if self.latencies_s else None

    def to_dict(self) -> dict[str, Any]:
        """What a record keeps of a run (the latencies go into the record's series)."""
        return {"scenario": self.scenario, "target_qps": self.target_qps, "valid": self.valid,
                "reason": self.reason, "queries": len(self.latencies_s),
                "batches": self.batches, "p99_ms": self.p99_ms, "loadgen": self.figures}


class Dispatcher:
    """LoadGen's system under test: queries wait in arrival order; a dispatching thread hands
    the stack what waits, up to its `largest`, whenever the stack accepts a batch."""

    def __init__(self, server: Server, images: np.ndarray) -> None:
        self.server, self.images = server, images
        self.waiting: deque = deque()
        self.ready = threading.Condition()
        self.stopping = False
        self.error: BaseException | None = None
        self.batches = 0
        self.thread = threading.Thread(target=self._dispatch, name="tlbench-sut", daemon=True)
        self.thread.start()

    def issue(self, samples: list[Any]) -> None:
        with self.ready:
            self.waiting.extend(samples)
            self.ready.notify()

    def flush(self) -> None:
        pass

    def stop(self) -> None:
        with self.ready:
            self.stopping = True
            self.ready.notify()
        self.thread.join()

    def _dispatch(self) -> None:
        import mlperf_loadgen as lg

        def complete(ids: list[int]) -> None:
            lg.QuerySamplesComplete([lg.QuerySampleResponse(i, 0, 0) for i in ids])

        while True:
            with self.ready:
                while not self.waiting and not self.stopping:
                    self.ready.wait()
                if self.stopping and not self.waiting:
                    return
                taken = [self.waiting.popleft()
                         for _ in range(min(self.server.largest, len(self.waiting)))]
            ids = [s.id for s in taken]
            if self.error is not None:  # the stack failed: answer the rest so LoadGen ends
                complete(ids)
                continue
            try:
                self.batches += 1
                self.server.submit(self.images[[s.index for s in taken]],
                                   lambda _out, ids=ids: complete(ids))
            except BaseException as e:
                self.error = e
                complete(ids)


@dataclass(frozen=True)
class Settings:
    """One LoadGen run's settings: the scenario, how long and how many, and for Server the rate
    and the bound. Expected figures size the queries LoadGen generates."""

    scenario: str
    min_duration_s: float
    min_queries: int = 1
    expected_latency_s: float = 0.01  # SingleStream
    expected_qps: float = 10.0  # Offline
    target_qps: float = 0.0  # Server
    latency_bound_s: float = 0.0  # Server, at the 99th percentile
    seed: int = 0


def _test_settings(s: Settings) -> Any:
    import mlperf_loadgen as lg

    ts = lg.TestSettings()
    ts.scenario = getattr(lg.TestScenario, s.scenario)
    ts.mode = lg.TestMode.PerformanceOnly
    ts.min_duration_ms = int(s.min_duration_s * 1e3)
    ts.min_query_count = s.min_queries
    ts.qsl_rng_seed = ts.sample_index_rng_seed = ts.schedule_rng_seed = s.seed
    if s.scenario == "SingleStream":
        ts.single_stream_expected_latency_ns = max(1, int(s.expected_latency_s * 1e9))
    elif s.scenario == "Offline":
        ts.offline_expected_qps = s.expected_qps
    else:
        ts.server_target_qps = s.target_qps
        ts.server_target_latency_ns = int(s.latency_bound_s * 1e9)
        ts.server_target_latency_percentile = 0.99
    return ts


def run(settings: Settings, images: np.ndarray, server: Server, out: Path,
        cpus: tuple[int, ...] = ()) -> Outcome:
    """One LoadGen test of `server` on `images` (the query sample library: decoded, in memory),
    its logs and trace written to `out`. A stack that raises ends the run: the queries still
    waiting are answered so that LoadGen finishes, and the error is raised after it. `cpus`:
    LoadGen's threads run there (they inherit the affinity of the thread that starts the test),
    the stack's stay where they are."""
    import mlperf_loadgen as lg

    if settings.scenario not in SCENARIOS:
        raise ValueError(f"LoadGen scenario {settings.scenario!r}: one of {SCENARIOS}")
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("mlperf_log_*"):
        old.unlink()  # a file of an earlier test would be read as this one's
    dispatcher = Dispatcher(server, images)
    sut = lg.ConstructSUT(dispatcher.issue, dispatcher.flush)
    qsl = lg.ConstructQSL(len(images), len(images), lambda _i: None, lambda _i: None)
    log = lg.LogSettings()
    log.log_output.outdir = str(out)
    log.log_output.copy_summary_to_stdout = False
    log.enable_trace = True  # the per-sample latencies are read from the trace
    try:
        _on(cpus, lambda: lg.StartTestWithLogSettings(sut, qsl, _test_settings(settings), log))
    finally:
        server.wait()
        dispatcher.stop()
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
    if dispatcher.error is not None:
        raise RuntimeError(f"the system under test failed in LoadGen's {settings.scenario} "
                           f"run: {dispatcher.error!r}") from dispatcher.error
    return read(out, settings, dispatcher.batches)


def _on(cpus: tuple[int, ...], call: Callable[[], None]) -> None:
    """`call` on a thread of its own pinned to `cpus` (so are the threads it starts), or here."""
    if not cpus:
        call()
        return
    failed: list[BaseException] = []

    def pinned() -> None:
        try:
            os.sched_setaffinity(0, cpus)  # 0: this thread alone (Linux)
            call()
        except BaseException as exc:  # re-raised in the caller's thread
            failed.append(exc)

    thread = threading.Thread(target=pinned, name="loadgen")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]


def detail(path: Path) -> dict[str, Any]:
    """The `:::MLLOG` entries of LoadGen's detail log, key → value (the last one of a key)."""
    found = {}
    for line in path.read_text().splitlines():
        if line.startswith(":::MLLOG "):
            entry = json.loads(line.removeprefix(":::MLLOG "))
            found[entry["key"]] = entry["value"]
    return found


def samples(path: Path) -> tuple[list[float], list[float]]:
    """Each sample's latency and completion time (s, the latter from the first scheduled query)
    from LoadGen's trace: its "Sample" begin events carry `complete_ns` from the sample's
    scheduled time `ts` (µs). The trace is one event a line, not a valid JSON document."""
    events = []
    for line in path.read_text().splitlines():
        if line.startswith('{"name":"Sample"') and '"ph":"b"' in line:
            event = json.loads(line.rstrip(","))
            events.append((event["ts"] * 1e-6, event["args"]["complete_ns"] * 1e-9))
    if not events:
        return [], []
    start = min(ts for ts, _ in events)
    return [lat for _, lat in events], [ts - start + lat for ts, lat in events]


FIGURES = {  # LoadGen's detail-log keys kept in a record, by the name kept under
    "samples_per_s": "result_samples_per_second",
    "scheduled_qps": "result_scheduled_samples_per_sec",
    "completed_qps": "result_completed_samples_per_sec",
    "p50_ns": "result_50.00_percentile_latency_ns",
    "p90_ns": "result_90.00_percentile_latency_ns",
    "p99_ns": "result_99.00_percentile_latency_ns",
    "overlatency_queries": "result_overlatency_query_count",
    "early_stopping_p90_ns": "early_stopping_latency_ss",
    "min_duration_met": "result_min_duration_met",
}


def read(out: Path, settings: Settings, batches: int = 0) -> Outcome:
    found = detail(out / "mlperf_log_detail.txt")
    latencies, completions = samples(out / "mlperf_log_trace.json")
    valid = found.get("result_validity") == "VALID"
    reason = found.get("early_stopping_result", "")
    if not valid:
        reason = found.get("result_invalid_reason") or reason or "LoadGen gave no reason"
    return Outcome(settings.scenario, settings.target_qps or None, valid,
                   " ".join(str(reason).split()), latencies, completions,
                   {k: found[key] for k, key in FIGURES.items() if key in found}, batches)


@dataclass(frozen=True)
class Peak:
    """The Server peak search: the highest rate whose run was valid within the bound, the
    lowest invalid rate above it, and every run tried in order."""

    qps: float | None
    invalid_above: float | None
    tried: tuple[Outcome, ...]

    def lowest_p99_ms(self) -> float | None:
        seen = [o.p99_ms for o in self.tried if o.p99_ms is not None]
        return min(seen) if seen else None


def find_peak(probe: Callable[[float], Outcome], low: float, high: float, steps: int) -> Peak:
    """Bisection in log space between `low` and `high` queries/s: each step runs `probe` at the
    geometric middle of the bracket; a valid run raises the bracket's floor, an invalid one
    lowers its ceiling. `steps` runs: the bracket narrows to (high/low)^(1/2^steps). The
    middles never reach the floor itself, so when every step was invalid one more run probes
    `low`: the peak is at least that, or no rate of the bracket holds the bound."""
    if not 0 < low < high:
        raise ValueError(f"peak search bracket [{low}, {high}]: need 0 < low < high")
    floor, best, above = low, None, None
    tried = []
    for _ in range(steps):
        qps = math.sqrt(low * high)
        outcome = probe(qps)
        tried.append(outcome)
        if outcome.valid:
            best, low = qps, qps
        else:
            above, high = qps, qps
    if best is None and steps:
        outcome = probe(floor)
        tried.append(outcome)
        best = floor if outcome.valid else None
    return Peak(best, above, tuple(tried))
