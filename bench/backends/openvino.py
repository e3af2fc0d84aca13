"""OpenVINO: the same Keras model and weights, converted (`openvino.convert_model`) to IR.

The IR is cached next to the weights it was converted from (`<weights>.ir/`), keyed by a hash of
the weights, so `benchmark_app -m <that .xml>` measures the very model the harness ran. Latency is
compiled with PERFORMANCE_HINT=LATENCY and called synchronously; throughput with an
AsyncInferQueue kept full for a time window, as benchmark_app does, and transfer's extraction
through the same kind of queue, both compiled with the suite's `[openvino]` knobs
(benchmark_app's `-hint -nstreams -nthreads -nireq -pin`; THROUGHPUT and OpenVINO's own choices
by default), each read back from the compiled model. The precision is asked for explicitly
(INFERENCE_PRECISION_HINT defaults to bf16 on CPUs that have it) and read back.
OpenVINO does not train: full training is skipped; transfer uses it for the extraction pass.

`openvino-int8` quantises that f32 IR with NNCF's post-training quantisation (NNCF 3.x quantises
OpenVINO models, not Keras ones) on training-split images, and caches the INT8 IR beside the f32
one, keyed by the f32 IR (so the weights), the calibration images' hash, the settings and the
NNCF and OpenVINO versions. The quantised nodes run int8; the rest is asked for in f32, so
that the figure is INT8 against f32, not against a silent bf16. Calibration is a one-off, like
conversion: recorded (`runtime.obtained.calibration`), never inside a timed window.

Every run ends with a profiled pass (PERF_COUNT), outside the timed windows: the kernel each
node executed and the precision it ran in (`kernels`), the proof of which kernels ran.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import knobs, loadgen, record
from bench.backends import support
from bench.backends.base import Backend, Calibration, Embed, importable
from bench.backends.support import UNAVAILABLE, Support
from bench.data.lfw import pad_batch
from bench.measure import completion_bins
from bench.pinning import Topology
from bench.record import Series
from bench.spec import at_least, one_of

# INFERENCE_PRECISION_HINT asked for; an int8 IR's nodes outside the quantised ones run at it
_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
PROFILE_CALLS = 4  # profiled calls after a first, unprofiled-in-the-sums one
NNCF_INSTALL = "pip install nncf==3.4.0 (it is in pyproject.toml: make install)"
# seen with OpenVINO 2026.4.1 on a Zen 3 VM: jemalloc and tcmalloc preloaded, the worker aborts
# before its first window ("munmap_chunk(): invalid pointer": glibc's free handed a pointer the
# preloaded malloc gave) — so the allocator is not offered for OpenVINO's runs
ALLOCATOR_ABORTS = ("OpenVINO's worker aborts with jemalloc or tcmalloc preloaded (munmap_chunk():"
                    " invalid pointer); glibc's malloc only")


def ir_path(weights: str | Path) -> Path:
    """Where the IR of the embedding model with these weights is cached."""
    w = Path(weights)
    digest = hashlib.sha256(w.read_bytes()).hexdigest()[:12]
    return w.with_name(w.name.removesuffix(".npz") + ".ir") / f"embeddings-{digest}.xml"


def _save(model: Any, xml: Path) -> None:
    """Write an IR so that a complete .xml always has its .bin (the .xml renamed last)."""
    import openvino as ov

    xml.parent.mkdir(parents=True, exist_ok=True)
    tmp = xml.with_name(f".tmp-{os.getpid()}-{xml.name}")
    ov.save_model(model, tmp, compress_to_fp16=False)
    os.replace(tmp.with_suffix(".bin"), xml.with_suffix(".bin"))
    os.replace(tmp, xml)


def _cached(xml: Path) -> bool:
    return xml.is_file() and xml.with_suffix(".bin").is_file()


def int8_key(f32_xml: Path, calibration: Calibration, nncf_version: str,
             openvino_version: str) -> dict[str, Any]:
    """Everything the INT8 IR depends on: its cache key (and what the result records)."""
    return {"f32_ir": f32_xml.name,
            "calibration_sha256": hashlib.sha256(
                np.ascontiguousarray(calibration.images, np.float32).tobytes()).hexdigest(),
            "images": len(calibration.images), "preset": calibration.preset,
            "fast_bias_correction": calibration.fast_bias_correction,
            "nncf": nncf_version, "openvino": openvino_version}


def int8_path(f32_xml: Path, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return f32_xml.with_name(f"{f32_xml.stem}.int8-{digest}.xml")


def quantize(model: Any, calibration: Calibration) -> Any:
    """NNCF post-training quantisation of an OpenVINO model on the calibration images."""
    import nncf

    items = [calibration.images[i:i + 1] for i in range(len(calibration.images))]
    return nncf.quantize(
        model, nncf.Dataset(items), subset_size=len(items),
        preset=nncf.QuantizationPreset(calibration.preset),
        fast_bias_correction=calibration.fast_bias_correction)


def _text(value: Any) -> str:
    return str(value.value if hasattr(value, "value") else value)


def profile(compiled: Any, batch: np.ndarray, calls: int = PROFILE_CALLS) -> dict[str, Any]:
    """Per node type, the kernel implementations (exec_type) that executed, with node counts
    and summed time; and the time in each runtime precision (from get_runtime_model()), over
    `calls` profiled calls after one unsummed call."""
    precision_of = {op.get_friendly_name(): _text(op.get_rt_info()["runtimePrecision"])
                    for op in compiled.get_runtime_model().get_ordered_ops()
                    if "runtimePrecision" in op.get_rt_info()}
    request = compiled.create_infer_request()
    request.infer({0: batch})
    nodes: dict[str, dict[str, dict[str, Any]]] = {}
    precision_s: dict[str, float] = {}
    for _ in range(calls):
        request.infer({0: batch})
        for info in request.get_profiling_info():
            if str(info.status).rsplit(".", 1)[-1] != "EXECUTED":
                continue
            seconds = info.real_time.total_seconds() / calls
            impl = nodes.setdefault(info.node_type, {}).setdefault(
                info.exec_type, {"nodes": 0, "seconds": 0.0})
            impl["seconds"] += seconds
            impl["nodes"] += 1 / calls
            runtime = precision_of.get(info.node_name, "unknown")
            precision_s[runtime] = precision_s.get(runtime, 0.0) + seconds
    for impls in nodes.values():
        for impl in impls.values():
            impl["nodes"] = round(impl["nodes"])
    return {"source": "OpenVINO PERF_COUNT", "calls": calls, "batch": len(batch),
            "node_types": nodes, "precision_s": precision_s}


# The CPU plugin's bf16 needs avx512_core (emulated there, native from AVX512_BF16); below it,
# INFERENCE_PRECISION_HINT=bf16 is accepted and read back as f32 (seen on a Zen 3).
BF16 = support.bf16(
    "OpenVINO's bf16 on avx512_core: bf16 data, fp32 arithmetic",
    Support(UNAVAILABLE, "AVX2", "OpenVINO's CPU plugin has no bf16 below AVX-512: it silently "
                                 "infers in f32"))


@dataclass(frozen=True)
class OpenVinoSpec:
    """OpenVINO's settings (the openvino* backends): NNCF post-training quantisation of the
    `openvino-int8` IR (calibration images come from the training split only), and
    benchmark_app's knobs for the throughput measurement (`-hint -nstreams -nthreads -nireq
    -pin`), each read back from the compiled model and recorded as obtained. 0 and "auto"
    leave the choice to OpenVINO (threads: the placement's)."""

    calibration_images: int = 300  # NNCF's default subset_size; the split's size if smaller
    preset: str = "performance"  # NNCF QuantizationPreset: symmetric, or "mixed" activations
    fast_bias_correction: bool = True  # NNCF's default; false: the slower full bias correction
    hint: str = "throughput"  # PERFORMANCE_HINT: "throughput", "latency", or "none" (unset)
    streams: int = 0  # NUM_STREAMS; 0: the hint's choice
    threads: int = 0  # INFERENCE_NUM_THREADS; 0: the placement's threads
    requests: int = 0  # the async queue's requests; 0: OPTIMAL_NUMBER_OF_INFER_REQUESTS
    pin: str = "auto"  # ENABLE_CPU_PINNING: "yes", "no", or "auto" (OpenVINO's default)

    def check(self, where: str) -> None:
        at_least(f"{where}.calibration_images", self.calibration_images, 1)
        one_of(f"{where}.preset", self.preset, ("performance", "mixed"))
        one_of(f"{where}.hint", self.hint, ("throughput", "latency", "none"))
        one_of(f"{where}.pin", self.pin, ("yes", "no", "auto"))
        for key in ("streams", "threads", "requests"):
            at_least(f"{where}.{key}", getattr(self, key), 0)


class OpenVinoBackend(Backend):
    bf16_support = BF16
    settings, config = "openvino", OpenVinoSpec  # the suite's [openvino]
    trains = False

    def __init__(self, name: str, precision: str = "fp32"):
        self.name = name
        self.precision = precision
        self.calibrates = precision == "int8"
        self.core: Any = None
        self.threads = 0
        self.obtained: dict[str, Any] = {}  # the IR used and what each compile obtained
        self.spec = OpenVinoSpec()

    def configure(self, params: dict[str, Any]) -> None:
        self.spec = OpenVinoSpec(**params)

    def knobs(self, scenario: str, params: dict[str, Any], settings: dict[str, Any],
              placement: str, topology: Topology) -> tuple[knobs.Knob, ...]:
        """benchmark_app's -hint, -nstreams and -nireq for the scenarios that run the queue,
        streams up to the physical cores, requests up to twice them (0: OpenVINO's choice)."""
        found = tuple(dataclasses.replace(k, values=(k.default,), absent=ALLOCATOR_ABORTS)
                      if k.name == "allocator" else k
                      for k in super().knobs(scenario, params, settings, placement, topology))
        if scenario not in ("inference", "transfer", "serving"):
            return found
        spec, cores = OpenVinoSpec(**settings), len(topology.physical())
        ours = {"hint": (spec.hint, "throughput", "latency", "none"),
                "streams": (spec.streams, 0, *range(1, cores + 1)),
                "requests": (spec.requests, 0, *range(1, 2 * cores + 1))}
        return found + tuple(
            knobs.Knob(f"openvino.{key}", tuple(dict.fromkeys(values)), knobs.SECTION,
                       f"openvino.{key}", f"throughput.obtained.{key}")
            for key, values in ours.items())

    def start(self, threads: int) -> dict[str, Any]:
        import openvino as ov

        self.core = ov.Core()
        self.threads = threads
        return {"openvino": ov.get_version(), "inference_num_threads": threads,
                "precision_asked": _PRECISION[self.precision], "obtained": self.obtained}

    def skip_reason(self, scenario: str, isa: dict[str, bool],
                    emulated: bool = False) -> str | None:
        if self.calibrates and not importable(self.python, "nncf"):
            return f"NNCF is not installed, {self.name} quantises with it: {NNCF_INSTALL}"
        return super().skip_reason(scenario, isa, emulated)

    def obtained_problem(self, doc: dict[str, Any]) -> str | None:
        """Every compiled model at the inference precision asked for (OpenVINO reads bf16
        back as f32 where it cannot run it), and the profiled pass's node time mostly in the
        precision asked (an INT8 IR whose nodes ran f32)."""
        asked = _PRECISION[self.precision]
        obtained = (doc.get("runtime") or {}).get("obtained") or {}
        other = sorted({f"{label}: {got['precision']}" for label, got in obtained.items()
                        if isinstance(got, dict) and "precision" in got
                        and got["precision"] != asked})
        if other:
            return (f"asked OpenVINO for inference precision {asked}, obtained "
                    f"{', '.join(other)}")
        return record.kernels_problem(doc.get("kernels"))

    def load(self, model: Any, weights: Path, calibration: Calibration | None = None) -> Any:
        import openvino as ov

        xml = ir_path(weights)
        self.obtained["ir"] = str(xml)  # the IR that runs: for int8, the quantised one below
        if _cached(xml):
            converted = self.core.read_model(xml)
        else:
            converted = ov.convert_model(model)
            _save(converted, xml)
        if not self.calibrates:
            return converted
        if calibration is None:
            raise ValueError(f"{self.name} quantises on calibration images; none were given")
        quantized, int8_xml = self._int8(converted, xml, calibration)
        self.obtained.update(ir=str(int8_xml), f32_ir=str(xml))
        return quantized

    def _int8(self, f32: Any, f32_xml: Path, calibration: Calibration) -> tuple[Any, Path]:
        """The INT8 IR of `f32` on these calibration images, and its path: from the cache, or
        quantised now (timed apart, a one-off) and cached with a .json beside it saying what it
        was made of."""
        import nncf
        import openvino as ov

        key = int8_key(f32_xml, calibration, nncf.__version__, ov.get_version())
        xml = int8_path(f32_xml, key)
        facts = {**key, "source": "training split", "asked": calibration.asked, "ir": str(xml)}
        if _cached(xml):
            quantized, facts["cached"], facts["seconds"] = self.core.read_model(xml), True, None
        else:
            t0 = time.perf_counter()
            quantized = quantize(f32, calibration)
            facts["seconds"], facts["cached"] = time.perf_counter() - t0, False
            _save(quantized, xml)
            xml.with_suffix(".json").write_text(json.dumps(key, indent=1, sort_keys=True))
        self.obtained.setdefault("calibration", facts)  # a second load (random weights) aside
        return quantized, xml

    def _compile(self, model: Any, batch_size: int, label: str, **config: Any) -> Any:
        """`model` at this batch size, compiled with the precision asked for and the
        placement's threads unless `config` says otherwise; what it obtained is recorded."""
        dims = model.input(0).get_partial_shape()  # [?, H, W, 3] as converted
        model.reshape([batch_size, *(dims[i].get_length() for i in range(1, len(dims)))])
        compiled = self.core.compile_model(model, "CPU", {
            "INFERENCE_PRECISION_HINT": _PRECISION[self.precision],
            "INFERENCE_NUM_THREADS": self.threads, **config})
        self.obtained[f"{label}_bs{batch_size}"] = {
            "hint": _text(compiled.get_property("PERFORMANCE_HINT")),
            "precision": compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
            "streams": int(compiled.get_property("NUM_STREAMS")),
            "threads": int(compiled.get_property("INFERENCE_NUM_THREADS")),
            "pinning": bool(compiled.get_property("ENABLE_CPU_PINNING")),
            "optimal_requests": int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")),
        }
        return compiled

    def throughput_config(self) -> dict[str, Any]:
        """The suite's `[openvino]` knobs as compile properties (those left to OpenVINO
        absent)."""
        spec, config = self.spec, {}
        if spec.hint != "none":
            config["PERFORMANCE_HINT"] = spec.hint.upper()
        if spec.streams:
            config["NUM_STREAMS"] = spec.streams
        if spec.threads:
            config["INFERENCE_NUM_THREADS"] = spec.threads
        if spec.pin != "auto":
            config["ENABLE_CPU_PINNING"] = spec.pin == "yes"
        return config

    def predictor(self, loaded: Any, batch_size: int) -> Callable[[np.ndarray], np.ndarray]:
        request = self._compile(loaded, batch_size, "latency",
                                PERFORMANCE_HINT="LATENCY").create_infer_request()

        def run(batch: np.ndarray) -> np.ndarray:
            # a static-shape model: the last batch padded, the padding's outputs dropped
            return np.array(request.infer({0: pad_batch(batch, batch_size)})[0][:len(batch)])

        return run

    def _queue(self, compiled: Any, most: int | None = None) -> Any:
        """An AsyncInferQueue of the suite's `requests` (else the compiled model's optimal
        number), at most `most`."""
        import openvino as ov

        size = self.spec.requests or compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
        return ov.AsyncInferQueue(compiled, max(1, min(size, most or size)))

    def _driven(self, queue: Any, label: str, counted: str) -> dict[str, Any]:
        """How a queue drove its batches: the record's `throughput` (mode, asked, obtained)."""
        got = self.obtained[label]
        return {"mode": f"async queue of {len(queue)} requests ({got['hint']}, "
                        f"{got['streams']} streams, {got['threads']} threads), {counted}",
                "asynchronous": True, "requests": len(queue), "obtained": got,
                "asked": {k: getattr(self.spec, k)
                          for k in ("hint", "streams", "threads", "requests", "pin")}}

    def throughput(self, loaded: Any, batch: np.ndarray, warmup_s: float,
                   duration_s: float) -> tuple[Series, dict[str, Any]]:
        """An AsyncInferQueue kept full, as benchmark_app does; completions counted in groups
        of about a second (`completion_bins`)."""
        compiled = self._compile(loaded, len(batch), "throughput", **self.throughput_config())
        queue = self._queue(compiled)
        done: list[tuple[float, float]] = []
        queue.set_callback(lambda _request, started: done.append((started,
                                                                   time.perf_counter())))
        start = time.perf_counter()
        window_start, window_end = start + warmup_s, start + warmup_s + duration_s
        while time.perf_counter() < window_end:
            queue.start_async({0: batch}, time.perf_counter())
        queue.wait_all()
        ends = [e for _, e in done]
        steady = completion_bins(ends, window_start, window_end)
        if not steady:
            raise RuntimeError(f"no request completed in the {duration_s:g} s window; "
                               f"raise inference.duration_s")
        warm = completion_bins(ends, min(ends), window_start)
        first = done[0][1] - done[0][0]
        return (Series.of(len(batch), first, warm, steady, per="bin"),
                self._driven(queue, f"throughput_bs{len(batch)}",
                             "completions of the window counted in groups of about a second"))

    def server(self, loaded: Any, sizes: tuple[int, ...],
               latency: bool = False) -> loadgen.Server:
        """Serving through the same asynchronous queues as throughput, with the suite's
        `[openvino]` knobs: one per batch shape (`sizes`, a batch padded to the next);
        a batch is taken as soon as a request of its queue is free, and answered in the
        request's callback. `latency` (SingleStream: one query at a time): the synchronous
        request of the LATENCY hint, as the inference scenario's batch-1 latency — the
        throughput queue would give one query one stream's threads."""
        if latency:
            server = super().server(loaded, sizes)
            got = self.obtained[f"latency_bs{sizes[-1]}"]
            return dataclasses.replace(server, mode=(
                f"synchronous requests ({got['hint']}, {got['streams']} streams, "
                f"{got['threads']} threads)"))
        queues = {}
        for size in sizes:
            queue = self._queue(self._compile(loaded, size, "serving", **self.throughput_config()))
            queue.set_callback(lambda request, done: done(request.get_output_tensor(0).data))
            queues[size] = queue

        def submit(batch: np.ndarray, done: Callable[[np.ndarray], None]) -> None:
            n, size = len(batch), loadgen.bucket(len(batch), sizes)
            queues[size].start_async({0: pad_batch(batch, size)}, lambda out: done(out[:n]))

        def wait() -> None:
            for queue in queues.values():
                queue.wait_all()

        got = self.obtained[f"serving_bs{sizes[-1]}"]
        return loadgen.Server(submit, sizes, wait,
                              f"async queues of {len(queues[sizes[-1]])} requests at each of batch "
                              f"{', '.join(map(str, sizes))} ({got['hint']}, {got['streams']} "
                              f"streams, {got['threads']} threads)")

    def extractor(self, loaded: Any, batch_size: int) -> Embed:
        """Extraction through the same asynchronous queue as throughput, with the suite's
        `[openvino]` knobs: every batch submitted as soon as a request is free, its output
        copied out in the callback. The first request's latency is the series' first call;
        the queue's first fill (its first `requests` completions) is warm-up; the steady
        samples are the later completions counted in groups of about a second
        (`completion_bins`)."""
        compiled = self._compile(loaded, batch_size, "extraction", **self.throughput_config())

        def embed(batches, count: int):
            # at most half the batches in flight, so that some complete after the first fill
            queue = self._queue(compiled, max(1, count // 2))
            outputs: dict[int, np.ndarray] = {}
            ended: dict[int, float] = {}

            def finished(request: Any, index: int) -> None:
                outputs[index] = request.get_output_tensor(0).data.copy()
                ended[index] = time.perf_counter()

            queue.set_callback(finished)
            start = time.perf_counter()
            for index, batch in enumerate(batches):
                queue.start_async({0: batch}, index)
            queue.wait_all()
            ends, fill = sorted(ended.values()), len(queue)
            filled = np.nextafter(ends[fill - 1], np.inf)  # the first fill's last completion
            series = Series.of(
                batch_size, ended[0] - start,
                completion_bins(ends[:fill], np.nextafter(ends[0], np.inf), filled),
                completion_bins(ends, filled, np.nextafter(ends[-1], np.inf)), per="bin")
            return ([outputs[i] for i in range(len(outputs))], series,
                    self._driven(queue, f"extraction_bs{batch_size}",
                                 "completions after its first fill counted in groups of "
                                 "about a second"))

        return embed

    def kernels(self, loaded: Any, batch: np.ndarray) -> dict[str, Any]:
        return {"asked": self.precision,
                **profile(self._compile(loaded, len(batch), "profiled", PERFORMANCE_HINT="LATENCY",
                                   PERF_COUNT=True), batch)}
