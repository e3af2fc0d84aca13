"""`tlbench tune`: the search loop on a fake objective, a configuration applied to a suite and
read back from a real worker of the small model, the proof's verdict on fixture records, and
the tuned suite file through the strict parser."""

from __future__ import annotations

import copy
import dataclasses
import itertools
from pathlib import Path

import pytest

from bench import compare, knobs, results, runner, tune
from bench import suite as suite_mod
from bench.pinning import read_topology

from .conftest import write_suite

FIXTURES = Path(__file__).parent / "fixtures"


def test_budgets_are_written_as_durations() -> None:
    assert tune.parse_duration("45m") == 2700 and tune.parse_duration("1h30m") == 5400
    assert tune.parse_duration("90s") == 90 and tune.parse_duration("600") == 600
    with pytest.raises(ValueError, match="45m, 1h"):
        tune.parse_duration("soon")


def test_the_grid_yields_the_default_first_then_each_configuration_once() -> None:
    two = (knobs.Knob("a", (1, 2, 3), knobs.SECTION, "x.a", "params.a"),
           knobs.Knob("b", ("u", "v"), knobs.ENV, "B", "env.B", env=lambda v: {"B": v}))
    drawn = list(tune.grid(two, seed=0))
    assert drawn[0] == tune.default(two) == {"a": 1, "b": "u"} and tune.size(two) == 6
    assert sorted((c["a"], c["b"]) for c in drawn) == [(a, b) for a in (1, 2, 3) for b in "uv"]
    # a many-core box's grid is drawn from as the search asks, never built whole
    wide = tuple(knobs.Knob(f"k{i}", tuple(range(100)), knobs.SECTION, f"x.k{i}", "p")
                 for i in range(4))
    first = list(itertools.islice(tune.grid(wide, seed=0), 3))
    assert tune.size(wide) == 10**8 and first[0] == tune.default(wide) and len(first) == 3


def _fake(values: dict[int, float], cost: float, clock: list[float]):
    """A fake objective: configuration {"x": k} is worth values[k]; each trial costs `cost`
    seconds of a fake clock, a rung-0 window a third of that."""

    def measure(config, rung, window):
        clock[0] += cost * window
        return tune.Trial(config, rung, values[config["x"]], cost * window)

    return measure


def test_successive_halving_promotes_the_best_third_to_the_full_window() -> None:
    values = {k: float(k % 7) for k in range(12)}  # best: 6; the default (k = 0) is worth 0
    clock = [0.0]
    search = tune.halving([{"x": k} for k in range(12)], _fake(values, 9.0, clock),
                          lambda: 1e9 - clock[0])
    rung0 = [t for t in search.trials if t.rung == 0]
    rung1 = [t for t in search.trials if t.rung == 1]
    assert [t.config["x"] for t in rung0] == list(range(12)) and rung0[0].config == {"x": 0}
    assert all(t.wall_s == 3.0 for t in rung0) and all(t.wall_s == 9.0 for t in rung1)
    assert sorted(t.value for t in rung1) == [4.0, 4.0, 5.0, 6.0]  # the best 12 // 3
    assert search.best().value == 6.0 and search.best().rung == 1


def test_the_search_stops_drawing_when_the_budget_would_not_hold_the_next_rung() -> None:
    clock = [0.0]
    search = tune.halving([{"x": k} for k in range(100)], _fake({k: k for k in range(100)},
                                                                 9.0, clock),
                          lambda: 60.0 - clock[0])
    rung0 = [t for t in search.trials if t.rung == 0]
    assert 1 < len(rung0) < 100 and clock[0] <= 60.0 + 9.0
    assert search.best().rung == 1  # the time kept for the full window was used
    failed = tune.halving([{"x": 0}], lambda c, r, w: tune.Trial(c, r, None, 1.0, error="boom"),
                          lambda: 100.0)
    assert failed.best() is None and failed.trials[0].error == "boom"


def _knobs(suite: suite_mod.Suite, backend: str, scenario: str) -> tuple[knobs.Knob, ...]:
    return tune.knobs_for(suite, backend, scenario, read_topology())


def test_a_configuration_is_a_suite_with_the_knobs_applied_and_its_window_scaled(
        tmp_path) -> None:
    suite = suite_mod.load(write_suite(tmp_path, backends=("torch",), scenarios=("inference",)))
    found = _knobs(suite, "torch", "inference")
    config = {**tune.default(found), "inference.batch_size": 2,
              "omp_wait_policy": "passive"}
    trial = tune.configure(suite, "torch", "inference", found, config, window=1 / 3)
    assert trial.backends == ("torch",) and trial.scenarios == ("inference",)
    assert trial.section("inference").batch_size == 2
    assert trial.section("inference").duration_s == pytest.approx(0.5 / 3)
    assert trial.env["OMP_WAIT_POLICY"] == "PASSIVE" and trial.repeats == 1
    with pytest.raises(ValueError, match=r"inference\.batch_size = 3 is not offered"):
        tune.configure(suite, "torch", "inference", found, {**config, "inference.batch_size": 3})


