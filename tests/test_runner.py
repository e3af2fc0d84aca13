"""End to end: `tlbench run` with real worker processes on the small model, and its faults."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.cli import main
from bench.launcher import Launcher, worker_environment
from bench.pinning import read_topology, resolve
from bench.plan import plan
from bench.results import load
from bench.suite import parse

pytestmark = pytest.mark.slow

SMALL = """
[suite]
name = "{name}"
backends = {backends}
scenarios = {scenarios}
timeout_s = {timeout}

[model]
variant = "small"
image_size = 96
embedding_size = 64
weights = "{weights}"

[data]
identities = 4
min_images = 3
max_images = 4

[full_training]
measure = "full"
epochs = 1
steps_per_epoch = 2
batch_size = 8
micro_batch = 4
warmup_steps = 0
window_steps = 3

[transfer]
batch_size = 4
head_steps = 20

[inference]
batch_size = 4
warmup_s = 0.2
duration_s = 0.5
"""


def write_suite(folder: Path, name: str = "e2e", backends=("tf-stock", "tf-onednn"),
                scenarios=("full_training", "transfer", "inference"), timeout: float = 300,
                weights: str = "") -> Path:
    path = folder / f"{name}.toml"
    path.write_text(SMALL.format(name=name, backends=json.dumps(list(backends)),
                                 scenarios=json.dumps(list(scenarios)), timeout=timeout,
                                 weights=weights))
    return path


def only_result(out: Path) -> dict:
    files = list(out.glob("*/*.json"))
    assert len(files) == 1, files
    return load(files[0])


@pytest.fixture(scope="module")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict]:
    folder = tmp_path_factory.mktemp("e2e")
    code = main(["run", str(write_suite(folder)), "--out", str(folder / "results")])
    return code, only_result(folder / "results")


def test_every_run_of_both_backends_and_all_scenarios_is_ok(e2e) -> None:
    code, doc = e2e
    assert code == 0
    assert doc["complete"] is True and doc["schema_version"] == 1
    assert [(r["run_id"], r["status"]) for r in doc["runs"]] == [
        (f"{s}/{b}", "ok") for s in ("full_training", "transfer", "inference")
        for b in ("tf-stock", "tf-onednn")]


def test_each_worker_ran_with_its_backends_onednn_setting_and_pinning(e2e) -> None:
    _, doc = e2e
    for run in doc["runs"]:
        expected = run["backend"] == "tf-onednn"
        assert run["env"]["TF_ENABLE_ONEDNN_OPTS"] == ("1" if expected else "0")
        assert run["runtime"]["onednn_enabled"] is expected
        assert run["placement_obtained"]["cpus"] == run["placement"]["cpus"]
        assert run["runtime"]["intra_op_threads"] == run["placement"]["threads"]
        assert run["placement_obtained"]["env"]["TF_NUM_INTRAOP_THREADS"] == str(
            run["placement"]["threads"])
        assert run["peak_rss_mb"] > 100
        assert run["model"]["variant"] == "small" and run["model"]["parameters"] > 0


def test_result_records_machine_software_and_suite(e2e) -> None:
    _, doc = e2e
    assert doc["machine"]["logical_cpus"] >= 1 and "avx512f" in doc["machine"]["isa"]
    assert "tensorflow-cpu" in doc["software"]["packages"]
    assert doc["suite"]["name"] == "e2e" and "commit" in doc["project"]


def test_full_training_measured_in_full_reports_samples_total_and_accuracy(e2e) -> None:
    _, doc = e2e
    run = doc["runs"][0]
    assert run["total"]["kind"] == "measured"
    assert len(run["samples"]["micro_step_s"]) == 3  # 1 epoch x 2 updates x 2 micro - traced one
    assert run["derived"]["images_per_s"] == pytest.approx(
        4 / run["stats"]["micro_step_s"]["median"])
    assert run["total"]["total_s"] >= run["first_step_s"] + sum(run["samples"]["micro_step_s"])
    assert 0.0 <= run["accuracy"] <= 1.0


def test_transfer_reports_extraction_head_and_says_random_weights_mean_nothing(e2e) -> None:
    _, doc = e2e
    run = next(r for r in doc["runs"] if r["scenario"] == "transfer")
    assert run["total"]["total_s"] == pytest.approx(run["extraction_s"] + run["head_s"])
    assert run["derived"]["images"] == run["data"]["train_images"] + run["data"]["test_images"]
    assert "random weights" in run["accuracy_note"]
    assert run["chance_accuracy"] == pytest.approx(1 / 4)


def test_inference_reports_latency_percentiles_and_throughput(e2e) -> None:
    _, doc = e2e
    run = next(r for r in doc["runs"] if r["scenario"] == "inference")
    d = run["derived"]
    assert d["latency_ms_p50"] <= d["latency_ms_p90"] <= d["latency_ms_p99"]
    assert d["images_per_s"] == pytest.approx(4 / run["stats"]["throughput_bs4"]["median"])
    assert len(run["samples"]["latency_bs1"]) >= 5


def test_a_timed_out_worker_is_failed_and_the_suite_goes_on(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, backends=("tf-stock",), scenarios=("inference",), timeout=2)
    assert main(["run", str(suite), "--out", str(tmp_path / "r")]) == 1
    run = only_result(tmp_path / "r")["runs"][0]
    assert run["status"] == "failed" and run["error"].startswith("timed out after 2 s")
    assert "log_tail" in run


def test_a_failing_run_is_recorded_and_the_next_still_runs(tmp_path: Path) -> None:
    bad = tmp_path / "bad.weights.h5"
    bad.write_bytes(b"not an h5 file")
    suite = write_suite(tmp_path, backends=("tf-onednn",), scenarios=("inference",
                        "full_training"), weights=str(bad))
    assert main(["run", str(suite), "--out", str(tmp_path / "r")]) == 1
    failed, ok = only_result(tmp_path / "r")["runs"]
    assert failed["status"] == "failed" and str(bad) in failed["error"]
    assert "Traceback" in failed["traceback"]
    assert ok["status"] == "ok", "full training starts from scratch and ignores weights"


def test_a_worker_killed_by_a_signal_is_failed_with_the_signal_name(tmp_path: Path) -> None:
    suicide = tmp_path / "python"
    suicide.write_text("#!/bin/sh\nkill -SEGV $$\n")
    suicide.chmod(0o755)
    suite = parse(write_suite(tmp_path, backends=("tf-stock",),
                              scenarios=("inference",)).read_text())
    topology = read_topology()
    placement = resolve("all", topology)
    launcher = Launcher(topology, tmp_path / "logs", python=str(suicide))
    record = launcher.run(plan(suite)[0], placement, timeout_s=30)
    assert record["status"] == "failed"
    assert record["error"] == "worker killed by signal SIGSEGV"


def test_worker_environment_carries_threads_and_backend_switch() -> None:
    topology = read_topology()
    placement = resolve("all", topology)
    runs = plan(parse('[suite]\nscenarios = ["inference"]\n'))
    envs = {r.backend: worker_environment(r, placement) for r in runs}
    assert envs["tf-stock"]["TF_ENABLE_ONEDNN_OPTS"] == "0"
    assert envs["tf-onednn"]["TF_ENABLE_ONEDNN_OPTS"] == "1"
    assert envs["tf-stock"]["TF_NUM_INTRAOP_THREADS"] == str(placement.threads)


def test_ctrl_c_keeps_finished_runs_and_exits_130(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, name="intr", backends=("tf-stock", "tf-onednn"),
                        scenarios=("inference",))
    out = tmp_path / "r"
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # the worker's task file lands here
    proc = subprocess.Popen([sys.executable, "-m", "bench", "run", str(suite), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        files = list(out.glob("*/*.json"))
        if files and load(files[0])["runs"]:
            break
        time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("the first run never finished")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    doc = only_result(out)
    assert doc["interrupted"] == "SIGINT" and doc["complete"] is True
    assert [r["run_id"] for r in doc["runs"]] == ["inference/tf-stock"]
    assert doc["runs"][0]["status"] == "ok"
    assert _processes_mentioning(str(tmp_path)) == [], "the running worker died with the suite"


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(pid))
    return found
