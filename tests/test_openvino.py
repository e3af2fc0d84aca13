"""OpenVINO runs the same model and weights as TensorFlow, from an IR cached beside the weights."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from bench import backends, parity, record
from bench.backends import Calibration
from bench.backends import openvino as openvino_backend
from bench.backends.openvino import int8_key, int8_path, ir_path
from bench.data import lfw
from bench.measure import completion_bins
from bench.models import facenet
from bench.scenarios.common import build_pretrained
from bench.scenarios.transfer.run import extract

MODEL = {"variant": "small", "image_size": 80, "embedding_size": 16, "weights": ""}


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory):
    # A cache of this module's own (the session's may hold another test's files, or the
    # user's, when TLBENCH_CACHE was set): the weights, their IR and the INT8 IR are made here.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TLBENCH_CACHE", str(tmp_path_factory.mktemp("openvino-cache")))
        base, facts = build_pretrained(MODEL, seed=3)
        keras_model = facenet.embedding_model(base)
        ov = backends.get("openvino")
        ov.start(threads=2)
        yield keras_model, ov, ov.load(keras_model, Path(facts["weights"])), facts


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


def test_throughput_counts_completions_inside_the_window(
        converted, monkeypatch: pytest.MonkeyPatch) -> None:
    _, ov, loaded, _ = converted
    binned = []  # what the backend hands to completion_bins: every completion, and the window

    def spy(ends, start, stop, *args, **kwargs):
        out = completion_bins(ends, start, stop, *args, **kwargs)
        binned.append((sorted(ends), start, stop, out))
        return out

    monkeypatch.setattr(openvino_backend, "completion_bins", spy)
    before = time.perf_counter()
    series, driven = ov.throughput(loaded, _images(4), warmup_s=0.3, duration_s=0.6)
    after = time.perf_counter()
    (ends, start, stop, steady), (warm_ends, warm_start, warm_stop, warm) = binned
    # the window: 0.6 s after 0.3 s of warm-up, inside the call; the completions are the
    # requests' own, taken during it, and the warm-up's bins are those before the window
    assert stop - start == pytest.approx(0.6) and before + 0.3 <= start and stop <= after
    assert ends and before <= ends[0] and ends[-1] <= after
    assert warm_ends == ends and (warm_start, warm_stop) == (min(ends), start)
    assert series.per == "bin" and series.work == 4
    assert series.samples == tuple(steady) and series.warmup == tuple(warm)
    # A window under 1.5 s is one group of completions whatever the machine's speed
    # (completion_bins makes about one a second): the time from the last completion before
    # the window (else the window's first) to the window's last, over the requests completed
    # after that first mark (a lone completion: the window's length). So at any speed it is
    # under the warm-up and the window together, never bounded by the window alone.
    inside = [e for e in ends if start <= e < stop]
    marks = [e for e in ends if e < start][-1:] + inside
    assert inside, "a request completed in the window (else throughput raises)"
    expected = stop - start if len(marks) == 1 else (marks[-1] - marks[0]) / (len(marks) - 1)
    assert series.samples == pytest.approx([expected]) and 0 < expected <= 0.3 + 0.6
    assert series.first is not None and series.first > 0
    assert driven["asynchronous"] is True and driven["requests"] >= 1
    assert ov.obtained["throughput_bs4"]["optimal_requests"] >= 1
    assert "async queue" in driven["mode"]
    assert driven["asked"] == {"hint": "throughput", "streams": 0, "threads": 0, "requests": 0,
                               "pin": "auto"}
    assert driven["obtained"]["hint"] == "THROUGHPUT" and driven["obtained"]["threads"] == 2


def test_benchmark_app_s_knobs_are_asked_for_and_read_back(converted) -> None:
    _, _, loaded, _ = converted
    ov = backends.get("openvino")
    ov.configure({"hint": "none", "streams": 2, "requests": 3, "pin": "no"})
    ov.start(threads=2)
    _, driven = ov.throughput(loaded, _images(2), warmup_s=0.1, duration_s=0.3)
    got = driven["obtained"]
    assert (got["streams"], got["threads"], got["pinning"]) == (2, 2, False), got
    assert driven["requests"] == 3 and driven["asked"]["hint"] == "none"
    assert "2 streams, 2 threads" in driven["mode"]
    ov.configure({"hint": "latency", "threads": 1})
    _, driven = ov.throughput(loaded, _images(2), warmup_s=0.1, duration_s=0.3)
    got = driven["obtained"]
    assert (got["hint"], got["streams"], got["threads"]) == ("LATENCY", 1, 1), got


def test_extraction_runs_through_the_async_queue_in_order(converted) -> None:
    """Transfer's extraction: every batch through the throughput-mode queue, the embeddings
    back in the order of the images (the padded last batch cut), as the predictor gives."""
    _, ov, loaded, _ = converted
    images = np.random.default_rng(4).integers(0, 256, (22, 80, 80, 3), dtype=np.uint8)
    seen = []
    x, series, driven = extract(ov.extractor(loaded, 4), images, 4,
                                lambda phase, done, total: seen.append(done), "extract")
    assert x.shape == (22, 16) and seen[-1] == 22 and len(seen) == 6
    expected = ov.predictor(loaded, 22)(lfw.standardise(images))
    np.testing.assert_allclose(x, expected, rtol=1e-4, atol=1e-5)
    assert series.per == "bin" and series.work == 4 and series.first > 0
    # the first fill's completions are warm-up; the later ones are counted in groups
    assert 1 <= driven["requests"] <= 3, "at most half the 6 batches in flight"
    assert len(series.samples) >= 1 and len(series.warmup) <= driven["requests"] - 1
    assert driven["asynchronous"] and driven["obtained"]["hint"] == "THROUGHPUT"
    assert driven["obtained"] == ov.obtained["extraction_bs4"]


def _calibration(n: int = 8, seed: int = 2) -> Calibration:
    images = np.random.default_rng(seed).normal(size=(n, 80, 80, 3)).astype("float32")
    return Calibration(images, asked=300, preset="performance", fast_bias_correction=True)


@pytest.fixture(scope="module")
def quantized(converted):
    keras_model, _, _, facts = converted
    ov8 = backends.get("openvino-int8")
    ov8.start(threads=2)
    return keras_model, ov8, ov8.load(keras_model, Path(facts["weights"]), _calibration()), facts


def test_nncf_quantises_the_ir_on_the_calibration_images_and_records_how(quantized) -> None:
    _, ov8, loaded, facts = quantized
    types = {op.get_type_name() for op in loaded.get_ops()}
    assert "FakeQuantize" in types, "NNCF inserted quantisers: the IR is an INT8 one"
    got = ov8.obtained["calibration"]
    assert got["images"] == 8 and got["asked"] == 300 and got["source"] == "training split"
    assert got["preset"] == "performance" and got["fast_bias_correction"] is True
    assert got["nncf"] and got["openvino"]
    # the module's cache is fresh (the `converted` fixture): this first load quantised, timed
    assert got["cached"] is False
    assert isinstance(got["seconds"], float) and got["seconds"] > 0
    xml = Path(got["ir"])
    assert xml.parent == ir_path(facts["weights"]).parent and xml.is_file()
    # the record names the artefact that ran (benchmark_app -m <obtained.ir>): the INT8 IR
    assert ov8.obtained["ir"] == got["ir"] != ov8.obtained["f32_ir"]
    assert ov8.obtained["f32_ir"] == str(ir_path(facts["weights"]))
    assert xml.with_suffix(".bin").is_file() and xml.with_suffix(".json").is_file()


def test_the_int8_ir_is_reused_while_its_key_holds_and_remade_when_it_changes(
        quantized) -> None:
    keras_model, ov8, _, facts = quantized
    again = backends.get("openvino-int8")
    again.start(threads=2)
    again.load(keras_model, Path(facts["weights"]), _calibration())
    assert again.obtained["calibration"]["cached"] is True
    assert again.obtained["calibration"]["seconds"] is None, "no calibration time: none ran"
    assert again.obtained["calibration"]["ir"] == ov8.obtained["calibration"]["ir"]
    f32 = ir_path(facts["weights"])
    key = int8_key(f32, _calibration(), "3.4.0", "2026.4.1")
    assert int8_path(f32, key) == int8_path(f32, int8_key(f32, _calibration(), "3.4.0",
                                                           "2026.4.1"))
    other_images = int8_key(f32, _calibration(seed=5), "3.4.0", "2026.4.1")
    other_nncf = int8_key(f32, _calibration(), "3.5.0", "2026.4.1")
    other_openvino = int8_key(f32, _calibration(), "3.4.0", "2026.5.0")
    fewer = int8_key(f32, _calibration(n=6), "3.4.0", "2026.4.1")
    paths = {int8_path(f32, k) for k in (key, other_images, other_nncf, other_openvino, fewer)}
    assert len(paths) == 5, "the images, NNCF, OpenVINO and the subset each key the cache"


def _share(kernels: dict) -> float:
    run = {"run_id": "inference/x", "backend": "x", "scenario": "inference", "status": "ok",
           "params": {"batch_size": 2}, "kernels": kernels,
           "series": {"latency_bs1": {"work": 1, "samples": [0.01]},
                      "throughput_bs2": {"work": 2, "samples": [0.01]}}}
    return record.figures(run)[record.KERNEL_SHARE].value


def test_the_profiled_pass_proves_int8_kernels_ran(quantized) -> None:
    _, ov8, loaded, _ = quantized
    kernels = ov8.kernels(loaded, _images(2))
    assert kernels["asked"] == "int8" and kernels["source"] == "OpenVINO PERF_COUNT"
    assert kernels["batch"] == 2 and kernels["calls"] >= 1
    impls = {impl for per_type in kernels["node_types"].values() for impl in per_type}
    assert any(impl.upper().endswith(("_I8", "_U8")) for impl in impls), impls
    assert {"i8", "u8"} & set(kernels["precision_s"]), kernels["precision_s"]
    assert _share(kernels) >= record.MIN_KERNEL_SHARE
    assert ov8.obtained["profiled_bs2"]["precision"] == "f32", "int8 beside f32, not bf16"


def test_the_f32_ir_runs_f32_kernels(converted) -> None:
    _, ov, loaded, _ = converted
    kernels = ov.kernels(loaded, _images(2))
    assert kernels["asked"] == "fp32"
    assert "Convolution" in kernels["node_types"]
    assert _share(kernels) >= 0.9, kernels["precision_s"]


def test_int8_embeddings_stay_close_to_tensorflow(quantized) -> None:
    keras_model, ov8, loaded, _ = quantized
    x = _calibration(n=4, seed=9).images
    figures = parity.compare(keras_model(x, training=False).numpy().tolist(),
                             ov8.predictor(loaded, 4)(x).tolist())
    assert figures["cosine_min"] >= parity.MIN_COSINE["int8"], figures
