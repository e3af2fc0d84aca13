"""Serving under MLPerf's LoadGen: the real LoadGen driving fake systems under test of a known
service time (the peak search, an invalid run, a stack that fails), and the serving scenario of
the small model on TensorFlow and OpenVINO through a real suite, its figures, reports and
compare."""

from __future__ import annotations

import contextlib
import copy
import os
import time
from pathlib import Path

import numpy as np
import pytest

from bench import cli, compare, loadgen, pinning, record, summary
from bench.report import console, html
from bench.scenarios.serving import peak_note
from tests.conftest import fake_sysfs, only_result, write_suite

pytestmark = pytest.mark.skipif(loadgen.missing() is not None,
                                reason=str(loadgen.missing()))

SERVICE_S = 0.002  # the fake stack: one query at a time, each at least 2 ms: at most 500/s
CAPACITY = 1 / SERVICE_S
IMAGES = np.zeros((8, 2, 2, 3), np.float32)


def _sleeper() -> loadgen.Server:
    def submit(batch: np.ndarray, done) -> None:
        time.sleep(SERVICE_S * len(batch))
        done(batch)

    return loadgen.Server(submit, (1,), lambda: None, "sleeps 2 ms a query")


def _server(qps: float, bound_s: float, tmp_path, queries: int = 500) -> loadgen.Outcome:
    settings = loadgen.Settings("Server", 0.5, queries, target_qps=qps, latency_bound_s=bound_s)
    return loadgen.run(settings, IMAGES, _sleeper(), tmp_path / f"server-{qps:g}")


def test_a_batch_runs_on_the_smallest_compiled_shape_that_holds_it() -> None:
    assert loadgen.buckets(1) == (1,) and loadgen.buckets(4) == (1, 2, 4)
    assert loadgen.buckets(6) == (1, 2, 4, 6)
    assert [loadgen.bucket(n, (1, 2, 4, 6)) for n in range(1, 7)] == [1, 2, 4, 4, 6, 6]


def test_the_bisection_brackets_the_highest_valid_rate() -> None:
    tried = []

    def probe(qps: float) -> loadgen.Outcome:
        tried.append(qps)
        return loadgen.Outcome("Server", qps, qps <= 123.0, "", [0.01], [0.01])

    peak = loadgen.find_peak(probe, 10, 1000, 10)
    assert len(tried) == 10 and peak.qps <= 123.0 < peak.invalid_above
    assert peak.invalid_above / peak.qps == pytest.approx(100 ** (1 / 2 ** 10))
    nothing = loadgen.find_peak(lambda q: loadgen.Outcome("Server", q, False, "", [0.5], [0.5]),
                                10, 1000, 3)
    assert nothing.qps is None and nothing.lowest_p99_ms() == pytest.approx(500)
    assert len(nothing.tried) == 4 and nothing.tried[-1].target_qps == 10  # the floor probed
    # a capacity just above the floor: every middle invalid, the floor itself valid
    floor = loadgen.find_peak(lambda q: loadgen.Outcome("Server", q, q <= 10.5, "", [0.01],
                                                        [0.01]), 10, 1000, 3)
    assert floor.qps == 10 and floor.invalid_above == pytest.approx(1000 ** (1 / 8) * 10 ** (7 / 8))
    with pytest.raises(ValueError, match="0 < low < high"):
        loadgen.find_peak(probe, 100, 10, 2)


def test_the_peak_search_through_loadgen_stays_below_a_known_capacity(tmp_path) -> None:
    peak = loadgen.find_peak(lambda q: _server(q, 0.05, tmp_path), 50, 2 * CAPACITY, 3)
    # a valid rate above what the stack can serve is impossible; below, the search found one
    assert peak.qps is not None and peak.qps < CAPACITY
    for outcome in peak.tried:
        assert len(outcome.latencies_s) >= 500
        assert min(outcome.latencies_s) >= SERVICE_S  # LoadGen's own per-query times, read back
        assert outcome.valid == (outcome.target_qps <= peak.qps)


def test_a_server_run_beyond_capacity_is_invalid_with_loadgen_s_reason(tmp_path) -> None:
    outcome = _server(2 * CAPACITY, 0.01, tmp_path)
    assert not outcome.valid
    assert "Reduce target QPS" in outcome.reason or "early stopping" in outcome.reason.lower()
    assert outcome.p99_ms > 10  # LoadGen's p99, from its detail log
    assert outcome.figures["overlatency_queries"] > 0


