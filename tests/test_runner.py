"""End to end: `tlbench run` with real worker processes on the small model, and its faults."""

from __future__ import annotations

import pytest

from bench.cli import main
from bench.launcher import worker_environment
from bench.pinning import read_topology, resolve
from bench.plan import plan
from bench.suite import parse

from .conftest import only_result, write_suite

pytestmark = pytest.mark.slow
BACKENDS = ("tf-stock", "tf-onednn", "itex", "openvino")  # the fp32 stacks; bf16 needs AMX

@pytest.fixture(scope="module")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict]:
    folder = tmp_path_factory.mktemp("e2e")
    suite = write_suite(folder, backends=BACKENDS)
    code = main(["run", str(suite), "--out", str(folder / "results")])
    return code, only_result(folder / "results")


def test_every_run_of_every_backend_and_scenario_is_ok_or_says_why_not(e2e) -> None:
    code, doc = e2e
    assert code == 0
    assert doc["complete"] is True and doc["schema_version"] == 1
    expected = [(f"{s}/{b}", "skipped" if (s, b) == ("full_training", "openvino") else "ok")
                for s in ("full_training", "transfer", "inference") for b in BACKENDS]
    assert [(r["run_id"], r["status"]) for r in doc["runs"]] == expected
    assert "does not train" in doc["runs"][3]["reason"]


def test_each_tensorflow_worker_ran_with_its_onednn_setting(e2e) -> None:
    _, doc = e2e
    for run in (r for r in doc["runs"] if r["backend"] in ("tf-stock", "tf-onednn")):
        onednn = run["backend"] == "tf-onednn"
        assert run["env"]["TF_ENABLE_ONEDNN_OPTS"] == ("1" if onednn else "0")
        assert run["runtime"]["onednn_enabled"] is onednn
        assert ("onednn" in run) is onednn, "oneDNN's own verbose lines prove it ran, or not"


def test_onednn_stacks_record_the_isa_and_kernels_used(e2e) -> None:
    _, doc = e2e
    for run in (r for r in doc["runs"] if r["backend"] in ("tf-onednn", "itex")):
        assert run["onednn"]["isa"] and run["onednn"]["version"].startswith("oneDNN v")
        assert sum(run["onednn"]["implementations"].values()) > 0


def test_itex_runs_tensorflow_2_15_with_the_extension_loaded(e2e) -> None:
    _, doc = e2e
    itex = next(r for r in doc["runs"] if r["backend"] == "itex" and r["status"] == "ok")
    assert itex["runtime"]["tensorflow"].startswith("2.15")
    assert itex["runtime"]["itex"].startswith("2.15")
    assert itex["runtime"]["omp_num_threads"] == str(itex["placement"]["threads"])


def test_every_backend_computes_the_same_embeddings_as_stock_tensorflow(e2e) -> None:
    _, doc = e2e
    compared = [r for r in doc["runs"] if r["status"] == "ok" and r["scenario"] != "full_training"]
    assert len(compared) == 8
    for run in compared:
        assert run["parity"]["reference"] == "tf-stock", run["run_id"]
        assert run["parity"]["agrees"], (run["run_id"], run["parity"]["cosine_min"])


def test_each_worker_is_pinned_and_records_what_it_obtained(e2e) -> None:
    _, doc = e2e
    for run in (r for r in doc["runs"] if r["status"] == "ok"):
        assert run["placement_obtained"]["cpus"] == run["placement"]["cpus"]
        if run["backend"] != "openvino":
            assert run["runtime"]["intra_op_threads"] == run["placement"]["threads"]
        else:
            assert run["runtime"]["inference_num_threads"] == run["placement"]["threads"]
        assert run["placement_obtained"]["env"]["TF_NUM_INTRAOP_THREADS"] == str(
            run["placement"]["threads"])
        assert run["peak_rss_mb"] > 100
        assert run["model"]["variant"] == "small" and run["model"]["parameters"] > 0


def test_result_records_machine_software_and_suite(e2e) -> None:
    _, doc = e2e
    assert doc["machine"]["logical_cpus"] >= 1 and "avx512f" in doc["machine"]["isa"]
    assert "tensorflow-cpu" in doc["software"]["packages"]
    assert doc["suite"]["name"] == "e2e" and "commit" in doc["project"]
    assert set(doc["machine"]["isa"]) >= {"avx512f", "avx512_bf16", "amx_bf16"}