def test_the_tuned_suite_file_loads_back_through_the_strict_parser(tmp_path) -> None:
    suite = suite_mod.load(write_suite(tmp_path, backends=("openvino",),
                                       scenarios=("inference",)))
    found = _knobs(suite, "openvino", "inference")
    config = {**tune.default(found), "openvino.streams": 1, "inference.batch_size": 8}
    tuned = tune.configure(suite, "openvino", "inference", found, config)
    text = suite_mod.to_toml(tuned, {"openvino.streams": "tuned: 1.2x"}, header="a tune")
    assert text.startswith("# a tune\n") and "streams = 1  # tuned: 1.2x" in text
    (tmp_path / "tuned.toml").write_text(text)
    back = suite_mod.load(tmp_path / "tuned.toml")
    assert dataclasses.replace(back, path=tuned.path) == tuned


def _tuned_pair() -> tuple[dict, dict]:
    """The fixture's tf-onednn inference (A) and a copy at another batch size, 1.3x faster (B)."""
    base = results.load(FIXTURES / "quick_vm.json")
    a = {**base, "runs": [copy.deepcopy(r) for r in base["runs"]
                          if r["run_id"] == "inference/tf-onednn"]}
    b = copy.deepcopy(a)
    run = b["runs"][0]
    run["params"]["batch_size"] = 8
    old = next(k for k in run["series"] if k.startswith("throughput_bs"))
    series = run["series"].pop(old)
    run["series"]["throughput_bs8"] = {**series, "work": 8,
                                       "samples": [s * 8 / series["work"] / 1.3
                                                   for s in series["samples"]]}
    return a, b


def test_the_proof_compares_the_tuned_batch_as_the_same_figure() -> None:
    a, b = _tuned_pair()
    untuned = compare.compare(a, b)
    assert untuned[0].status == compare.NOT_COMPARABLE and "batch_size" in untuned[0].note
    row = tune.verdict(a, b, "throughput", "inference", frozenset({"inference.batch_size"}))
    assert row.metric == "throughput img/s" and row.status == compare.IMPROVED
    assert row.ratio == pytest.approx(1.3, rel=0.01)
    assert tune.conclusion(row).startswith("tuned: 1.30")
    same = tune.verdict(a, a, "throughput", "inference", frozenset({"inference.batch_size"}))
    assert tune.conclusion(same).startswith(tune.NO_GAIN)


def test_knobs_are_applied_and_read_back_in_a_real_worker(tmp_path) -> None:
    suite = suite_mod.load(write_suite(tmp_path, backends=("torch",), scenarios=("inference",)))
    found = _knobs(suite, "torch", "inference")
    config = {**tune.default(found), "inference.batch_size": 2,
              "omp_wait_policy": "active", "placement": "cores:0"}
    trial = tune.configure(suite, "torch", "inference", found, config)
    outcome = runner.measure(trial, [runner.Side("", None)], tmp_path / "out", lambda e: None)
    run = outcome.docs[0][0]["runs"][0]
    assert run["status"] == "ok", run.get("error")
    assert run["params"]["batch_size"] == 2 and "throughput_bs2" in run["series"]
    assert run["placement_obtained"]["env"]["OMP_WAIT_POLICY"] == "ACTIVE"
    assert run["placement_obtained"]["cpus"] == [0]
    assert run["runtime"]["intra_op_threads"] == 1  # one core: one thread


def test_a_budget_too_short_or_nothing_to_tune_is_refused_before_any_trial(tmp_path,
                                                                            capsys) -> None:
    from bench import cli

    suite = write_suite(tmp_path, backends=("tf-onednn",), scenarios=("inference",))
    out = tmp_path / "out"
    assert cli.main(["tune", str(suite), "--budget", "30s", "--out", str(out)]) == 2
    assert "shorter than a single trial" in capsys.readouterr().out
    assert cli.main(["tune", str(suite), "--budget", "10m", "--objective", "training",
                     "--out", str(out)]) == 2
    assert "no scenario the training objective tunes (full_training)" in " ".join(
        capsys.readouterr().out.split())
    assert cli.main(["tune", str(suite), "--budget", "soon", "--out", str(out)]) == 2
    assert not out.exists()  # nothing measured, nothing written
