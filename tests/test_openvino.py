"""OpenVINO runs the same model and weights as TensorFlow, from an IR cached beside the weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench import backends, parity
from bench.backends.openvino import ir_path
from bench.models import facenet
from bench.scenarios.common import build_pretrained

MODEL = {"variant": "small", "image_size": 80, "embedding_size": 16, "weights": ""}


@pytest.fixture(scope="module")
def converted():
    base, facts = build_pretrained(MODEL, seed=3)
    keras_model = facenet.embedding_model(base)
    ov = backends.get("openvino")
    ov.start(threads=2)
    return keras_model, ov, ov.load(keras_model, Path(facts["weights"])), facts


def _images(n: int) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(n, 80, 80, 3)).astype("float32")


def test_the_ir_is_cached_next_to_the_weights_and_reused(converted) -> None:
    keras_model, ov, _, facts = converted
    xml = ir_path(facts["weights"])
    assert xml.parent == Path(facts["weights"]).with_name(
        Path(facts["weights"]).name.removesuffix(".npz") + ".ir")
    assert xml.is_file() and xml.with_suffix(".bin").is_file()
    stamp = xml.stat().st_mtime_ns
    ov.load(keras_model, Path(facts["weights"]))
    assert xml.stat().st_mtime_ns == stamp, "a second load reads the cached IR"


def test_openvino_f32_embeddings_match_tensorflow(converted) -> None:
    keras_model, ov, loaded, _ = converted
    x = _images(3)
    predict = ov.predictor(loaded, 4)  # a static batch of 4; 3 images are padded and cut
    got = predict(x)
    assert got.shape == (3, 16)
    figures = parity.compare(keras_model(x, training=False).numpy().tolist(), got.tolist())
    assert figures["cosine_min"] >= parity.MIN_COSINE["fp32"]
    assert ov.obtained["latency_bs4"]["precision"] == "f32", "f32 asked for and obtained"


def test_throughput_counts_completions_inside_the_window(converted) -> None:
    _, ov, loaded, _ = converted
    series, driven = ov.throughput(loaded, _images(4), warmup_s=0.3, duration_s=0.6)
    assert series.per == "bin" and series.work == 4 and len(series.samples) >= 1
    # each sample: a bin's seconds over its completed requests; together they tile the window
    assert sum(series.samples) == pytest.approx(0.6) or sum(series.samples) < 0.6
    assert series.first is not None and series.first > 0
    assert driven["asynchronous"] is True and driven["requests"] >= 1
    assert ov.obtained["throughput_bs4"]["optimal_requests"] >= 1
    assert "async queue" in driven["mode"]