def test_full_training_measured_in_full_reports_samples_total_and_accuracy(e2e) -> None:
    _, doc = e2e
    run = doc["runs"][0]
    assert run["total"]["kind"] == "measured"
    assert len(run["samples"]["micro_step_s"]) == 3  # 1 epoch x 2 updates x 2 micro - traced one
    assert run["derived"]["images_per_s"] == pytest.approx(
        4 / run["stats"]["micro_step_s"]["median"])
    assert run["total"]["total_s"] >= run["first_step_s"] + sum(run["samples"]["micro_step_s"])
    assert 0.0 <= run["accuracy"] <= 1.0
    assert run["derived"]["input_pipeline_images_per_s"] > run["derived"]["images_per_s"]


def test_transfer_reports_extraction_head_and_says_random_weights_mean_nothing(e2e) -> None:
    _, doc = e2e
    run = next(r for r in doc["runs"] if r["scenario"] == "transfer")
    assert run["total"]["total_s"] == pytest.approx(run["extraction_s"] + run["head_s"])
    assert run["derived"]["images"] == run["data"]["train_images"] + run["data"]["test_images"]
    assert "random weights" in run["accuracy_note"]
    assert run["chance_accuracy"] == pytest.approx(1 / 4)


def test_transfer_reports_the_lfw_protocol_on_the_synthetic_pairs(e2e) -> None:
    _, doc = e2e
    for run in (r for r in doc["runs"] if r["scenario"] == "transfer" and r["status"] == "ok"):
        lfw = run["lfw_verification"]
        assert lfw["folds"] == 2 and lfw["missing_pairs"] == 0 and lfw["usable"] > 0
        assert lfw["extra_images_embedded"] == 0, "every pair image was embedded already"
        for metric in ("euclidean", "angular"):
            assert 0.0 <= lfw[metric]["accuracy"] <= 1.0 and 0.0 <= lfw[metric]["auc"] <= 1.0


def test_inference_reports_latency_percentiles_and_throughput(e2e) -> None:
    _, doc = e2e
    run = next(r for r in doc["runs"] if r["scenario"] == "inference")
    d = run["derived"]
    assert d["latency_ms_p50"] <= d["latency_ms_p90"] <= d["latency_ms_p99"]
    assert d["images_per_s"] == pytest.approx(4 / run["stats"]["throughput_bs4"]["median"])
    assert len(run["samples"]["latency_bs1"]) >= 5


def test_worker_environment_carries_threads_and_backend_switch() -> None:
    topology = read_topology()
    placement = resolve("all", topology)
    runs = plan(parse('[suite]\nscenarios = ["inference"]\n'))
    envs = {r.backend: worker_environment(r, placement) for r in runs}
    assert envs["tf-stock"]["TF_ENABLE_ONEDNN_OPTS"] == "0"
    assert envs["tf-onednn"]["TF_ENABLE_ONEDNN_OPTS"] == "1"
    assert envs["tf-stock"]["TF_NUM_INTRAOP_THREADS"] == str(placement.threads)


def test_instances_run_side_by_side_on_their_own_cores_and_add_up(tmp_path) -> None:
    if len(read_topology().physical()) < 2:
        pytest.skip("instances:2 needs two physical cores")
    suite = write_suite(tmp_path, backends=("tf-onednn",), scenarios=("inference",))
    out = tmp_path / "r"
    assert main(["run", str(suite), "--placement", "instances:2", "--out", str(out)]) == 0
    run = only_result(out)["runs"][0]
    first, second = run["instances"]
    assert run["status"] == "ok" and first["status"] == second["status"] == "ok"
    assert first["placement_obtained"]["cpus"] == first["placement"]["cpus"]
    assert set(first["placement"]["cpus"]).isdisjoint(second["placement"]["cpus"])
    assert run["derived"]["images_per_s"] == pytest.approx(
        first["derived"]["images_per_s"] + second["derived"]["images_per_s"])
    assert run["placement"]["instances"] == [first["placement"]["cpus"],
                                             second["placement"]["cpus"]]
