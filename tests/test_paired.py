"""The paired verdict of an interleaved A/B job (bench.paired through bench.compare), on fixture
processes: the dev VM's real result, each run's samples redrawn per process (tests/test_compare)
with a drift per round that both sides share, as two processes measured back to back do."""

from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np
import pytest
from scipy.stats import ttest_1samp

from bench import compare, paired, record, significance
from bench.compare import NOT_COMPARABLE, SAME, WORSE

from .test_compare import fixture, with_processes

# the machine's speed in 8 rounds of one job: far more between rounds than any threshold
JOB_DRIFT = [1.0, 1.18, 0.86, 1.1, 0.93, 1.22, 0.9, 1.05]


def job(factor: float = 1.0, drift: list[float] = JOB_DRIFT,
        seeds: tuple[int, int] = (1, 2)) -> tuple[dict[str, Any], dict[str, Any]]:
    """Sides A and B of one interleaved job: round k of both ran at the machine's drift[k]; B's
    every figure `factor` slower."""
    base = fixture("default_vm.json")
    a = with_processes(base, drift, seed=seeds[0])
    b = with_processes(base, drift, factor=factor, seed=seeds[1])
    for doc, side in ((a, "A"), (b, "B")):
        doc.update(created="2026-12-07T05:00:00+00:00", ab={"side": side, "python": "py",
                                                            "env": {}})
    return a, b


def _rounds(run: dict[str, Any]) -> list[dict[str, Any]]:
    return [run, *run["repeats"]]


def _row(rows: list[compare.Row], run_id: str = "full_training/tf-stock") -> compare.Row:
    return next(r for r in rows if r.run_id == run_id and r.primary)


def test_the_two_sides_of_one_job_are_judged_on_pairs_others_are_not() -> None:
    a, b = job()
    assert compare.one_job(a, b) and compare.one_job(b, a)
    rows = compare.compare(a, b)
    assert rows and all(r.judged_on == "pairs" and r.n_base == r.n_new == 8 for r in rows)
    other = {**b, "created": "2026-12-07T06:00:00+00:00"}  # another job: its own hour
    assert not compare.one_job(a, other)
    assert all(r.judged_on == "processes" for r in compare.compare(a, other))
    assert all(r.judged_on == "processes" for r in compare.compare(a, b, pairs=False))


def test_a_drift_between_rounds_cancels_in_pairs_and_a_10_percent_slowdown_is_caught() -> None:
    a, b = job(factor=1.10)
    rows = compare.compare(a, b)
    assert [r.status for r in rows if r.comparable] == [WORSE] * 8, \
        [(r.run_id, r.metric, r.p_value) for r in rows]
    assert all(8 < r.time_change_pct < 12 for r in rows)
    # the same processes judged as two unrelated groups: the drift hides the 10%
    groups = compare.compare(a, b, pairs=False)
    assert WORSE not in [r.status for r in groups]
    # A/A: the same drift, no change
    assert {r.status for r in compare.compare(*job(seeds=(3, 4)))} == {SAME}


def test_the_pair_ratio_and_p_value_are_the_one_sample_t_on_the_rounds_log_ratios() -> None:
    a, b = job(factor=1.03)
    row = _row(compare.compare(a, b, pairs=True))
    base, new = (record.process_figures(next(r for r in doc["runs"]
                                             if r["run_id"] == row.run_id)) for doc in (a, b))
    logs = np.log([n[row.metric].value / m[row.metric].value for m, n in zip(base, new,
                                                                              strict=True)])
    assert row.ratio == pytest.approx(float(np.exp(logs.mean())))
    raw = float(ttest_1samp(logs, 0.0).pvalue)
    primary = sum(r.primary and r.comparable for r in compare.compare(a, b))
    assert raw <= row.p_value <= min(1.0, primary * raw)
    assert row.pair_spread == pytest.approx(float(logs.std(ddof=1)))


