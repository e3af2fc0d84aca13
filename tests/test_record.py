"""The result contract (bench.record): the series rule, the strict validator, each scenario's
figures computed by hand, and the pure combining of side-by-side processes."""

from __future__ import annotations

import json

import pytest

from bench import record
from bench.record import RecordError, Series, figures, parse_run, to_dict

TRAIN = {"epochs": 2, "steps_per_epoch": 5, "batch_size": 32, "micro_batch": 8,
         "warmup_steps": 1, "window_steps": 4, "measure": "projected"}


def _run(scenario: str, params: dict, **fields) -> dict:
    return {"run_id": f"{scenario}/x", "backend": "x", "scenario": scenario, "status": "ok",
            "params": params, **fields}


def test_a_series_keeps_first_call_warm_up_and_steady_samples_apart() -> None:
    s = Series.of(8, 30.0, [2.0], [1.0, 2.0, 4.0])
    assert (s.first, s.warmup, s.samples) == (30.0, (2.0,), (1.0, 2.0, 4.0))
    assert list(s.rates()) == [8.0, 4.0, 2.0]
    assert to_dict(s) == {"work": 8.0, "samples": [1.0, 2.0, 4.0], "first": 30.0,
                          "warmup": [2.0], "per": "call"}


@pytest.mark.parametrize(("change", "message"), [
    ({"derived": {}}, r"unknown key\(s\) \['derived'\]"),
    ({"status": "done"}, "status 'done'"),
    ({"series": {"latency_bs1": {"work": 0, "samples": [1.0]}}}, "work: 0.0 images"),
    ({"series": {"latency_bs1": {"work": 1, "samples": ["1"]}}}, r"samples\[0\]: expected a "
                                                                 r"number"),
    ({"series": {"latency_bs1": {"work": 1, "samples": [1.0], "per": "minute"}}}, "per: 'minute'"),
    ({"wall_s": True}, "wall_s: expected a number, got True"),
])
def test_the_validator_refuses_what_the_contract_does_not_hold(change: dict, message: str) -> None:
    with pytest.raises(RecordError, match=message):
        parse_run({**_run("inference", {"batch_size": 4}), **change})


def test_training_figures_are_whole_updates_and_a_projected_total_with_its_method() -> None:
    micro = [1.0, 1.2, 1.1, 1.0, 0.9, 0.8, 1.0, 1.0, 1.0]  # batch means 1.1, 0.9, 1.0
    run = _run("full_training", TRAIN, model={"forward_flops": 1e9},
               series={"micro_step": {"work": 8, "first": 20.0, "warmup": [3.0],
                                      "samples": micro},
                       "update": {"work": 32, "first": 5.0, "samples": [0.4, 0.4, 0.4]}},
               measured={"data_fill_s": 2.0, "input_pipeline_images_per_s": 900.0})
    f = figures(run)
    # 4 micro-steps an update: each carries 0.4 / 4 = 0.1 s of it
    assert f["train img/s"].value == pytest.approx(8 / (1.0 + 0.1))
    assert f["train img/s"].headline and f["train img/s"].series == "micro_step"
    assert f["train GFLOP/s"].value == pytest.approx(f["train img/s"].value * 3)
    assert f["first step s"].value == 25.0 and f["data fill s"].value == 2.0
    total = f["train total s"]
    steps, micro_steps = 10, 10 * 4 - 1
    assert total.kind == "projected"
    assert total.value == pytest.approx(2.0 + 25.0 + micro_steps * 1.0 + (steps - 1) * 0.4)
    assert total.low < total.value < total.high
    assert "batch means, 3 batches of 3" in total.note
    assert list(record.samples(run, "micro_step")) == pytest.approx([8 / (x + 0.1) for x in micro])


def test_a_full_run_reports_its_measured_total_and_how_far_its_own_projection_was() -> None:
    params = {**TRAIN, "measure": "full", "window_steps": 4}
    micro = [1.0] * 4 + [1.2] * 34  # slower after the window: the projection falls short
    run = _run("full_training", params,
               series={"micro_step": {"work": 8, "first": 20.0, "warmup": [3.0],
                                      "samples": micro},
                       "update": {"work": 32, "first": 5.0, "samples": [0.4] * 9}},
               measured={"total_s": 80.0})
    f = figures(run)
    assert f["train total s"].kind == "measured" and f["train total s"].value == 80.0
    check = f["projection error"]
    projected = 25.0 + 39 * 1.0 + 9 * 0.4
    assert check.value == pytest.approx(projected / 80.0 - 1)
    assert "outside the 95% interval" in check.note  # four equal steps: no spread at all


