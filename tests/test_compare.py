"""bench.compare and `tlbench compare`, driven by fixture result files (no benchmark is run).

The fixtures are real results of the dev VM, trimmed (tests/fixtures/README.md). The seeded
draws resample each fixture metric's own log-residuals around its median — noise like the real
samples, slow outliers and drifts included — as many samples as one CI process yielded when the
CI suite ran one process a run: these tests are of the within-process test's power.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import ttest_1samp

from bench import cli, compare, record, results, significance
from bench.compare import IMPROVED, NOT_COMPARABLE, SAME, WORSE

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parent.parent
DRAWS = 20
# Samples a process of each judged figure, those of the CI suite when it ran one process a run:
# 60 training micro-steps, ~110 steady extraction batches, 8 s of batch-1 calls (~270 at 30 ms)
# and of batch-8 calls (~90 for the slower backend). It now runs 3 processes of fewer samples
# and is judged on the processes' own figures (the tests of that are further down).
N_TRAIN = 60
N_EXTRACT, N_LATENCY, N_THROUGHPUT = 110, 150, 80


def fixture(name: str) -> dict[str, Any]:
    return results.load(FIXTURES / name)


def _draw(rng: np.random.Generator, samples: list[float], n: int, factor: float) -> list[float]:
    logs = np.log(samples)
    centre = np.median(logs)
    return list(np.exp(centre + rng.choice(logs - centre, n)) * factor)


SIZES = {"micro_step": N_TRAIN, "extract_batch": N_EXTRACT, "latency_bs1": N_LATENCY}


def redraw(doc: dict[str, Any], rng: np.random.Generator, factor: float = 1.0) -> dict[str, Any]:
    """The document with every series' samples redrawn around its own values, x factor (every
    sample is a duration: factor 1.1 is a 10% slowdown of every figure)."""
    doc = copy.deepcopy(doc)
    for run in doc["runs"]:
        if run.get("status") != "ok":
            continue
        for name, series in run["series"].items():
            n = SIZES.get(name, N_THROUGHPUT if name.startswith("throughput") else 0)
            if n:
                series["samples"] = _draw(rng, series["samples"], n, factor)
            else:  # the few updates of a projected run: slower alike
                series["samples"] = [x * factor for x in series["samples"]]
        if run["scenario"] == "transfer":
            run["data"]["train_images"] = (N_EXTRACT + 2) * run["params"]["batch_size"]
    return doc


def statuses(rows: list[compare.Row]) -> list[str]:
    return [r.status for r in rows]


def test_a_a_pairs_come_out_same_in_every_one_of_20_seeded_draws() -> None:
    base = fixture("default_vm.json")
    outcomes = []
    for seed in range(DRAWS):
        rng = np.random.default_rng(seed)
        rows = compare.compare(redraw(base, rng), redraw(base, rng))
        assert len(rows) == 8 and all(r.comparable for r in rows)
        outcomes.append(statuses(rows))
    same = sum(all(s == SAME for s in draw) for draw in outcomes)
    assert same == DRAWS, outcomes


def test_a_10_percent_slowdown_comes_out_worse_in_20_of_20_seeded_draws() -> None:
    base = fixture("default_vm.json")
    flagged = 0
    for seed in range(DRAWS):
        rng = np.random.default_rng(1000 + seed)
        rows = compare.compare(redraw(base, rng), redraw(base, rng, factor=1.10))
        assert statuses(rows) == [WORSE] * 8, [(r.run_id, r.metric, r.status, r.note)
                                               for r in rows]
        assert all(5 < r.time_change_pct < 16 for r in rows)
        flagged += bool(compare.regressions(rows))
    assert flagged == DRAWS


def test_a_10_percent_speedup_comes_out_improved_not_worse() -> None:
    base = fixture("default_vm.json")
    rng = np.random.default_rng(7)
    rows = compare.compare(redraw(base, rng), redraw(base, rng, factor=1 / 1.10))
    assert statuses(rows) == [IMPROVED] * 8
    train = rows[0]
    assert train.metric == "train img/s" and train.ratio == pytest.approx(1.10, rel=0.05)


def test_a_result_against_itself_is_same_everywhere_with_ratio_one() -> None:
    doc = fixture("default_vm.json")
    rows = compare.compare(doc, doc)
    assert statuses(rows) == [SAME] * 8
    assert all(r.ratio == 1.0 and r.p_value == 1.0 for r in rows)
    assert rows[0].total_ratio == 1.0 and rows[0].total_kind == "projected"


def test_each_row_s_figures_are_the_run_s_own_from_the_contract() -> None:
    doc = fixture("default_vm.json")
    by_id = {r["run_id"]: r for r in doc["runs"]}
    for row in compare.compare(doc, doc):
        assert row.base == record.figures(by_id[row.run_id])[row.metric].value


def test_failed_skipped_and_missing_runs_are_not_comparable_with_the_reason() -> None:
    rows = {r.run_id: r for r in compare.compare(fixture("quick_vm.json"),
                                                 fixture("mixed_vm.json"))}
    failed = rows["inference/tf-onednn"]
    assert failed.status == NOT_COMPARABLE and failed.note.startswith("failed in new: timed out")
    assert rows["transfer/itex"].note == "missing in base"
    assert rows["full_training/tf-stock"].status == SAME
    reverse = {r.run_id: r for r in compare.compare(fixture("mixed_vm.json"),
                                                    fixture("quick_vm.json"))}
    assert reverse["inference/itex"].note == "missing in new"


def test_runs_with_other_parameters_are_not_comparable_and_say_which() -> None:
    rows = compare.compare(fixture("quick_vm.json"), fixture("default_vm.json"))
    assert statuses(rows) == [NOT_COMPARABLE] * len(rows)
    assert "model.image_size: 96 → 160" in rows[0].note


def test_a_longer_measurement_window_alone_keeps_runs_comparable() -> None:
    base = fixture("default_vm.json")
    new = copy.deepcopy(base)
    for run in new["runs"]:
        for key in ("window_steps", "duration_s"):
            if key in run["params"]:
                run["params"][key] *= 2
    assert NOT_COMPARABLE not in statuses(compare.compare(base, new))


def test_too_few_samples_is_inconclusive_never_worse() -> None:
    base = fixture("quick_vm.json")  # 4 training micro-steps per backend
    slow = copy.deepcopy(base)
    for run in slow["runs"]:
        if run["scenario"] == "full_training":
            micro, update = run["series"]["micro_step"], run["series"]["update"]
            micro["samples"] = [x * 1.5 for x in micro["samples"]]
            update["samples"] = [x * 1.5 for x in update["samples"]]
    train = [r for r in compare.compare(base, slow) if r.metric == "train img/s"]
    assert [r.status for r in train] == [SAME, SAME]
    assert all("too few samples (4/4)" in r.note for r in train)
    assert all(r.time_change_pct == pytest.approx(50) for r in train)


def test_a_significant_change_within_the_threshold_is_same_and_beyond_it_worse() -> None:
    rng = np.random.default_rng(3)
    base = copy.deepcopy(fixture("default_vm.json"))  # plain runs, to change (record.Run)
    base["runs"] = [r for r in base["runs"] if r["run_id"] == "full_training/tf-onednn"]
    new = copy.deepcopy(base)
    steps = list(1.4 * np.exp(rng.normal(0, 0.01, 120)))
    base["runs"][0]["series"]["micro_step"]["samples"] = steps
    new["runs"][0]["series"]["micro_step"]["samples"] = [x * 1.03 for x in rng.permutation(steps)]
    [row] = compare.compare(base, new, max_slowdown_pct=5)
    assert row.significant and row.status == SAME and "within ±5%" in row.note
    [row] = compare.compare(base, new, max_slowdown_pct=2)
    assert row.status == WORSE


def test_nothing_in_common_is_an_error_naming_both_sides() -> None:
    base = fixture("quick_vm.json")
    other = copy.deepcopy(base)
    for run in other["runs"]:
        run["run_id"] = run["run_id"].replace("tf-", "ov-")
    with pytest.raises(compare.CompareError, match="nothing in common"):
        compare.compare(base, other)


def test_holm_adjusts_in_rank_order_and_stays_monotone() -> None:
    assert significance.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert significance.holm([]) == []


# --- the command line -------------------------------------------------------------------------

def _write(tmp_path: Path, name: str, doc: dict[str, Any]) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return str(path)


def test_cli_exits_0_when_nothing_is_worse(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(11)
    base = fixture("default_vm.json")
    a, b = _write(tmp_path, "a.json", redraw(base, rng)), _write(tmp_path, "b.json",
                                                                 redraw(base, rng))
    assert cli.main(["compare", a, b]) == 0
    assert "same" in capsys.readouterr().out


def test_cli_exits_1_on_a_significant_slowdown_and_json_says_which(tmp_path: Path,
                                                                     capsys) -> None:
    rng = np.random.default_rng(12)
    base = fixture("default_vm.json")
    a = _write(tmp_path, "a.json", redraw(base, rng))
    b = _write(tmp_path, "b.json", redraw(base, rng, factor=1.10))
    assert cli.main(["compare", a, b, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["worse"] == 8 and report["max_slowdown_pct"] == 5.0
    assert {r["status"] for r in report["rows"]} == {WORSE}
    # the same slowdown under a threshold above it is not a regression
    assert cli.main(["compare", a, b, "--max-slowdown", "20"]) == 0


def test_cli_exits_2_on_unusable_input_and_says_which(tmp_path: Path, capsys) -> None:
    quick = str(FIXTURES / "quick_vm.json")
    assert cli.main(["compare", quick, str(tmp_path / "missing.json")]) == 2
    assert "missing.json: no such result file" in capsys.readouterr().err

    future = _write(tmp_path, "future.json", {**fixture("quick_vm.json"), "schema_version": 3})
    assert cli.main(["compare", quick, future]) == 2
    assert "schema_version 3 is not supported" in capsys.readouterr().err

    other = fixture("quick_vm.json")
    for run in other["runs"]:
        run["run_id"] = "inference/openvino"
    other["runs"] = other["runs"][:1]
    assert cli.main(["compare", quick, _write(tmp_path, "other.json", other)]) == 2
    assert "nothing in common" in capsys.readouterr().err

    assert cli.main(["compare", quick, str(FIXTURES / "default_vm.json")]) == 2
    assert "nothing comparable" in capsys.readouterr().err

    assert cli.main(["compare", quick, quick, "--max-slowdown", "-5"]) == 2
    assert "is not a percentage" in capsys.readouterr().err


def test_thousands_of_samples_a_side_are_estimated_quickly_and_close() -> None:
    rng = np.random.default_rng(5)
    base = list(np.exp(rng.normal(0, 0.2, 8000)))
    new = list(1.1 * np.exp(rng.normal(0, 0.2, 9000)))
    assert significance.hodges_lehmann_ratio(base, new) == pytest.approx(1.1, rel=0.01)


def test_ten_thousand_samples_a_side_are_judged_without_overflow() -> None:
    """2 / C(n1 + n2, n1) has thousands of digits here: the bound is taken in logarithms."""
    assert significance.min_p_value(10_000, 10_000) == 0.0
    assert significance.min_p_value(3, 3) == pytest.approx(0.1)
    rng = np.random.default_rng(8)
    base = copy.deepcopy(fixture("quick_vm.json"))  # plain runs, to change (record.Run)
    base["runs"] = [r for r in base["runs"] if r["run_id"] == "inference/tf-stock"]
    new = copy.deepcopy(base)
    for doc, factor in ((base, 1.0), (new, 1.2)):
        series = doc["runs"][0]["series"]["latency_bs1"]
        series["samples"] = list(factor * 0.01 * np.exp(rng.normal(0, 0.1, 10_000)))
    rows = compare.compare(base, new)
    latency = next(r for r in rows if r.metric == "latency bs1 p50 ms")
    assert latency.n_base == latency.n_new == 10_000 and latency.status == WORSE
    assert latency.time_change_pct == pytest.approx(20, abs=1)


def test_the_reference_machine_s_openvino_runs_compare_with_themselves(capsys) -> None:
    """The EPYC reference (schema 1): 1,493 latency samples a side, and an OpenVINO async run
    whose request latencies are shown but not judged."""
    ref = REPO.parent / "shared/reference-results/epyc-zen5-2vcpu_20261202T055054Z_quick.json"
    if not ref.is_file():
        pytest.skip(f"{ref} is not beside the repository")
    assert cli.main(["compare", str(ref), str(ref), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    bf16 = [r for r in rows if r["run_id"] == "inference/openvino-bf16"]
    assert [r["metric"] for r in bf16] == ["latency bs1 p50 ms"]
    assert bf16[0]["n_base"] == 1493 and bf16[0]["status"] == SAME


def test_results_of_different_hardware_are_refused_unless_asked(capsys) -> None:
    quick, spr = str(FIXTURES / "quick_vm.json"), str(FIXTURES / "contract_vm.json")
    assert cli.main(["compare", quick, spr]) == 2
    err = capsys.readouterr().err
    assert "different machines: intel-xeon-2.50ghz-1s2c-" in err and "--across-machines" in err
    assert "Intel(R) Xeon(R) Processor @ 2.50GHz" in err and "Intel(R) Xeon(R) Processor)" in err
    assert cli.main(["compare", quick, spr, "--across-machines"]) == 2  # judged: none in common
    assert "different machines" not in capsys.readouterr().err


# --- repeats: the verdict on the variation between processes ----------------------------------

BASE_DRIFT = [1.0, 1.08, 0.95, 1.03, 0.97]  # each process of one run a few % off the others
NEW_DRIFT = [1.06, 0.93, 1.0, 1.04, 0.98]


def with_processes(doc: dict[str, Any], drifts: list[float], factor: float = 1.0,
                   seed: int = 0) -> dict[str, Any]:
    """Each ok run as len(drifts) processes: the fixture's samples redrawn, every sample of
    process k slower by drifts[k] (the machine's drift between processes) x factor."""
    rng = np.random.default_rng(seed)
    doc = copy.deepcopy(doc)
    for run in doc["runs"]:
        if run.get("status") != "ok":
            continue
        copies = []
        for drift in drifts:
            one = redraw({"runs": [copy.deepcopy(run)]}, rng, drift * factor)["runs"][0]
            copies.append(one)
        run.clear()
        run.update({**copies[0], "repeats": copies[1:]})
    return doc


def test_a_process_that_drifted_is_a_regression_to_a_one_process_verdict_only() -> None:
    base = fixture("default_vm.json")
    one_base, one_drifted = with_processes(base, [1.0], seed=1), with_processes(base, [1.08],
                                                                                seed=2)
    rows = compare.compare(one_base, one_drifted)
    assert WORSE in statuses(rows)  # one process a side: the drift looks like a slowdown
    assert all(compare.ONE_PROCESS in r.note for r in rows)
    five = compare.compare(with_processes(base, BASE_DRIFT, seed=1),
                           with_processes(base, NEW_DRIFT, seed=2))
    assert statuses(five) == [SAME] * 8, [(r.run_id, r.metric, r.note) for r in five]
    assert all(r.judged_on == "processes" and (r.n_base, r.n_new) == (5, 5) for r in five)
    assert all("between 5/5 processes" in r.note for r in five)


def test_a_25_percent_slowdown_is_worse_through_the_drift_between_processes() -> None:
    base = fixture("default_vm.json")
    rows = compare.compare(with_processes(base, BASE_DRIFT, seed=3),
                           with_processes(base, NEW_DRIFT, factor=1.25, seed=4))
    assert statuses(rows) == [WORSE] * 8, [(r.run_id, r.metric, r.p_value) for r in rows]
    assert all(18 < r.time_change_pct < 32 for r in rows)


def test_a_run_s_figure_over_processes_is_their_median_with_its_spread() -> None:
    doc = with_processes(fixture("default_vm.json"), BASE_DRIFT, seed=5)
    run = doc["runs"][0]
    per = [f["train img/s"].value for f in record.process_figures(run)]
    figure = record.figures(run)["train img/s"]
    assert len(per) == 5 and figure.processes == 5
    assert figure.value == pytest.approx(float(np.median(per)))
    assert figure.spread == (min(per), max(per))


def test_the_reports_show_the_spread_between_processes_beside_each_figure() -> None:
    from rich.console import Console

    from bench.report import html
    from bench.report.console import scenario_tables

    doc = with_processes(fixture("default_vm.json"), BASE_DRIFT, seed=6)
    console = Console(width=250, record=True)
    for table in scenario_tables(doc):
        console.print(table)
    text = console.export_text()
    train = record.figures(doc["runs"][0])["train img/s"]
    low, high = train.spread
    assert f"{train.value:.2f} (5 processes: {low:.2f}–{high:.2f})" in text
    assert "(5 processes:" in html.render(doc, "x.json")


# --- bench.rates: compare's false-alarm and detection rates from one interleaved A/B job ------

DRIFT_8 = [1.0, 1.04, 0.97, 1.02, 0.99, 1.05, 0.96, 1.01]
QUIET_10 = [1.0, 1.01, 0.99, 1.005, 0.995, 1.012, 0.99, 1.0, 1.008, 0.996]  # a quiet machine


def _slowed_side(base: dict[str, Any], factor: float, seed: int,
                 drift: list[float] = DRIFT_8) -> dict[str, Any]:
    """Side B of a rates job: full training `factor` slower (and recording it), the rest not;
    round k at the machine's drift[k] (by default A's: a pair of one round shares it)."""
    slowed = with_processes(base, drift, factor=factor, seed=seed)
    plain = with_processes(base, drift, seed=seed + 1)
    runs = []
    for s, p in zip(slowed["runs"], plain["runs"], strict=True):
        if s["scenario"] == "full_training" and s["status"] == "ok":
            for process in (s, *s["repeats"]):
                process["injected_slowdown"] = factor - 1
            runs.append(s)
        else:
            runs.append(p)
    return {**slowed, "runs": runs}


def test_rates_judge_a_a_pairs_a_round_apart_and_catch_the_slowed_training() -> None:
    from bench import rates

    base = fixture("default_vm.json")
    a = with_processes(base, QUIET_10, seed=11)
    view = rates.measure(a, _slowed_side(base, 1.25, seed=12, drift=QUIET_10), half=4,
                         trials=10)
    assert view["processes"] == {"A": 10, "B": 10} and len(view["aa"]["trials"]) == 10
    assert view["aa"]["false_alarms"] == 0
    assert set(view["detection"]["caught"]) == {"full_training/tf-stock",
                                                "full_training/tf-onednn"}
    assert view["detection"]["all_caught"] == 10
    assert view["detection"]["false_alarms_elsewhere"] == 0
    for trial in view["aa"]["trials"]:  # round k of A against round k + 1, no round twice
        assert trial["new_rounds"] == [k + 1 for k in trial["base_rounds"]]
        assert len(set(trial["base_rounds"] + trial["new_rounds"])) == 8
    for trial in view["detection"]["trials"]:  # A and B of the same rounds
        assert trial["base_rounds"] == trial["new_rounds"] and len(trial["base_rounds"]) == 4
    assert view["alpha"] == compare.ALPHA
    assert len({tuple(t["base_rounds"]) for t in view["aa"]["trials"]}) == 10
    # A trial's rows are compare's paired verdict on exactly its rounds
    first = view["aa"]["trials"][0]
    rows = compare.compare(*(rates.keep_rounds(a, tuple(i - 1 for i in first[side]))
                             for side in ("base_rounds", "new_rounds")), pairs=True)
    assert first["rows"] == [{"run_id": r.run_id, "metric": r.metric, "status": r.status,
                              "time_change_pct": r.time_change_pct, "p_value": r.p_value}
                             for r in rows]
    # ... and its first row's p-value is the one-sample t on the logs of those rounds' training
    # figures' ratios, Holm-adjusted among the primary rows (the two training rows)
    row = first["rows"][0]
    assert (row["run_id"], row["metric"]) == ("full_training/tf-stock", rates.TRAINING)
    own = record.process_figures(next(r for r in a["runs"] if r["run_id"] == row["run_id"]))
    logs = np.log([own[n - 1][row["metric"]].value / own[b - 1][row["metric"]].value
                   for b, n in zip(first["base_rounds"], first["new_rounds"], strict=True)])
    raw = float(ttest_1samp(logs, 0.0).pvalue)
    assert 0 < raw <= row["p_value"] <= min(1.0, 2 * raw), (raw, row["p_value"])
    # a verdict other than `same` only where the adjusted p-value is significant
    for trial in view["aa"]["trials"] + view["detection"]["trials"]:
        for r in trial["rows"]:
            if r["status"] != NOT_COMPARABLE:
                assert 0 < r["p_value"] <= 1
                assert r["status"] == SAME or r["p_value"] < view["alpha"], r


def test_a_trend_through_the_job_weighs_on_a_a_pairs_a_round_apart_not_on_pairs_of_a_round(
        ) -> None:
    from bench import rates

    base = fixture("default_vm.json")
    trend = [1.08 ** k for k in range(10)]  # the machine 8% slower every round
    a = with_processes(base, trend, seed=21)
    view = rates.measure(a, _slowed_side(base, 1.25, seed=22, drift=trend), half=4, trials=10)

    def training(trial: dict[str, Any]) -> list[dict[str, Any]]:
        return [r for r in trial["rows"] if r["metric"] == rates.TRAINING]

    # a round apart, A/A pairs see the trend (the A/A rate errs high, as documented) ...
    aa = [r for t in view["aa"]["trials"] for r in training(t)]
    assert all(r["status"] == WORSE and 6 < r["time_change_pct"] < 10 for r in aa), aa
    # ... pairs of one round cancel it: the 25% slowdown is measured as 25%
    ab = [r for t in view["detection"]["trials"] for r in training(t)]
    assert all(r["status"] == WORSE and 22 < r["time_change_pct"] < 28 for r in ab), ab


def test_a_drift_as_large_as_the_slowdown_is_reported_as_missed_not_hidden() -> None:
    from bench import rates

    base = fixture("default_vm.json")
    a = with_processes(base, [1.0, 1.3, 0.8, 1.2, 0.85, 1.25, 0.9, 1.15], seed=13)
    b = _slowed_side(base, 1.06, seed=14, drift=[0.85, 1.2, 1.0, 0.8, 1.3, 0.9, 1.15, 1.0])
    view = rates.measure(a, b, half=4, trials=10)  # pairs that do not share the drift
    assert view["detection"]["all_caught"] < 10  # 6% inside 30% of noise: not always caught


def test_rates_refuse_too_few_processes_and_an_unslowed_b(tmp_path: Path, capsys) -> None:
    from bench import rates

    base = fixture("default_vm.json")
    a = with_processes(base, DRIFT_8[:5], seed=15)
    with pytest.raises(rates.RatesError, match="--repeats 8"):
        rates.measure(a, _slowed_side(base, 1.1, seed=16, drift=DRIFT_8[:5]), half=4)
    with pytest.raises(rates.RatesError, match="TLBENCH_INJECT_SLOWDOWN"):
        rates.measure(a, a, half=2)
    paths = []
    for name, doc in (("a", with_processes(base, QUIET_10, seed=17)),
                      ("b", _slowed_side(base, 1.25, seed=18, drift=QUIET_10))):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(doc))
    assert cli.main(["rates", str(paths[1]), str(paths[0])]) == 2
    assert "side A was slowed" in capsys.readouterr().err
    assert cli.main(["rates", *map(str, paths), "--half", "4"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "A/A: 0 of 10 trials raised a false alarm" in out
    assert "full_training/tf-onednn slowed 25%: caught in 10 of 10" in out
    assert "compare on 4 pairs of processes" in out


# --- the machine's own speed: a reference kernel beside every process ------------------------

KERNEL = "numpy 2.4.6 float32 multiply+add of 32768 elements, one thread per CPU, median of 7"


def with_reference(doc: dict[str, Any], speeds: list[float],
                   kernel: str = KERNEL) -> dict[str, Any]:
    """Every ok run's processes (round by round) given reference readings of 10 x speeds[k]
    on two CPUs, before and after."""
    doc = copy.deepcopy(doc)
    for run in doc["runs"]:
        if run.get("status") != "ok":
            continue
        for proc, speed in zip([run, *run.get("repeats", [])], speeds, strict=True):
            reading = {"rate": 10.0 * speed, "per_cpu": {"0": 10.0 * speed, "1": 10.0 * speed}}
            proc["reference"] = {"rate": 10.0 * speed, "unit": "Gelem/s", "kernel": kernel,
                                 "before": reading, "after": reading}
    return doc


def _machine_docs(machine_slower: float, stack_slower: float, seeds: tuple[int, int],
                  kernels: tuple[str, str] = (KERNEL, KERNEL)) -> tuple[dict, dict]:
    """Five processes a side; the new side's machine `machine_slower` times slower (its every
    figure too, and its reference kernel), its stack `stack_slower` times slower."""
    base = fixture("default_vm.json")
    old = with_reference(with_processes(base, BASE_DRIFT, seed=seeds[0]),
                         [1 / d for d in BASE_DRIFT], kernels[0])
    new = with_reference(with_processes(base, NEW_DRIFT, machine_slower * stack_slower,
                                        seed=seeds[1]),
                         [1 / (d * machine_slower) for d in NEW_DRIFT], kernels[1])
    return old, new


def _machine_pair(machine_slower: float, stack_slower: float, seeds: tuple[int, int],
                  kernels: tuple[str, str] = (KERNEL, KERNEL)) -> list[compare.Row]:
    return compare.compare(*_machine_docs(machine_slower, stack_slower, seeds, kernels))


def test_the_machine_s_drift_is_shown_beside_the_verdict_not_judged_on() -> None:
    """The reference kernel did not track training on the dev VM (compare.RELATIVE_CONTEXT):
    a row's status is as measured, its change relative to the machine is context."""
    rows = _machine_pair(1.4, 1.0, (11, 12))
    assert statuses(rows) == [WORSE] * 8, [(r.run_id, r.metric, r.note) for r in rows]
    assert all(r.time_change_pct > 30 for r in rows)  # as measured, clearly slower
    assert all(r.machine_ratio == pytest.approx(1 / 1.4, rel=0.05) for r in rows)
    assert all(abs(r.relative_change_pct) < 12 for r in rows)
    assert all("slower by" in r.note and "(same; context, not judged)" in r.note
               for r in rows)


def test_a_slower_stack_on_a_steady_machine_is_worse_both_ways() -> None:
    rows = _machine_pair(1.0, 1.25, (3, 4))
    assert statuses(rows) == [WORSE] * 8, [(r.run_id, r.metric, r.note) for r in rows]
    assert all(r.machine_ratio == pytest.approx(1.0, rel=0.05) for r in rows)
    assert all(18 < r.relative_change_pct < 32 for r in rows)


def test_a_slower_stack_on_a_slower_machine_is_still_worse() -> None:
    rows = _machine_pair(1.3, 1.25, (15, 16))
    assert statuses(rows) == [WORSE] * 8, [(r.run_id, r.metric, r.note) for r in rows]
    assert all(r.time_change_pct > 50 and 18 < r.relative_change_pct < 32 for r in rows)


def test_a_slowdown_a_faster_machine_hides_is_said_not_judged() -> None:
    rows = _machine_pair(1 / 1.3, 1.25, (17, 18))
    assert WORSE not in statuses(rows)
    assert all(r.relative_change_pct > 18 for r in rows)
    assert all("(worse; context, not judged)" in r.note for r in rows
               if r.relative_p < compare.ALPHA)


def test_the_significance_level_is_the_user_s_to_set(tmp_path: Path) -> None:
    rows = _machine_pair(1.0, 1.25, (3, 4))
    assert statuses(rows) == [WORSE] * 8
    strict = compare.compare(*_machine_docs(1.0, 1.25, (3, 4)), alpha=1e-300)
    assert statuses(strict) == [SAME] * 8
    assert all(r.p_value == p.p_value for r, p in zip(strict, rows, strict=True))
    paths = [tmp_path / "base.json", tmp_path / "new.json"]
    for path, doc in zip(paths, _machine_docs(1.0, 1.25, (3, 4)), strict=True):
        path.write_text(json.dumps(doc))
    assert cli.main(["compare", *map(str, paths)]) == 1
    assert cli.main(["compare", *map(str, paths), "--alpha", "1e-300"]) == 0
    with pytest.raises(SystemExit):
        cli.main(["compare", *map(str, paths), "--alpha", "5"])


def test_reference_kernels_of_two_numpys_are_not_compared() -> None:
    rows = _machine_pair(1.4, 1.0, (11, 12), (KERNEL, KERNEL.replace("2.4.6", "1.26.4")))
    assert all(r.machine_ratio is None and r.relative_p is None for r in rows)
    assert WORSE in statuses(rows)  # judged as measured only, as before the reference
    base = fixture("default_vm.json")
    notes = compare.context_notes(with_reference(base, [1.0]),
                                  with_reference(base, [1.0], KERNEL.replace("2.4.6", "1.26")))
    assert any("reference kernels differ" in n for n in notes)


def test_the_machine_s_speed_is_the_median_of_every_reading_of_a_result() -> None:
    doc = with_reference(with_processes(fixture("default_vm.json"), BASE_DRIFT, seed=3),
                         [1.0, 0.2, 1.1, 0.9, 3.0])  # two processes' readings far off
    assert compare.machine_speed(doc) == pytest.approx(10.0)
    assert compare.machine_speed(fixture("default_vm.json")) is None


def test_results_without_a_reference_are_judged_as_measured() -> None:
    base = fixture("default_vm.json")
    rows = compare.compare(with_processes(base, BASE_DRIFT, seed=3),
                           with_reference(with_processes(base, NEW_DRIFT, seed=4),
                                          [1.0] * 5))
    assert all(r.machine_ratio is None and "reference kernel" not in r.note for r in rows)


def test_the_machine_s_speed_is_a_context_note_and_a_column() -> None:
    from rich.console import Console

    from bench.report.across import compare_table

    base = fixture("default_vm.json")
    old = with_reference(base, [1.0])
    new = with_reference(redraw(base, np.random.default_rng(19), 2.0), [0.5])
    notes = compare.context_notes(old, new)
    assert any("median of every reading): base 10.00, new 5.00 Gelem/s, new/base 0.500x" in n
               for n in notes), notes
    console = Console(record=True, width=250)
    console.print(compare_table(compare.compare(old, new), 5.0, compare.ALPHA))
    assert "0.500x" in console.export_text()


def _disturbed(doc: dict[str, Any], kind: str, share: float) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    for run in doc["runs"]:
        for proc in [run, *run.get("repeats", [])] if run.get("status") == "ok" else []:
            proc[kind] = {"share": share, "source": "/proc/stat"}
    return doc


@pytest.mark.parametrize("kind, what, column", [("steal", "steal", "steal_new"),
                                                ("foreign_load", "other processes",
                                                 "foreign_new")])
def test_a_side_measured_on_a_disturbed_machine_is_not_judged_worse(kind: str, what: str,
                                                                    column: str) -> None:
    base = fixture("default_vm.json")
    old = _disturbed(with_processes(base, BASE_DRIFT, seed=3), kind, 0.0)
    slowed = with_processes(base, NEW_DRIFT, factor=1.4, seed=4)
    stolen = compare.compare(old, _disturbed(slowed, kind, 0.18))
    assert statuses(stolen) == [SAME] * 8
    assert all(getattr(r, column) == pytest.approx(0.18)
               and f"lost a median 18% of their CPUs' time to {what}, a disturbed machine"
               in r.note for r in stolen)
    quiet = compare.compare(old, _disturbed(slowed, kind, 0.01))  # below 5%: judged
    assert statuses(quiet) == [WORSE] * 8