def test_one_pair_on_a_disturbed_machine_is_left_out_before_pairing_and_said() -> None:
    a, b = job()
    run = next(r for r in b["runs"] if r["run_id"] == "full_training/tf-stock")
    third = _rounds(run)[2]
    third["foreign_load"] = {"share": 0.4, "source": "/proc/stat"}
    for series in third["series"].values():  # that process ran 40% slower
        series["samples"] = [x * 1.4 for x in series["samples"]]
    row = _row(compare.compare(a, b))
    assert row.status == SAME and row.n_base == 7
    assert "round(s) 3 left out: a process of the pair lost 5% or more" in row.note
    assert "7 pairs of adjacent processes" in row.note


def test_one_outlier_pair_the_probes_did_not_see_is_left_out_by_the_one_rule() -> None:
    a, b = job(factor=1.0)
    run = next(r for r in b["runs"] if r["run_id"] == "full_training/tf-stock")
    for series in _rounds(run)[5]["series"].values():
        series["samples"] = [x * 1.5 for x in series["samples"]]
    row = _row(compare.compare(a, b))
    assert row.status == SAME and row.n_base == 7
    assert "round(s) 6 left out as outlier pair(s)" in row.note
    kept = _row(compare.compare(*job(factor=1.0)))  # without it, no round is left out
    assert kept.n_base == 8 and "left out" not in kept.note


def test_the_modified_z_rule_needs_five_pairs_and_a_spread() -> None:
    assert not paired._outliers(np.log([1.0, 1.0, 1.5, 1.01])).any()  # four: none dropped
    assert not paired._outliers(np.zeros(8)).any()  # no spread: none dropped
    flags = paired._outliers(np.log([1.0, 1.01, 0.99, 1.02, 0.98, 1.3]))
    assert flags.tolist() == [False] * 5 + [True]


def test_a_round_one_side_lacks_is_not_paired_and_no_pair_at_all_is_not_comparable() -> None:
    a, b = job()
    run = next(r for r in b["runs"] if r["run_id"] == "full_training/tf-stock")
    del run["repeats"][3:]  # B has 4 rounds of 8
    row = _row(compare.compare(a, b))
    assert row.n_base == 4 and "round(s) 5, 6, 7, 8 have no pair" in row.note
    one = copy.deepcopy(b)
    for r in one["runs"]:
        if r["run_id"] == "full_training/tf-stock":
            r["repeats"] = r["repeats"][:1]
            for p in _rounds(r):
                p["foreign_load"] = {"share": 0.5, "source": "/proc/stat"}
    rows = [r for r in compare.compare(a, one, pairs=True)
            if r.run_id == "full_training/tf-stock"]
    assert [r.status for r in rows] == [NOT_COMPARABLE]
    assert "no pair of processes to judge" in rows[0].note


def test_training_time_is_the_primary_family_the_other_rows_are_adjusted_apart() -> None:
    a, b = job(factor=1.04)
    rows = [r for r in compare.compare(a, b) if r.comparable]
    primary = [r for r in rows if r.primary]
    assert {r.run_id for r in primary} == {"full_training/tf-stock", "full_training/tf-onednn"}
    assert all(r.metric == "train img/s" for r in primary)
    for family in (primary, [r for r in rows if not r.primary]):
        expected = significance.holm([paired.pair(*_runs(a, b, r.run_id), r.metric).p_value()
                                 for r in family])
        assert [r.p_value for r in family] == pytest.approx(expected)


def _runs(a: dict[str, Any], b: dict[str, Any], run_id: str) -> tuple[dict[str, Any], ...]:
    return tuple(next(r for r in doc["runs"] if r["run_id"] == run_id) for doc in (a, b))


def test_the_detectable_change_is_the_t_test_s_power_as_simulated() -> None:
    n, spread, alpha = 6, 0.03, 0.01
    change = paired.detectable_change(n, spread, alpha)
    assert change is not None and 0.04 < change < 0.1
    rng = np.random.default_rng(7)
    logs = np.log1p(change) + rng.normal(0, spread, (4000, n))
    caught = np.mean(ttest_1samp(logs, 0.0, axis=1).pvalue < alpha)
    assert caught == pytest.approx(paired.POWER, abs=0.02)
    assert paired.detectable_change(12, spread, alpha) < change  # more pairs, smaller change
    assert paired.detectable_change(1, spread, alpha) is None
    assert paired.detectable_change(6, None, alpha) is None


