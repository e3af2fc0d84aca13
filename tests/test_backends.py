"""Backends: the registry, skip reasons (never a silent drop), oneDNN's ISA record, parity."""

from __future__ import annotations

import pytest

from bench import backends, parity
from bench.backends.tensorflow import TensorFlowBackend
from bench.worker import onednn_summary

NO_BF16 = {"avx512f": True, "avx512_bf16": False, "amx_bf16": False}
AMX = {"avx512f": True, "avx512_bf16": True, "amx_bf16": True}


@pytest.mark.parametrize("scenario", ["full_training", "fine_tune"])
def test_openvino_skips_training_and_says_why(scenario: str) -> None:
    reason = backends.get("openvino").skip_reason(scenario, AMX)
    assert reason and "does not train" in reason
    assert backends.get("openvino").skip_reason("inference", AMX) is None


@pytest.mark.parametrize("name", ["tf-onednn-bf16", "itex-bf16", "openvino-bf16"])
def test_bf16_is_skipped_with_the_reason_on_a_cpu_without_bf16(name: str, monkeypatch) -> None:
    monkeypatch.setenv("TLBENCH_ITEX_PYTHON", "/bin/sh")  # any existing interpreter path
    reason = backends.get(name).skip_reason("inference", NO_BF16)
    assert reason and "no native bf16" in reason and "AMX" in reason
    assert backends.get(name).skip_reason("inference", AMX) is None


def test_fp32_backends_run_on_any_avx512_cpu(monkeypatch) -> None:
    monkeypatch.setenv("TLBENCH_ITEX_PYTHON", "/bin/sh")
    for name in ("tf-stock", "tf-onednn", "itex", "openvino"):
        assert backends.get(name).skip_reason("inference", NO_BF16) is None


def test_a_missing_itex_environment_skips_with_the_command_that_builds_it(monkeypatch) -> None:
    monkeypatch.setenv("TLBENCH_ITEX_PYTHON", "/nonexistent/.venv-itex/bin/python")
    reason = backends.get("itex").skip_reason("inference", AMX)
    assert reason and "make itex" in reason and "/nonexistent/.venv-itex" in reason


def test_stock_tensorflow_with_bf16_is_refused() -> None:
    with pytest.raises(ValueError, match="30-45x slower"):
        TensorFlowBackend("tf-stock-bf16", onednn=False, precision="bf16")


def test_itex_workers_use_the_itex_interpreter_and_the_others_the_main_one(monkeypatch) -> None:
    monkeypatch.setenv("TLBENCH_ITEX_PYTHON", "/opt/itex/bin/python")
    assert backends.get("itex").python == "/opt/itex/bin/python"
    assert backends.get("tf-onednn").python != "/opt/itex/bin/python"


def test_environment_switches_per_backend() -> None:
    assert backends.get("tf-stock").environment() == {"TF_ENABLE_ONEDNN_OPTS": "0"}
    assert backends.get("tf-onednn").environment()["ONEDNN_VERBOSE"] == "profile_create"
    bf16 = backends.get("itex-bf16").environment()
    assert bf16["ITEX_AUTO_MIXED_PRECISION_DATA_TYPE"] == "BFLOAT16"
    assert "ITEX_AUTO_MIXED_PRECISION" not in backends.get("itex").environment()


VERBOSE = """\
onednn_verbose,v1,info,oneDNN v3.7.3 (commit N/A)
onednn_verbose,v1,info,cpu,runtime:threadpool,nthr:2
onednn_verbose,v1,info,cpu,isa:Intel AVX-512 with Intel DL Boost
onednn_verbose,v1,primitive,info,template:operation,engine,primitive,implementation,prop_kind
onednn_verbose,v1,primitive,create:cache_miss,cpu,convolution,brg_conv_fwd:avx512_core,forward_training,src:f32
onednn_verbose,v1,primitive,create:cache_miss,cpu,convolution,brg_conv_fwd:avx512_core_amx,forward_training,src:bf16
onednn_verbose,v1,primitive,create:cache_hit,cpu,convolution,brg_conv_fwd:avx512_core,forward_training,src:f32
"""


# oneDNN 3.3 (ITEX 2.15) writes the same lines without the "v1" format field.
VERBOSE_3_3 = """\
onednn_verbose,info,oneDNN v3.3.0 (commit 08fea71aff4c273e34579e86396405f95d34aa74)
onednn_verbose,info,cpu,isa:Intel AVX-512 with Intel DL Boost
onednn_verbose,primitive,create:cache_miss,cpu,convolution,brgconv:avx512_core,forward_training,src
onednn_verbose,primitive,create:cache_miss,cpu,reorder,jit:uni,undef,src_f32::blocked:cdba::f0
"""


def test_onednn_verbose_lines_give_version_isa_and_implementations() -> None:
    info = onednn_summary(VERBOSE.splitlines(keepends=True))
    assert info == {"version": "oneDNN v3.7.3", "isa": "Intel AVX-512 with Intel DL Boost",
                    "implementations": {"brg_conv_fwd:avx512_core": 2,
                                        "brg_conv_fwd:avx512_core_amx": 1},
                    "data_types": {"f32": 2, "bf16": 1}}
    old = onednn_summary(VERBOSE_3_3.splitlines(keepends=True))
    assert old == {"version": "oneDNN v3.3.0", "isa": "Intel AVX-512 with Intel DL Boost",
                   "implementations": {"brgconv:avx512_core": 1, "jit:uni": 1}}


def _run(backend: str, embeddings, scenario: str = "inference", weights: str = "w.npz"):
    return {"scenario": scenario, "backend": backend, "status": "ok",
            "model": {"weights": weights}, "parity": {"embeddings": embeddings}}


def test_parity_compares_each_backend_with_the_fp32_reference() -> None:
    ref = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    runs = [_run("tf-stock", ref), _run("openvino", [[1.0, 0.0, 0.0], [0.0, 1.0, 1e-5]]),
            _run("openvino-bf16", [[1.0, 0.1, 0.0], [0.0, 1.0, 0.0]]),
            _run("itex", [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]),
            _run("tf-onednn", ref, weights="other.npz")]
    parity.annotate(runs, lambda name: backends.get(name).precision)
    stock, ov, ov16, itex, other = (r["parity"] for r in runs)
    assert stock["cosine_min"] == pytest.approx(1.0) and stock["agrees"]
    assert ov["agrees"] and ov["max_abs_diff"] == pytest.approx(1e-5)
    assert ov16["cosine_min"] == pytest.approx(1 / 1.01 ** 0.5) and ov16["agrees"]  # >= 0.99
    assert itex["cosine_min"] == pytest.approx(0.0) and itex["agrees"] is False
    assert other["note"] == "different weights: not comparable"


def test_parity_compares_the_images_both_runs_embedded() -> None:
    """A run of an older result at batch 2 stored two embeddings against the reference's four:
    the first images are the same held-out images."""
    ref = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]
    runs = [_run("tf-onednn", ref), _run("torch", [[1.0, 0.0, 0.0], [0.0, 1.0, 1e-5]])]
    parity.annotate(runs, lambda name: backends.get(name).precision)
    assert runs[1]["parity"]["images"] == 2 and runs[1]["parity"]["agrees"]
    with pytest.raises(ValueError, match="shape"):
        parity.compare(ref, [[1.0, 0.0]])


def test_parity_without_a_reference_says_so() -> None:
    runs = [_run("openvino", [[1.0, 0.0]])]
    parity.annotate(runs, lambda name: backends.get(name).precision)
    assert runs[0]["parity"]["reference"] is None