def test_a_stack_that_raises_ends_the_run_with_its_error(tmp_path) -> None:
    def submit(_batch, _done) -> None:
        raise OSError("the accelerator fell off")

    server = loadgen.Server(submit, (1,), lambda: None, "fails")
    with pytest.raises(RuntimeError, match="fell off"):
        loadgen.run(loadgen.Settings("SingleStream", 0.2, 10), IMAGES, server, tmp_path)


SERVING = """
[serving]
batch_size = 4
server_batch = 2
warmup_s = 0.2
single_stream_s = 1
offline_s = 1
server_s = 1
server_queries = 500
search_steps = 2
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("serving")
    suite = write_suite(folder, name="serving", backends=("tf-onednn", "openvino"),
                        scenarios=("inference", "serving"))
    suite.write_text(suite.read_text() + SERVING)
    assert cli.main(["run", str(suite), "--out", str(folder / "results")]) == 0
    return only_result(folder / "results")


def _serving(doc: dict) -> list[dict]:
    return [r for r in doc["runs"] if r["scenario"] == "serving"]


def test_serving_runs_loadgen_s_three_scenarios_on_tensorflow_and_openvino(served) -> None:
    assert [r["run_id"] for r in _serving(served)] == ["serving/tf-onednn", "serving/openvino"]
    for run in _serving(served):
        assert run["status"] == "ok", run.get("error")
        serving = run["serving"]
        runs = serving["runs"]
        assert [r["scenario"] for r in runs[:4]] == ["SingleStream", "Offline", "Server", "Server"]
        # the 2 search steps, and the bracket's floor when both were invalid
        floor = not any(r["valid"] for r in runs[2:4])
        assert len(runs) == 4 + floor
        if floor:
            assert runs[4]["scenario"] == "Server"
            assert runs[4]["target_qps"] == pytest.approx(serving["peak"]["bracket"][0])
        assert runs[0]["valid"], runs[0]["reason"]
        assert runs[0]["queries"] == len(run["series"]["singlestream"]["samples"]) >= 64
        assert runs[1]["valid"], runs[1]["reason"]
        assert serving["loadgen"] == loadgen.version()
        assert "not an MLPerf result" in serving["duration"]
        assert serving["loadgen_cost"]["queries"] > 0
        figures = record.figures(run)
        peak = figures["server peak QPS"]
        valid = [r["target_qps"] for r in runs[2:] if r["valid"]]
        assert peak.value == (max(valid) if valid else None)
        assert peak.note == peak_note(serving)
        # the stated default rule: 4 x SingleStream's p90, x the Server's batch-1 slowdown
        slower = serving["server_batch1_slower"]
        assert slower >= 1
        assert figures["latency bound ms"].value == pytest.approx(
            4 * figures["singlestream p90 ms"].value * slower)
        assert figures["latency bound ms"].note == "4 x this run's SingleStream p90" + (
            f" x {slower:.2f}, the Server system's batch-1 median over SingleStream's"
            if slower > 1 else "")
        assert figures["offline samples/s"].value == runs[1]["loadgen"]["samples_per_s"] > 0
        assert figures["offline group samples/s"].series == "offline"
        logs = Path(serving["logs"])  # LoadGen's files beside the worker log, a folder a run
        assert logs.parent == Path(run["log"]).parent
        assert len(list(logs.glob("server-*/mlperf_log_detail.txt"))) == len(runs) - 2
    tf, ov = (r["serving"] for r in _serving(served))
    assert tf["server_mode"].startswith("one batch at a time")
    assert ov["server_mode"].startswith("async queues")
    assert ov["single_mode"].startswith("synchronous requests (LATENCY")


def test_serving_is_in_both_reports(served) -> None:
    tables = console.scenario_tables(served)
    titles = {str(t.title): t.row_count for t in tables}
    assert titles["Serving under MLPerf LoadGen (short runs: not an MLPerf result)"] == 2
    assert titles["The harness's loops beside LoadGen (same stack, same result)"] == 6
    page = html.render(served, "served.json")
    assert "Serving under MLPerf LoadGen" in page and 'id="serving-chart"' in page
    assert page.count("LoadGen / harness") == 1


def test_the_cross_check_puts_the_harness_s_loops_beside_loadgen_s(served) -> None:
    rows = summary.crosscheck_rows(served)
    assert [(r["backend"], r["loadgen"]) for r in rows] == [
        (b, f) for b in ("tf-onednn", "openvino")
        for f in ("singlestream p50 ms", "singlestream p90 ms", "offline samples/s")]
    for row in rows:
        ours = record.figures(next(r for r in served["runs"] if r["run_id"] ==
                                   f"inference/{row['backend']}"))[row["harness"]]
        theirs = record.figures(next(r for r in served["runs"] if r["run_id"] ==
                                     f"serving/{row['backend']}"))[row["loadgen"]]
        assert row["harness_value"] == ours.value and row["loadgen_value"] == theirs.value
        assert row["ratio"] == pytest.approx(theirs.value / ours.value)
    assert rows[2]["harness"] == "throughput img/s"  # the same batch size on both sides


def test_compare_judges_singlestream_and_offline_and_sees_a_slower_stack(served) -> None:
    same = [r for r in compare.compare(served, served) if r.run_id.startswith("serving/")]
    judged = {r.metric for r in same if r.comparable}
    assert judged == {"singlestream p50 ms", "offline group samples/s"}
    assert all(r.status == compare.SAME and r.ratio == pytest.approx(1) for r in same
               if r.comparable)
    # the same runs on a quiet machine: under `make test` the other pytest process's load on
    # these CPUs is recorded, and a run disturbed by it is never judged worse (compare's rule,
    # tested in test_compare): what is tested here is the judgement of the serving figures
    quiet = copy.deepcopy(served)
    for run in _serving(quiet):
        run.pop("foreign_load", None)
        run.pop("steal", None)
    slower = copy.deepcopy(quiet)
    for run in _serving(slower):
        series = run["series"]["singlestream"]
        series["samples"] = [s * 1.5 for s in series["samples"]]
    rows = {(r.run_id, r.metric): r for r in compare.compare(quiet, slower)}
    for backend in ("tf-onednn", "openvino"):
        row = rows[(f"serving/{backend}", "singlestream p50 ms")]
        assert row.status == compare.WORSE and row.ratio == pytest.approx(1.5)


def test_loadgen_s_threads_run_on_a_core_apart_where_the_machine_has_one(tmp_path) -> None:
    """`cpus`: LoadGen's test starts on a thread pinned there, and the threads LoadGen starts
    inherit it; the stack's threads keep the process's CPUs."""
    mine = sorted(os.sched_getaffinity(0))
    if len(mine) < 2:
        pytest.skip("one CPU: no core to set apart")
    apart = (mine[-1],)
    seen: dict[str, set[str]] = {"stack": set(), "pinned": set()}

    def submit(batch: np.ndarray, done) -> None:
        seen["stack"].add(str(sorted(os.sched_getaffinity(0))))
        for task in Path("/proc/self/task").iterdir():  # every thread of this process
            with contextlib.suppress(OSError):
                status = (task / "status").read_text()
                allowed = next(x for x in status.splitlines() if x.startswith("Cpus_allowed_list"))
                if allowed.split(":")[1].strip() == str(apart[0]):
                    seen["pinned"].add(task.name)
        done(batch)

    server = loadgen.Server(submit, (1,), lambda: None, "records the threads' CPUs")
    outcome = loadgen.run(loadgen.Settings("SingleStream", 0.2, 16), IMAGES, server, tmp_path,
                          cpus=apart)
    # the thread that started the test and the threads LoadGen started (its logger, its issuer)
    assert outcome.latencies_s and len(seen["pinned"]) >= 2, seen
    assert seen["stack"] == {str(mine)}  # the system under test's thread kept the process's
    assert sorted(os.sched_getaffinity(0)) == mine


def test_the_core_apart_is_a_whole_core_the_run_does_not_touch(tmp_path) -> None:
    small = pinning.read_topology(fake_sysfs(tmp_path / "small", sockets=1, cores=2, threads=1),
                                  allowed={0, 1})
    assert pinning.spare_core(small, {0}) == (1,) and pinning.spare_core(small, {0, 1}) == ()
    smt = pinning.read_topology(fake_sysfs(tmp_path / "smt", sockets=1, cores=2, threads=2),
                                allowed=set(range(4)))
    first, second = (tuple(c["cpus"]) for c in smt.cores())
    # one SMT sibling of a core in use takes the whole core: the other core is the one apart
    assert pinning.spare_core(smt, {first[0]}) == second
    assert pinning.spare_core(smt, {first[0], second[1]}) == ()


def test_a_log_line_says_why_a_serving_run_has_no_peak(served) -> None:
    """A run whose headline has no value (no rate met the bound) says so in the CI log, with the
    lowest p99 seen, instead of an empty figure."""
    from bench.commands.measure import _run_line

    run = dict(next(r for r in served["runs"] if r["scenario"] == "serving"))
    run["serving"] = {**run["serving"], "peak": {"qps": None, "lowest_p99_ms": 112.2}}
    line = _run_line(run, 3, 5, 60.0, 30.0)
    bound = run["serving"]["bound_ms"]
    assert (f"ok: server peak QPS: no valid rate at this bound ({bound:.1f} ms); lowest p99 seen "
            f"112.2 ms (") in line
