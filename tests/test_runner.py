"""End to end: `tlbench run` with real worker processes on the small model, and its faults."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from bench import backends, record, summary
from bench.cli import main
from bench.launcher import worker_environment
from bench.machine import ISA_FLAGS
from bench.pinning import read_topology, resolve
from bench.plan import plan
from bench.suite import parse

from .conftest import correct_of, only_result, write_suite

pytestmark = pytest.mark.slow
# the fp32 stacks (bf16 needs AMX), INT8 through NNCF, which runs on any x86-64 CPU, and
# PyTorch and JAX under Keras 3
BACKENDS = ("tf-stock", "tf-onednn", "itex", "openvino", "openvino-int8", "torch", "jax")

@pytest.fixture(scope="module")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict]:
    folder = tmp_path_factory.mktemp("e2e")
    suite = write_suite(folder, backends=BACKENDS)
    code = main(["run", str(suite), "--out", str(folder / "results")])
    return code, only_result(folder / "results")


def test_every_run_of_every_backend_and_scenario_is_ok_or_says_why_not(e2e) -> None:
    code, doc = e2e
    assert code == 0
    assert doc["complete"] is True and doc["schema_version"] == 2
    paper = [b for b in BACKENDS if backends.get(b).paper]  # they run first
    expected = [(f"{s}/{b}", "skipped" if s == "full_training" and b.startswith("openvino")
                 else "ok")
                for group in (paper, [b for b in BACKENDS if b not in paper])
                for s in ("full_training", "transfer", "inference") for b in group]
    assert [(r["run_id"], r["status"]) for r in doc["runs"]] == expected
    assert "does not train" in doc["runs"][paper.index("openvino")]["reason"]


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
    assert len(compared) == 14
    for run in compared:
        assert run["parity"]["reference"] == "tf-stock", run["run_id"]
        assert run["parity"]["agrees"], (run["run_id"], run["parity"]["cosine_min"])


def test_each_worker_is_pinned_and_records_what_it_obtained(e2e) -> None:
    _, doc = e2e
    for run in (r for r in doc["runs"] if r["status"] == "ok"):
        assert run["placement_obtained"]["cpus"] == run["placement"]["cpus"]
        if not run["backend"].startswith("openvino"):
            assert run["runtime"]["intra_op_threads"] == run["placement"]["threads"]
        else:
            assert run["runtime"]["inference_num_threads"] == run["placement"]["threads"]
        assert run["placement_obtained"]["env"]["TF_NUM_INTRAOP_THREADS"] == str(
            run["placement"]["threads"])
        assert run["peak_rss_mb"] > 100
        assert run["model"]["variant"] == "small" and run["model"]["parameters"] > 0
        ref = run["reference"]  # the machine's speed beside the scenario, on the run's CPUs
        assert set(ref["before"]["per_cpu"]) == {str(c) for c in run["placement"]["cpus"]}
        assert ref["rate"] == pytest.approx(
            (ref["before"]["rate"] * ref["after"]["rate"]) ** 0.5)
        assert ref["kernel"].startswith("numpy ") and ref["unit"] == "Gelem/s"


def test_keras3_workers_ran_their_keras_backend_with_oneDNN_under_pytorch(e2e) -> None:
    _, doc = e2e
    for run in (r for r in doc["runs"] if r["backend"] in ("torch", "jax")):
        assert run["status"] == "ok", run.get("error")
        assert run["env"]["KERAS_BACKEND"] == run["backend"]
        assert run["runtime"]["keras_backend"] == run["backend"]
        assert run["runtime"]["keras"].startswith("3.")
        if run["backend"] == "torch":
            assert run["runtime"]["mkldnn_enabled"] is True
            assert sum(run["onednn"]["implementations"].values()) > 0  # its kernels, shown
        else:
            assert run["runtime"]["xla_cpu_runtime"] == "thunk (default)"


def _cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    """The flags of the first processor in /proc/cpuinfo, read here independently of bench."""
    for line in Path(path).read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def test_result_records_machine_software_and_suite(e2e) -> None:
    _, doc = e2e
    assert doc["machine"]["logical_cpus"] >= 1
    # Each ISA feature is recorded as what this CPU's /proc/cpuinfo says, present or absent; the
    # flags the CPU classes of `backends.support` are read from are among them.
    assert {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16"} <= set(
        ISA_FLAGS)
    flags = _cpu_flags()
    assert doc["machine"]["isa"] == {flag: flag in flags for flag in ISA_FLAGS}
    assert "tensorflow-cpu" in doc["software"]["packages"]
    assert doc["suite"]["name"] == "e2e" and "commit" in doc["project"]


def test_full_training_measured_in_full_reports_samples_total_and_accuracy(e2e) -> None:
    _, doc = e2e
    run = doc["runs"][0]
    f = record.figures(run)
    micro, update = run["series"]["micro_step"], run["series"]["update"]
    assert f["train total s"].kind == "measured"
    assert len(micro["samples"]) == 3  # 1 epoch x 2 updates x 2 micro-steps - the traced one
    assert len(update["samples"]) == 1 and update["first"] > 0  # 2 updates, the first traced
    share = update["samples"][0] / 2  # 2 micro-steps an update
    assert f["train img/s"].value == pytest.approx(
        float(np.median([4 / (x + share) for x in micro["samples"]])))
    assert f["train total s"].value >= (run["measured"]["data_fill_s"] + f["first step s"].value
                                        + sum(micro["samples"]))
    correct_of(run["accuracy"], run["data"]["test_images"])  # correct / held-out images


def test_full_training_records_the_input_pipeline_rate_it_timed(e2e) -> None:
    """Not compared with the training speed (that depends on the machine's load): the figure
    is there for every training run, and it is images / seconds of batches timed inside the
    worker, so at least the images it timed over the worker's whole life."""
    _, doc = e2e
    trained = [r for r in doc["runs"] if r["scenario"] == "full_training" and r["status"] == "ok"]
    assert [r["backend"] for r in trained] == ["tf-stock", "tf-onednn", "itex", "torch", "jax"]
    for run in trained:
        rate = run["measured"]["input_pipeline_images_per_s"]
        assert isinstance(rate, float) and math.isfinite(rate) and rate > 0, run["run_id"]
        micro = run["params"]["micro_batch"]
        # bench.scenarios.full_training times max(20, 2 epochs' worth) of micro-batches
        timed = max(20, 2 * max(1, run["data"]["train_images"] // micro)) * micro
        assert rate >= timed / run["worker_wall_s"], run["run_id"]


def test_transfer_reports_extraction_head_and_says_random_weights_mean_nothing(e2e) -> None:
    _, doc = e2e
    run = next(r for r in doc["runs"] if r["scenario"] == "transfer")
    m = run["measured"]
    assert record.figures(run)["transfer total s"].value == pytest.approx(
        m["decode_s"] + m["extraction_s"] + m["head_trace_s"] + m["head_s"])
    extract = run["series"]["extract_batch"]
    images = run["data"]["train_images"] + run["data"]["test_images"]
    batch = run["params"]["batch_size"]
    # one pass over both splits, one call a batch (the last padded), the first apart
    calls = -(-images // batch)
    assert 1 + len(extract["samples"]) == calls and run["throughput"]["asynchronous"] is False
    assert m["extraction_s"] >= extract["first"] + sum(extract["samples"])
    assert "random weights" in run["accuracy_note"]
    assert run["chance_accuracy"] == pytest.approx(1 / 4)


def test_transfer_reports_the_lfw_protocol_on_the_synthetic_pairs(e2e) -> None:
    _, doc = e2e
    for run in (r for r in doc["runs"] if r["scenario"] == "transfer" and r["status"] == "ok"):
        lfw = run["lfw_verification"]
        assert lfw["folds"] == 2 and lfw["missing_pairs"] == 0 and lfw["usable"] > 0
        assert lfw["extra_images_embedded"] == 0, "every pair image was embedded already"
        per_fold = 2 * lfw["per_fold"]  # same and different pairs of one fold, none missing
        assert lfw["usable"] == lfw["pairs"] == lfw["folds"] * per_fold
        for metric in ("euclidean", "angular"):
            figures = lfw[metric]
            assert figures["pairs"] == lfw["usable"] and figures["folds"] == lfw["folds"]
            assert figures["same_pairs"] == figures["different_pairs"] == lfw["usable"] // 2
            folds = figures["fold_accuracy"]
            assert len(folds) == lfw["folds"]
            for fold in folds:
                correct_of(fold, per_fold)  # each fold's pairs called right / its pairs
            assert figures["accuracy"] == pytest.approx(np.mean(folds))
            assert figures["accuracy_std"] == pytest.approx(np.std(folds))
            # The record keeps no distances to recompute the ROC from, but its AUC and EER are
            # of one curve: from (0, 0) to (1, 1), neither rate ever falling, through the point
            # (EER, 1 - EER). Below the EER the curve is at most 1 - EER and beyond it at least
            # that, so the area lies between (1 - EER)^2 and 1 - EER^2: an area that is not of
            # the curve the EER was read from (another's, or 1 - AUC) falls outside it unless
            # the EER is near 0.5.
            auc, eer = figures["auc"], figures["eer"]
            assert 0.0 <= eer <= 1.0
            assert (1 - eer) ** 2 - 1e-9 <= auc <= 1 - eer**2 + 1e-9, (auc, eer)


def test_inference_reports_latency_percentiles_and_throughput(e2e) -> None:
    _, doc = e2e
    run = next(r for r in doc["runs"] if r["scenario"] == "inference")
    f = record.figures(run)
    assert (f["latency bs1 p50 ms"].value <= f["latency bs1 p90 ms"].value
            <= f["latency bs1 p99 ms"].value)
    throughput = run["series"]["throughput_bs4"]
    assert f["throughput img/s"].value == pytest.approx(
        float(np.median([4 / x for x in throughput["samples"]])))
    # What the time-based windows guarantee at any speed (bench.measure.time_calls): at least
    # 5 calls timed, and more only while the window lasts, so every timed call but the last
    # started inside it; the warm-up likewise (its calls before the last one within warmup_s).
    for each in (r for r in doc["runs"] if r["scenario"] == "inference" and r["status"] == "ok"):
        latency, params = each["series"]["latency_bs1"], each["params"]
        # (a warm-up of the first call alone records no `warmup`: empty lists are left out)
        samples, warm = latency["samples"], [latency["first"], *latency.get("warmup", [])]
        assert len(samples) >= 5, each["run_id"]
        assert len(samples) == 5 or sum(samples[:-1]) < params["duration_s"], each["run_id"]
        assert sum(warm[:-1]) < params["warmup_s"], each["run_id"]


def test_openvino_int8_calibrates_on_training_images_and_proves_its_kernels(e2e) -> None:
    _, doc = e2e
    for scenario in ("transfer", "inference"):
        run = next(r for r in doc["runs"] if r["run_id"] == f"{scenario}/openvino-int8")
        calibration = run["runtime"]["obtained"]["calibration"]
        assert calibration["source"] == "training split" and calibration["asked"] == 300
        assert calibration["images"] == min(300, run["data"]["train_images"])
        assert run["backend_params"] == {"calibration_images": 300, "preset": "performance",
                                         "fast_bias_correction": True, "hint": "throughput",
                                         "streams": 0, "threads": 0, "requests": 0,
                                         "pin": "auto"}
        assert run["kernels"]["asked"] == "int8"
        assert record.kernel_mismatch(run) is None, run["kernels"]["precision_s"]
        f32 = next(r for r in doc["runs"] if r["run_id"] == f"{scenario}/openvino")
        assert f32["kernels"]["asked"] == "fp32" and record.kernel_mismatch(f32) is None
    (row,) = summary.precision_rows(doc)
    assert row["backend"] == "openvino-int8" and row["fp32"] == "openvino"
    assert set(row["speed"]) == {"extract img/s", "latency bs1 p50 ms", "throughput img/s"}
    assert set(row["accuracy"]) >= {"accuracy"} and row["note"]  # random weights: said


def test_openvino_throughput_counts_completions_in_sub_windows(e2e) -> None:
    _, doc = e2e
    run = next(r for r in doc["runs"] if r["run_id"] == "inference/openvino")
    assert run["throughput"]["asynchronous"] is True and run["throughput"]["requests"] >= 1
    series = run["series"]["throughput_bs4"]
    assert series["per"] == "bin" and len(series["samples"]) >= 1
    # A 0.5 s window is one group of completions whatever the machine's speed (completion_bins
    # makes about one a second): its seconds per request, counted from the last completion
    # before the window, so at any speed under the warm-up and the window together.
    assert len(series["samples"]) == 1
    assert 0 < series["samples"][0] <= run["params"]["warmup_s"] + run["params"]["duration_s"]
    # extraction through the same kind of queue: the first fill warm-up, later completions binned
    run = next(r for r in doc["runs"] if r["run_id"] == "transfer/openvino")
    extract = run["series"]["extract_batch"]
    assert run["throughput"]["asynchronous"] is True and extract["per"] == "bin"
    assert len(extract["warmup"]) < run["throughput"]["requests"] and extract["samples"]
    assert "async queue" in record.figures(run)["extract img/s"].note


def test_worker_environment_carries_threads_and_backend_switch() -> None:
    topology = read_topology()
    placement = resolve("all", topology)
    runs = plan(parse('[suite]\nscenarios = ["inference"]\n'))
    envs = {r.backend: worker_environment(r.backend, placement) for r in runs}
    assert envs["tf-stock"]["TF_ENABLE_ONEDNN_OPTS"] == "0"
    assert envs["tf-onednn"]["TF_ENABLE_ONEDNN_OPTS"] == "1"
    assert envs["tf-stock"]["TF_NUM_INTRAOP_THREADS"] == str(placement.threads)


def test_a_worker_gets_a_clean_environment_and_only_the_variables_passed_through() -> None:
    placement = resolve("all", read_topology())
    shell = {"PATH": "/usr/bin", "HOME": "/home/u", "TF_CONFIG": '{"cluster": {}}',
             "OMP_NUM_THREADS": "64", "KMP_AFFINITY": "none", "LD_PRELOAD": "/lib/evil.so",
             "MY_PROXY": "http://proxy", "TLBENCH_CACHE": "/cache"}
    env = worker_environment("tf-onednn", placement, shell=shell)
    assert (env["PATH"], env["HOME"], env["TLBENCH_CACHE"]) == ("/usr/bin", "/home/u", "/cache")
    assert {"TF_CONFIG", "LD_PRELOAD", "MY_PROXY"}.isdisjoint(env)
    assert env["OMP_NUM_THREADS"] == str(placement.threads)  # the harness's, not the shell's
    assert env["KMP_AFFINITY"] == "granularity=fine,compact,1,0"
    passed = worker_environment("tf-onednn", placement, ("MY_PROXY",), shell=shell)
    assert passed["MY_PROXY"] == "http://proxy"


def test_the_result_records_every_variable_the_worker_got(e2e) -> None:
    _, doc = e2e
    for run in (r for r in doc["runs"] if r["status"] == "ok"):
        assert run["placement_obtained"]["env"] == run["env"], run["run_id"]
        assert "TF_CONFIG" not in run["env"] and "PATH" in run["env"]


def test_instances_run_side_by_side_on_their_own_cores_and_add_up(tmp_path) -> None:
    if len(read_topology().physical()) < 2:
        pytest.skip("instances:2 needs two physical cores")
    suite = write_suite(tmp_path, backends=("tf-onednn",), scenarios=("inference",))
    out = tmp_path / "r"
    assert main(["run", str(suite), "--placement", "instances:2", "--out", str(out)]) == 0
    run = only_result(out)["runs"][0]
    first, second = run["processes"]
    assert run["status"] == "ok" and first["status"] == second["status"] == "ok"
    assert first["placement_obtained"]["cpus"] == first["placement"]["cpus"]
    assert set(first["placement"]["cpus"]).isdisjoint(second["placement"]["cpus"])
    # summed: call k of each instance ran at about the same time, their rates add up
    a, b = (p["series"]["throughput_bs4"]["samples"] for p in (first, second))
    n = min(len(a), len(b))
    assert record.figures(run)["throughput img/s"].value == pytest.approx(float(np.median(
        [4 / x + 4 / y for x, y in zip(a[:n], b[:n], strict=True)])))
    assert len(run["series"]["latency_bs1"]["samples"]) == sum(
        len(p["series"]["latency_bs1"]["samples"]) for p in (first, second))
    assert run["placement"]["instances"] == [first["placement"]["cpus"],
                                             second["placement"]["cpus"]]


@pytest.mark.slow
def test_a_projected_window_grows_toward_its_interval_up_to_its_cap(tmp_path: Path) -> None:
    text = write_suite(tmp_path, name="grow", backends=("tf-stock",),
                       scenarios=("full_training",)).read_text()
    # 3 steady steps of the tiny model are never within ±1% (Student's t with 2 df is 4.3)
    text = text.replace('measure = "full"', 'measure = "projected"\ninterval = 0.01\n'
                                            'max_window_steps = 5')
    (tmp_path / "grow.toml").write_text(text)
    assert main(["run", str(tmp_path / "grow.toml"), "--out", str(tmp_path / "r")]) == 0
    run = only_result(tmp_path / "r")["runs"][0]
    assert run["status"] == "ok", run.get("error")
    assert len(run["series"]["micro_step"]["samples"]) == 5  # window_steps 3, grown to the cap
    note = record.figures(run)["train total s"].note
    assert "from 5 micro-steps" in note
    assert note.endswith("window grown toward ±1%: not reached by the cap of 5"), note


def test_an_interval_is_reached_when_half_its_width_is_within_the_fraction_of_the_total(
        ) -> None:
    from bench.scenarios.full_training import interval_reached

    assert interval_reached({"total_s": 100.0, "low": 90.0, "high": 110.0}, 0.10)
    assert not interval_reached({"total_s": 100.0, "low": 89.0, "high": 111.0}, 0.10)
    assert not interval_reached({"total_s": 100.0, "low": None, "high": None}, 0.99)
