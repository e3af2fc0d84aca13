import pytest

from bench.measure import mean_interval, project_total, summarize, time_calls


def test_summary_matches_hand_computed_figures() -> None:
    s = summarize([4.0, 1.0, 3.0, 2.0, 5.0])
    assert (s["n"], s["median"], s["mean"], s["min"], s["max"]) == (5, 3.0, 3.0, 1.0, 5.0)
    assert (s["q1"], s["q3"], s["iqr"]) == (2.0, 4.0, 2.0)
    assert s["stdev"] == pytest.approx(1.5811388, rel=1e-6)


def test_summary_refuses_no_samples() -> None:
    with pytest.raises(ValueError, match="no samples"):
        summarize([])


def test_mean_interval_brackets_the_mean_and_is_repeatable() -> None:
    samples = [1.0, 1.1, 0.9, 1.05, 0.95, 1.2, 0.8]
    lo, hi = mean_interval(samples)
    assert lo < sum(samples) / len(samples) < hi
    assert (lo, hi) == mean_interval(samples)
    assert mean_interval([2.0, 2.0, 2.0]) == (2.0, 2.0)


def test_projection_is_fixed_cost_plus_steps_times_mean_step() -> None:
    p = project_total([2.0, 2.0, 2.0, 2.0], steps=1000, fixed_s=30.0)
    assert p["kind"] == "projected"
    assert p["total_s"] == p["total_s_low"] == p["total_s_high"] == 2030.0
    noisy = project_total([1.0, 3.0, 2.0, 2.5, 1.5], steps=100)
    assert noisy["total_s"] == pytest.approx(200.0)
    assert noisy["total_s_low"] < noisy["total_s"] < noisy["total_s_high"]


def test_time_calls_keeps_warmup_apart_and_reaches_min_samples() -> None:
    calls = []
    warm, timed = time_calls(lambda: calls.append(1), warmup_s=0.0, duration_s=0.0,
                             min_samples=7)
    assert len(warm) == 1 and len(timed) == 7 and len(calls) == 8
