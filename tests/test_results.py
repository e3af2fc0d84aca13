from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from bench import results
from bench.results import ResultError, ResultFile, load, new_path

NOW = dt.datetime(2026, 11, 26, 12, 0, 0, tzinfo=dt.UTC)


def test_result_file_is_saved_whole_after_every_run(tmp_path: Path) -> None:
    path = new_path(tmp_path, "box", "quick", NOW)
    rf = ResultFile(path, {"suite": {"name": "quick"}})
    assert load(path)["runs"] == [] and load(path)["complete"] is False
    rf.add_run({"run_id": "inference/tf-stock", "backend": "tf-stock", "scenario": "inference",
                "status": "skipped", "reason": "a test"})
    assert [r["run_id"] for r in load(path)["runs"]] == ["inference/tf-stock"]
    rf.finish()
    assert load(path)["complete"] is True
    assert list(path.parent.glob(".*tmp")) == [], "no temporary file is left behind"
    assert path.stat().st_mode & 0o777 == 0o644


def test_new_results_never_overwrite_an_existing_file(tmp_path: Path) -> None:
    first = new_path(tmp_path, "box", "quick", NOW)
    ResultFile(first, {})
    second = new_path(tmp_path, "box", "quick", NOW)
    assert second != first and second.name == "20261126T120000Z-2_quick.json"
    with pytest.raises(FileExistsError):
        ResultFile(first, {})


def test_loading_refuses_an_unknown_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"schema_version": 99, "runs": []}))
    with pytest.raises(ResultError, match=r"r\.json: schema_version 99 is not supported"):
        load(path)


@pytest.mark.parametrize(("content", "message"), [
    ('{"schema_version": 1, "runs": [', "not valid JSON"),
    ('{"runs": []}', "not a tlbench result file"),
    ('{"schema_version": 1}', "has no list of runs"),
])
def test_loading_refuses_truncated_or_foreign_files(tmp_path: Path, content: str,
                                                    message: str) -> None:
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(ResultError, match=message):
        load(path)


def test_a_failed_write_leaves_the_previous_file_intact(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    results.write_atomic(path, {"schema_version": 2, "runs": []})
    with pytest.raises(ValueError):
        results.write_atomic(path, {"bad": float("nan")})  # NaN is refused, not written
    assert load(path) == {"schema_version": 2, "runs": []}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_a_record_that_breaks_the_contract_is_kept_as_a_failed_run_naming_the_break(
        tmp_path: Path) -> None:
    rf = ResultFile(new_path(tmp_path, "box", "quick", NOW), {})
    rf.add_run({"run_id": "inference/tf-stock", "backend": "tf-stock", "scenario": "inference",
                "status": "ok", "log": "x.log", "derived": {"images_per_s": 1.0}})
    [run] = load(rf.path)["runs"]
    assert run["status"] == "failed" and run["log"] == "x.log"
    assert "breaks the result contract" in run["error"] and "'derived'" in run["error"]


def test_a_file_whose_run_breaks_the_contract_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"schema_version": 2, "runs": [
        {"run_id": "inference/x", "backend": "x", "scenario": "inference", "status": "ok",
         "series": {"latency_bs1": {"work": 1, "samples": [0.1, -1.0]}}}]}))
    with pytest.raises(ResultError, match=r"run 0 inference/x\.series\.latency_bs1: every time "
                                          r"must be a positive number"):
        load(path)


def test_a_version_1_file_is_migrated_keeping_every_sample(tmp_path: Path) -> None:
    v1 = json.loads((Path(__file__).parent / "fixtures/default_vm.json").read_text())
    assert v1["schema_version"] == 1
    doc = load(Path(__file__).parent / "fixtures/default_vm.json")
    assert doc["schema_version"] == 2 and doc["migrated_from"] == 1
    for old, new in zip(v1["runs"], doc["runs"], strict=True):
        assert new["run_id"] == old["run_id"]
        if old["scenario"] == "full_training":
            micro = new["series"]["micro_step"]
            assert micro["samples"] == old["samples"]["micro_step_s"]
            assert micro["warmup"] == old["samples"]["warmup_micro_step_s"]
            assert micro["first"] == old["first_step_s"]
        elif old["scenario"] == "transfer":
            series = new["series"]["extract_batch"]
            assert [series["first"], *series["samples"]] == old["samples"]["extract_batch_s"]
        else:
            assert new["series"]["latency_bs1"]["samples"] == old["samples"]["latency_bs1"]


def test_previous_costs_are_the_newest_measured_wall_times_of_this_suite_here(
        tmp_path: Path) -> None:
    def write(name: str, runs: list[dict]) -> None:
        path = tmp_path / "box" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps({"schema_version": results.SCHEMA_VERSION, "runs": runs}))

    def run(run_id: str, status: str, wall: float) -> dict:
        return {"run_id": run_id, "backend": run_id.split("/")[1], "scenario": "inference",
                "status": status, "wall_s": wall, "params": {}, **(
                    {"reason": "not here"} if status == "skipped" else
                    {"error": "boom"} if status == "failed" else {})}

    write("20261201T000000Z_default.json", [run("inference/a", "failed", 50.0),
                                            run("inference/b", "failed", 7.0)])
    write("20261202T000000Z_default.json", [run("inference/a", "failed", 30.0),
                                            run("inference/b", "skipped", 0.0)])
    write("20261203T000000Z_quick.json", [run("inference/a", "failed", 1.0)])
    (tmp_path / "box" / "20261204T000000Z_default.json").write_text("{trunc")
    # the newest that ran it; a skipped run or a broken file tells nothing; another suite's
    # runs are not this suite's
    assert results.previous_costs(tmp_path, "box", "default") == {"inference/a": 30.0,
                                                                   "inference/b": 7.0}
    assert results.previous_costs(tmp_path, "elsewhere", "default") == {}
