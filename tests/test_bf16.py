"""The bf16 code paths, run for real wherever this CPU can run them, native or emulated.

A suite skips emulated bf16 (it measures no bf16 hardware); here each bf16 backend that this CPU
runs natively or by emulation is run anyway, and what it computes is checked — oneDNN's bf16
kernels are used, the precision asked for is obtained, the embeddings agree with fp32. Where a
backend's bf16 is unavailable on this CPU (`bench.backends.support`), the planner skips it
before any worker starts; and a worker forced to run it anyway is failed with the reason, never
recorded as a bf16 figure.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import backends, machine, parity
from bench.backends.support import UNAVAILABLE
from bench.launcher import Launcher, Limits
from bench.pinning import read_topology, resolve
from bench.plan import expand, plan
from bench.suite import load

from .conftest import write_suite

pytestmark = pytest.mark.slow
BF16 = ("tf-onednn-bf16", "itex-bf16", "openvino-bf16", "torch-bf16")
ISA = machine.describe()["isa"]


def _runnable(name: str) -> bool:
    return backends.get(name).support(ISA).level != UNAVAILABLE


def _needs(name: str) -> None:
    if not _runnable(name):
        pytest.skip(f"this CPU cannot run {name}: {backends.get(name).support(ISA).how} "
                    f"(test_the_planner_skips_... and test_a_forced_run_... cover it)")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The bf16 backends as planned with emulation allowed (a run of what this CPU cannot do
    is skipped by the planner), and tf-stock for parity."""
    folder = tmp_path_factory.mktemp("bf16")
    suite = load(write_suite(folder, backends=("tf-stock", *BF16), scenarios=("inference",)))
    topology = read_topology()
    launcher = Launcher(topology, folder / "logs")
    records = [launcher.run(expand(run, resolve("all", topology), topology,
                                   backends.get(run.backend).skip_reason(run.scenario, ISA,
                                                                         emulated=True)),
                            Limits(timeout_s=300)) for run in plan(suite)]
    parity.annotate(records, lambda name: backends.get(name).precision)
    return {r["backend"]: r for r in records}


@pytest.mark.parametrize("name", BF16)
def test_bf16_embeddings_agree_with_fp32_tensorflow(runs, name: str) -> None:
    _needs(name)
    run = runs[name]
    assert run["status"] == "ok", run.get("error")
    assert run["parity"]["min_cosine_required"] == parity.MIN_COSINE["bf16"]
    assert run["parity"]["agrees"], run["parity"]["cosine_min"]


@pytest.mark.parametrize("name", ["tf-onednn-bf16", "itex-bf16"])
def test_onednn_runs_bf16_kernels(runs, name: str) -> None:
    _needs(name)
    onednn = runs[name]["onednn"]
    assert onednn["data_types"].get("bf16"), onednn["data_types"]
    assert any("bf16" in impl or "amx" in impl for impl in onednn["implementations"])


@pytest.mark.parametrize("name", ["tf-onednn-bf16", "torch-bf16"])
def test_keras_mixed_precision_policy_is_set_for_keras3_bf16(runs, name: str) -> None:
    _needs(name)
    assert runs[name]["runtime"]["precision_policy"] == "mixed_bfloat16"


def test_openvino_obtains_the_bf16_precision_it_asks_for(runs) -> None:
    _needs("openvino-bf16")
    obtained = runs["openvino-bf16"]["runtime"]["obtained"]
    assert {v["precision"] for k, v in obtained.items() if k != "ir"} == {"bf16"}
    assert Path(obtained["ir"]).is_file()


@pytest.mark.parametrize("name", BF16)
def test_the_planner_skips_what_this_cpu_cannot_run_before_any_worker(runs, name: str) -> None:
    if _runnable(name):
        pytest.skip(f"this CPU runs {name} ({backends.get(name).support(ISA).level})")
    run = runs[name]
    assert run["status"] == "skipped" and "cannot run bf16" in run["reason"]
    assert "log" not in run and run["wall_s"] == 0.0, "no worker was started"


@pytest.mark.parametrize("name", ["tf-onednn-bf16", "openvino-bf16"])
def test_a_forced_run_of_unavailable_bf16_is_failed_with_the_reason(tmp_path: Path,
                                                                    name: str) -> None:
    """The runtime runs, but in another precision (TensorFlow's Eigen fallback, OpenVINO's
    silent f32): the worker's check fails the run, its figures never shown as bf16."""
    if _runnable(name):
        pytest.skip(f"this CPU runs {name} ({backends.get(name).support(ISA).level})")
    suite = load(write_suite(tmp_path, backends=(name,), scenarios=("inference",)))
    topology = read_topology()
    run = plan(suite)[0]
    record = Launcher(topology, tmp_path / "logs").run(
        expand(run, resolve("all", topology), topology), Limits(timeout_s=300))
    assert record["status"] == "failed"
    assert record["error"].startswith("precision not obtained: asked ")
    assert "bf16" in record["error"]
    assert record["throughput"], "what was measured is kept in the record"
