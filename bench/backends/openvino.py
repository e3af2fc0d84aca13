"""OpenVINO: the same Keras model and weights, converted (`openvino.convert_model`) to IR.

The IR is cached next to the weights it was converted from (`<weights>.ir/`), keyed by a hash of
the weights, so `benchmark_app -m <that .xml>` measures the very model the harness ran. Latency is
compiled with PERFORMANCE_HINT=LATENCY and called synchronously; throughput with THROUGHPUT and an
AsyncInferQueue kept full for a time window, as benchmark_app does. The precision is asked for
explicitly (INFERENCE_PRECISION_HINT defaults to bf16 on CPUs that have it) and read back.
OpenVINO does not train: full training is skipped; transfer uses it for the extraction pass.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.backends import Backend
from bench.measure import completion_bins
from bench.record import Series

_PRECISION = {"fp32": "f32", "bf16": "bf16"}


def ir_path(weights: str | Path) -> Path:
    """Where the IR of the embedding model with these weights is cached."""
    w = Path(weights)
    digest = hashlib.sha256(w.read_bytes()).hexdigest()[:12]
    return w.with_name(w.name.removesuffix(".npz") + ".ir") / f"embeddings-{digest}.xml"


class OpenVinoBackend(Backend):
    trains = False

    def __init__(self, name: str, precision: str = "fp32"):
        self.name = name
        self.precision = precision
        self.core: Any = None
        self.threads = 0
        self.obtained: dict[str, Any] = {}  # the IR used and what each compile obtained

    def start(self, threads: int) -> dict[str, Any]:
        import openvino as ov

        self.core = ov.Core()
        self.threads = threads
        return {"openvino": ov.get_version(), "inference_num_threads": threads,
                "precision_asked": _PRECISION[self.precision], "obtained": self.obtained}

    def load(self, model: Any, weights: Path) -> Any:
        import openvino as ov

        xml = ir_path(weights)
        self.obtained["ir"] = str(xml)
        if xml.is_file() and xml.with_suffix(".bin").is_file():
            return self.core.read_model(xml)
        converted = ov.convert_model(model)
        xml.parent.mkdir(parents=True, exist_ok=True)
        tmp = xml.with_name(f".tmp-{os.getpid()}-{xml.name}")
        ov.save_model(converted, tmp, compress_to_fp16=False)
        os.replace(tmp.with_suffix(".bin"), xml.with_suffix(".bin"))
        os.replace(tmp, xml)  # the .xml last: a complete .xml always has its .bin
        return converted

    def _compile(self, model: Any, batch_size: int, hint: str) -> Any:
        dims = model.input(0).get_partial_shape()  # [?, H, W, 3] as converted
        model.reshape([batch_size, *(dims[i].get_length() for i in range(1, len(dims)))])
        compiled = self.core.compile_model(model, "CPU", {
            "PERFORMANCE_HINT": hint,
            "INFERENCE_PRECISION_HINT": _PRECISION[self.precision],
            "INFERENCE_NUM_THREADS": self.threads,
        })
        self.obtained[f"{hint.lower()}_bs{batch_size}"] = {
            "precision": compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
            "streams": int(compiled.get_property("NUM_STREAMS")),
            "optimal_requests": int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")),
        }
        return compiled

    def predictor(self, loaded: Any, batch_size: int) -> Callable[[np.ndarray], np.ndarray]:
        request = self._compile(loaded, batch_size, "LATENCY").create_infer_request()

        def run(batch: np.ndarray) -> np.ndarray:
            n = len(batch)
            if n < batch_size:  # a static-shape model: pad the last batch, drop the padding
                batch = np.concatenate([batch, np.zeros((batch_size - n, *batch.shape[1:]),
                                                        batch.dtype)])
            return np.array(request.infer({0: batch})[0][:n])

        return run

    def throughput(self, loaded: Any, batch: np.ndarray, warmup_s: float,
                   duration_s: float) -> tuple[Series, dict[str, Any]]:
        """An AsyncInferQueue kept full, as benchmark_app does; completions counted in bins."""
        import openvino as ov

        compiled = self._compile(loaded, len(batch), "THROUGHPUT")
        queue = ov.AsyncInferQueue(compiled, compiled.get_property(
            "OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
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
                {"mode": f"async queue of {len(queue)} requests, completions counted in "
                         f"bins of the window", "asynchronous": True, "requests": len(queue)})