def test_the_verdict_says_what_its_pairs_can_catch() -> None:
    row = _row(compare.compare(*job(factor=1.0)))
    detectable = paired.detectable_change(row.n_base, row.pair_spread, compare.ALPHA / 2)
    assert (f"at their spread, {row.pair_spread:.1%}, these pairs catch a {detectable:.1%} "
            f"change 90% of the time") in row.note


def test_the_exports_carry_every_judged_figure_and_the_verdict(tmp_path) -> None:
    from bench import exports

    a, b = job(factor=1.10)
    rows = compare.compare(a, b)
    written = exports.write(b, tmp_path / "20261207T050000Z_ci-B.json", rows)
    folder = tmp_path / "20261207T050000Z_ci-B.exports"
    assert written == [folder / "github-bigger.json", folder / "github-smaller.json",
                       folder / "bencher.json"]
    bigger, smaller, bmf = (json.loads(p.read_text()) for p in written)
    run = next(r for r in b["runs"] if r["run_id"] == "full_training/tf-stock")
    figure = record.figures(run)["train img/s"]
    low, high = figure.spread
    train = next(e for e in bigger if e["name"] == "full_training/tf-stock train img/s")
    assert train["unit"] == figure.unit and train["value"] == figure.value
    assert train["range"] == f"{low:.6g}–{high:.6g} over 8 processes"
    assert train["extra"].startswith("worse: new/base 0.9") and "(primary)" in train["extra"]
    assert bmf["full_training/tf-stock"]["train-img-s"] == {
        "value": figure.value, "lower_value": low, "upper_value": high}
    judged = {(r["run_id"], f.name): f for r in b["runs"] if r["status"] == "ok"
              for f in record.judged(r)}
    names = sorted(e["name"] for e in bigger + smaller)
    assert names == sorted(f"{run_id} {name}" for run_id, name in judged)
    assert all(judged[(e["name"].split(" ", 1)[0], e["name"].split(" ", 1)[1])].better
               == record.LOWER for e in smaller) and smaller
    assert all(isinstance(m["value"], float) for measures in bmf.values()
               for m in measures.values())
    assert exports.slug("latency bs1 ms") == "latency-bs1-ms"


def test_the_pull_request_comment_is_the_verdict_in_markdown(tmp_path, capsys) -> None:
    from bench import cli

    a, b = job(factor=1.10)
    paths = []
    for side, doc in (("A", a), ("B", b)):
        paths.append(tmp_path / f"20261207T050000Z_ci-{side}.json")
        paths[-1].write_text(json.dumps(doc))
    assert cli.main(["compare", *map(str, paths), "--markdown"]) == 1
    body = capsys.readouterr().out
    lines = body.splitlines()
    assert lines[0] == "### 20261207T050000Z_ci-B.json vs 20261207T050000Z_ci-A.json"
    assert lines[2].startswith("**8 regression(s)**: `full_training/tf-stock` train img/s +")
    table = [line for line in lines if line.startswith("| `")]
    assert len(table) == 8 and all(line.count(" | ") == 9 for line in table)
    train = next(line for line in table if line.startswith("| `full_training/tf-stock` |"))
    assert "| train img/s † |" in train and "| 🔴 worse |" in train
    assert "8 pairs of adjacent processes" in train
    assert "two jobs" not in body  # one interleaved job: no drift between hours to warn of
    b["created"] = "2026-12-07T09:00:00+00:00"
    paths[1].write_text(json.dumps(b))
    assert cli.main(["compare", *map(str, paths), "--markdown"]) in (0, 1)
    assert "- two jobs (created 2026-12-07T05:00:00+00:00 and 2026-12-07T09:00:00+00:00)" in \
        capsys.readouterr().out


def test_pairs_too_few_for_any_sensible_change_say_so() -> None:
    a, b = job()
    for doc in (a, b):
        for run in doc["runs"]:
            if run.get("repeats"):
                run["repeats"] = run["repeats"][:1]  # 2 rounds
    row = _row(compare.compare(a, b))
    assert row.n_base == 2 and paired.detectable_change(2, row.pair_spread, 0.005) > 1
    assert "these pairs are too few to catch even a doubling 90% of the time" in row.note

