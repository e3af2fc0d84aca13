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
    rf.add_run({"run_id": "inference/tf-stock", "status": "ok"})
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
    results.write_atomic(path, {"schema_version": 1, "runs": []})
    with pytest.raises(ValueError):
        results.write_atomic(path, {"bad": float("nan")})  # NaN is refused, not written
    assert load(path) == {"schema_version": 1, "runs": []}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
