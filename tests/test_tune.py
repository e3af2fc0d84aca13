"""`tlbench tune`: the search loop on a fake objective, a configuration applied to a suite and
read back from a real worker of the small model, the proof's verdict on fixture records, and
the tuned suite file through the strict parser."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
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
    # a projected training window: a third of it, never below the 3 micro-steps it needs
    projected = suite_mod.load(write_suite(tmp_path, name="projected", backends=("torch",),
                                           scenarios=("full_training",)))
    projected = dataclasses.replace(projected, sections={
        **projected.sections, "full_training": dataclasses.replace(
            projected.section("full_training"), measure="projected", window_steps=12,
            max_window_steps=48, interval=0.1)})
    knobs_t = _knobs(projected, "torch", "full_training")
    short = tune.configure(projected, "torch", "full_training", knobs_t, tune.default(knobs_t),
                           window=1 / 3).section("full_training")
    assert (short.window_steps, short.max_window_steps) == (4, 16)
    tiny = tune.configure(suite, "torch", "inference", found, tune.default(found), window=0.1)
    assert tiny.section("inference").duration_s == pytest.approx(0.05)
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
    # the objective judged alone: no other figure of the run in its Holm family
    every = compare.compare(a, b, tuned=frozenset({"inference.batch_size"}))
    alone = compare.compare(a, b, tuned=frozenset({"inference.batch_size"}),
                            only="throughput img/s")
    assert len(every) > 1 and [r.metric for r in alone] == ["throughput img/s"]
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


def test_tensorflow_s_inter_op_pool_is_applied_and_read_back_in_a_real_worker(tmp_path) -> None:
    suite = suite_mod.load(write_suite(tmp_path, backends=("tf-onednn",),
                                       scenarios=("inference",)))
    found = _knobs(suite, "tf-onednn", "inference")
    trial = tune.configure(suite, "tf-onednn", "inference", found,
                           {**tune.default(found), "inter_op_threads": 2})
    outcome = runner.measure(trial, [runner.Side("", None)], tmp_path / "out", lambda e: None)
    run = outcome.docs[0][0]["runs"][0]
    assert run["status"] == "ok", run.get("error")
    assert run["placement_obtained"]["env"]["TF_NUM_INTEROP_THREADS"] == "2"
    assert run["runtime"]["inter_op_threads"] == 2


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


def test_knob_choices_are_parsed_and_checked_against_the_domain_the_suite_s_value_first(
        tmp_path) -> None:
    choices = tune.parse_choices(["openvino.streams=2,1", "openvino.hint=none",
                                  "inference.batch_size=1,32"])
    assert choices == {"openvino.streams": (2, 1), "openvino.hint": ("none",),
                       "inference.batch_size": (1, 32)}
    with pytest.raises(ValueError, match="NAME=VALUE"):
        tune.parse_choices(["openvino.streams"])
    suite = suite_mod.load(write_suite(tmp_path, backends=("openvino",),
                                       scenarios=("inference",)))
    found = _knobs(suite, "openvino", "inference")
    suite_batch = tune.default(found)["inference.batch_size"]
    kept = {k.name: k.values for k in tune.restrict(
        found, {**choices, "inference.batch_size": (1, suite_batch)})}
    assert kept["openvino.streams"] == (2, 1) and kept["openvino.hint"] == ("none",)
    assert kept["inference.batch_size"] == (suite_batch, 1)  # the suite's value stays first
    assert kept["allocator"] == next(k.values for k in found if k.name == "allocator")
    with pytest.raises(ValueError, match=r"openvino\.streams = 99 is not offered"):
        tune.restrict(found, {"openvino.streams": (1, 99)})


def test_only_a_scenario_with_a_window_is_searched_on_short_windows(tmp_path) -> None:
    suite = suite_mod.load(write_suite(tmp_path))
    assert tune.scalable(suite, "inference") and tune.scalable(suite, "full_training")
    assert not tune.scalable(suite, "transfer")


def test_the_exhaustive_check_measures_every_configuration_on_the_full_window() -> None:
    clock = [0.0]
    configs = [{"x": k} for k in range(6)]
    every = tune.exhaustive(configs, _fake({k: k for k in range(6)}, 9.0, clock),
                            lambda: 1e9 - clock[0])
    assert [t.config["x"] for t in every.trials] == list(range(6))
    assert all(t.rung == tune.FULL and t.wall_s == 9.0 for t in every.trials)
    assert every.best().config == {"x": 5}
    clock = [0.0]
    cut = tune.exhaustive(configs, _fake({k: k for k in range(6)}, 9.0, clock),
                          lambda: 20.0 - clock[0])
    assert len(cut.trials) == 2  # a third would not have fit the time left


def _said(capsys) -> str:
    """What the command printed, on either stream, as one line."""
    captured = capsys.readouterr()
    return " ".join((captured.out + captured.err).split())


def test_bad_knobs_and_resume_files_are_refused_before_any_trial(tmp_path, capsys) -> None:
    from bench import cli

    suite = write_suite(tmp_path, backends=("openvino",), scenarios=("inference",))
    out = tmp_path / "out"
    common = ["tune", str(suite), "--budget", "10m", "--out", str(out)]
    assert cli.main([*common, "--knob", "openvino.nstreams=1"]) == 2
    said = _said(capsys)
    assert "--knob openvino.nstreams: no such knob" in said and "openvino.streams" in said
    assert cli.main([*common, "--knob", "openvino.hint=fastest"]) == 2
    said = _said(capsys)
    assert "openvino.hint = 'fastest' is not offered" in said and "'latency'" in said
    broken = tmp_path / "broken_tune.json"
    broken.write_text("{not json")
    assert cli.main([*common, "--resume", str(broken)]) == 2
    assert "cannot read it as a tune document" in _said(capsys)
    other = tmp_path / "other_tune.json"
    other.write_text('{"targets": [], "objective": "training", "suite": {}, "choices": {}, '
                     '"check": false}')
    assert cli.main([*common, "--resume", str(other)]) == 2
    assert "its suite, objective differ" in _said(capsys)
    assert not out.exists()


def test_an_interrupted_tune_keeps_its_trials_and_resume_measures_only_the_rest(
        tmp_path, monkeypatch, capsys) -> None:
    """The search loop of `tlbench tune` on a fake objective (a trial's figure is its batch
    size; the runner is not started): Ctrl-C on the third trial leaves a tune document with the
    two finished ones, and --resume measures only what they do not cover."""
    from bench import cli
    from bench.commands import tune as tune_cmd

    measured: list[int] = []
    stop_at = [3]

    def fake_measure(self, label, trial_suite, sides):
        if len(measured) + 1 == stop_at[0]:
            raise KeyboardInterrupt("SIGINT")
        measured.append(trial_suite.section("inference").batch_size)
        doc = {"runs": [{"status": "ok", "value": float(measured[-1])}]}
        return runner.Outcome([(doc, tmp_path / label)], [])

    monkeypatch.setattr(tune_cmd.Tuner, "measure", fake_measure)
    monkeypatch.setattr(tune, "objective_value", lambda doc, o, s: doc["runs"][0]["value"])
    suite = write_suite(tmp_path, backends=("openvino",), scenarios=("inference",))
    out = tmp_path / "out"
    command = ["tune", str(suite), "--budget", "10m", "--out", str(out),
               "--knob", "inference.batch_size=4,1,2", "--knob", "allocator=glibc",
               "--knob", "placement=all", "--knob", "openvino.hint=throughput",
               "--knob", "openvino.streams=0", "--knob", "openvino.requests=0"]
    assert cli.main(command) == 130
    (path,) = out.glob("*/*_tune.json")
    doc = json.loads(path.read_text())
    first = measured[1]
    assert doc["interrupted"] and measured[0] == 4 and first in (1, 2)
    assert [(t["config"]["inference.batch_size"], t["rung"]) for t in doc["targets"][0]["trials"]
            ] == [(4, tune.FULL), (first, 0)]
    assert f"--resume {path}" in " ".join(capsys.readouterr().out.split())
    measured.clear()
    stop_at[0] = 0
    assert cli.main([*command, "--resume", str(path)]) == 0
    # the default's trial and the first of rung 0 carried over: the other batch of rung 0,
    # then rung 0's best (batch 2) on the full window; the default (batch 4) stays best
    assert measured == [3 - first, 2]
    resumed = max(out.glob("*/*_tune.json"), key=lambda p: p.stat().st_mtime)
    target = json.loads(resumed.read_text())["targets"][0]
    assert len(target["trials"]) == 4 and target["default_value"] == 4.0
    assert target["conclusion"] == "the default measured best of 4 trials"


def test_the_tune_page_draws_the_trials_trade_off_and_marks_the_pareto_front(tmp_path) -> None:
    """Three inference trials from fixture records: A (the default), B faster and slower to
    answer one image, C slower and higher in latency than A — the front is A and B."""
    from bench.report import html

    base, _ = _tuned_pair()
    run = base["runs"][0]
    series = next(k for k in run["series"] if k.startswith("throughput_bs"))
    trials = []
    for name, speed, delay in (("a", 1.0, 1.0), ("b", 1.5, 2.0), ("c", 0.8, 1.2)):
        doc = copy.deepcopy(base)
        r = doc["runs"][0]
        r["series"][series]["samples"] = [s / speed for s in r["series"][series]["samples"]]
        r["series"]["latency_bs1"]["samples"] = [s * delay for s in
                                                 r["series"]["latency_bs1"]["samples"]]
        path = tmp_path / f"{name}.json"
        results.write_atomic(path, doc)
        value = tune.objective_value(results.load(path), "throughput", "inference")
        trials.append({"config": {"inference.batch_size": {"a": 32, "b": 64, "c": 8}[name]},
                       "rung": tune.FULL, "value": value, "wall_s": 30.0, "result": str(path),
                       "error": "", "phase": "search"})
    trials.append({**trials[0], "value": None, "result": "", "error": "<b>crashed</b>"})
    entry = {"backend": "tf-onednn", "scenario": "inference", "figure": tune.OBJECTIVES[
        "throughput"]["inference"], "grid": 7, "trials": trials,
        "default": {"inference.batch_size": 32}, "default_value": trials[0]["value"],
        "best": trials[1], "conclusion": "tuned: 1.500x the default"}
    points = tune.trade_off(entry)
    assert [p["config"]["inference.batch_size"] for p in points] == [32, 64, 8]
    assert [p["front"] for p in points] == [True, True, False]
    assert points[1]["value"] == pytest.approx(1.5 * points[0]["value"], rel=1e-6)
    page = html.render_tune({"objective": "throughput", "machine": {"id": "m-1"},
                             "suite": {"name": "e2e"}, "created": "2026-12-07T11:00:00+00:00",
                             "budget_s": 600.0, "check": False, "targets": [entry]})
    assert "<svg" in page and "Pareto front" in page and "inference.batch_size=64" in page
    assert "&lt;b&gt;crashed&lt;/b&gt;" in page and "<b>crashed</b>" not in page
    assert "4 / 7" in page  # the search's trials of the grid's 7 configurations


def test_a_tune_never_pretrains_inside_a_trial(tmp_path, monkeypatch) -> None:
    """A suite that pretrains on its first run (the default suite) is tuned without it: the
    minutes of pretraining would count as the first trial's cost, the default's, from which the
    proof's reserve is sized."""
    from types import SimpleNamespace

    from bench.commands import tune as tune_cmd

    suite = suite_mod.load(write_suite(tmp_path, backends=("openvino",),
                                       scenarios=("inference",)))
    pretraining = dataclasses.replace(suite, pretrain=dataclasses.replace(suite.pretrain,
                                                                          enabled=True))
    seen = []
    monkeypatch.setattr(runner, "measure", lambda s, sides, out, draw: seen.append(s) or
                        runner.Outcome([], []))
    tune_cmd.Tuner.measure(SimpleNamespace(folder=tmp_path), "trial", pretraining,
                           [runner.Side("", None)])
    assert [s.pretrain.enabled for s in seen] == [False]
    assert seen[0].section("inference") == suite.section("inference")