def test_transfer_figures_and_total() -> None:
    run = _run("transfer", {"batch_size": 4}, model={"forward_flops": 2e9},
               data={"train_images": 10, "test_images": 2},
               series={"extract_batch": {"work": 4, "first": 3.0, "samples": [0.5, 0.25]}},
               measured={"decode_s": 1.0, "extraction_s": 3.75, "head_trace_s": 0.5,
                         "head_s": 0.25}, accuracy=0.5)
    f = figures(run)
    assert f["extract img/s"].value == pytest.approx(12.0)  # median of 8 and 16 img/s
    assert f["extract GFLOP/s"].value == pytest.approx(24.0)
    assert f["transfer total s"].value == pytest.approx(5.5)
    assert f["accuracy"].value == 0.5 and f["accuracy"].series is None


def test_fine_tune_judges_every_stage_and_heads_with_the_last() -> None:
    stage = {"trainable_weights": 10, "steps": 3, "stage_s": 3.0, "accuracy": 0.25}
    run = _run("fine_tune", {"batch_size": 4, "stages": 2}, stages=[
        {**stage, "stage": "Block8", "unfrozen": ["Block8"], "elapsed_s": 3.0,
         "series": {"work": 4, "first": 2.0, "samples": [0.5, 0.5]}},
        {**stage, "stage": "block8", "unfrozen": ["Block8", "block8"], "elapsed_s": 6.0,
         "series": {"work": 4, "first": 2.0, "samples": [1.0, 1.0]}}])
    judged = {f.name: f for f in record.judged(run)}
    assert set(judged) == {"stage 1 img/s", "stage 2 img/s"}
    assert judged["stage 1 img/s"].value == 8.0 and judged["stage 2 img/s"].value == 4.0
    assert record.headline(run).name == "stage 2 img/s"
    assert figures(run)["fine-tune total s"].value == 6.0


def _inference(latency: list[float], throughput: list[float], per: str = "call") -> dict:
    return _run("inference", {"batch_size": 4}, series={
        "latency_bs1": {"work": 1, "first": 1.0, "samples": latency},
        "throughput_bs4": {"work": 4, "first": 1.0, "samples": throughput, "per": per}})


def test_inference_figures_latency_in_ms_and_throughput_from_its_samples() -> None:
    f = figures(_inference([0.01, 0.02, 0.03], [0.5, 0.25, 0.25], per="bin"))
    assert f["latency bs1 p50 ms"].value == pytest.approx(20.0)
    assert f["latency bs1 p50 ms"].better == record.LOWER
    assert f["bs1 img/s"].value == pytest.approx(50.0)
    assert f["throughput img/s"].value == pytest.approx(16.0)
    assert f["throughput img/s"].series == "throughput_bs4"


def test_instances_side_by_side_sum_their_throughput_and_pool_their_latency() -> None:
    a = parse_run(_inference([0.01, 0.02], [0.5, 0.5, 0.5]))
    b = parse_run(_inference([0.03], [0.25, 0.25]))
    base = parse_run(_run("inference", {"batch_size": 4}))
    out = record.combine_instances(base, [a, b])
    assert out.status == "ok" and len(out.processes) == 2
    f = figures(out)
    assert f["throughput img/s"].value == pytest.approx(8 + 16)  # 8 and 16 img/s at once
    assert out.series["latency_bs1"].samples == (0.01, 0.02, 0.03)
    failed = record.combine_instances(base, [a, parse_run({**to_dict(b), "status": "failed",
                                                           "error": "killed"})])
    assert failed.status == "failed" and failed.error == "instance 1: killed"


def test_every_fixture_run_parses_and_round_trips() -> None:
    from pathlib import Path

    from bench.results import load

    for path in sorted((Path(__file__).parent / "fixtures").glob("*.json")):
        for run in load(path)["runs"]:
            assert to_dict(parse_run(run)) == run


def test_a_worker_record_that_breaks_the_contract_fails_its_run_but_keeps_the_measurement(
        tmp_path) -> None:
    from bench import worker

    run = {"run_id": "inference/x", "backend": "x", "scenario": "inference",
           "params": {"batch_size": 4, "warmup_s": 0.1, "duration_s": 0.5},
           "log": str(tmp_path / "inference--x.log")}
    good = {"series": {"latency_bs1": to_dict(Series.of(1, 0.3, [], [0.01, 0.02])),
                       "throughput_bs4": to_dict(Series.of(4, 0.3, [], [0.04, 0.05]))}}
    assert worker.checked(run, good)["status"] == "ok"
    assert not (tmp_path / "inference--x.record.json").exists()
    broken = {**good, "derived": {"speedup": 2.0}}
    with pytest.raises(RecordError, match=r"unknown key.*kept in .*inference--x\.record\.json"):
        worker.checked(run, broken)
    kept = json.loads((tmp_path / "inference--x.record.json").read_text())
    assert kept["series"] == good["series"] and kept["derived"] == {"speedup": 2.0}
    assert kept["status"] == "failed" and "unknown key" in kept["error"]
