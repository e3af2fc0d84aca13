"""Serving: the full forward pass to an embedding, latency at batch 1, throughput at batch N.

The same batch of real (decoded, standardised) images is fed on every call, so the figures are
the model's and the runtime's, not the input pipeline's. Each window is time-based, after a
time-based warm-up; the very first call (graph tracing) is reported on its own.
"""

from __future__ import annotations

from typing import Any

from bench.backends.base import Backend
from bench.measure import time_calls
from bench.parity import PARITY_IMAGES, parity_embeddings
from bench.record import Series
from bench.scenarios.common import Progress, held_out, load_model, prepare, tiled
from bench.scenarios.inference import InferenceSpec


def run(run: dict[str, Any], backend: Backend, progress: Progress) -> dict[str, Any]:
    spec = InferenceSpec(**run["params"])
    size = run["model"]["image_size"]
    split, base, facts = prepare(run, progress)
    progress("load model into the runtime")
    loaded = load_model(run, backend, base, facts["weights"], split)
    held = held_out(split.test, size)
    batch = tiled(held, spec.batch_size)

    progress(f"latency_bs1: warm-up {spec.warmup_s:g} s + {spec.duration_s:g} s")
    predict = backend.predictor(loaded, 1)
    warm, timed = time_calls(lambda: predict(batch[:1]), warmup_s=spec.warmup_s,
                             duration_s=spec.duration_s)
    label = f"throughput_bs{spec.batch_size}"
    progress(f"{label}: warm-up {spec.warmup_s:g} s + {spec.duration_s:g} s")
    series, driven = backend.throughput(loaded, batch, spec.warmup_s, spec.duration_s)
    progress("kernels: a profiled pass (off the clock)")
    kernels = backend.kernels(loaded, batch)
    return {
        "model": facts,
        "data": split.describe(),
        "series": {"latency_bs1": Series.of(1, warm[0], warm[1:], timed), label: series},
        "throughput": driven,
        # the same images at every batch size: runs tuned to other batches stay comparable
        "parity": {"embeddings": parity_embeddings(predict, tiled(held, PARITY_IMAGES))},
        **({"kernels": kernels} if kernels else {}),
    }
