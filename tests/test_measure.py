import os
import time

import numpy as np
import pytest

from bench.measure import (
    INJECT_VAR,
    T_975,
    batch_means_interval,
    completion_bins,
    injected_slowdown,
    reference,
    reference_rate,
    time_calls,
    timed,
)


def test_the_t_quantiles_the_workers_use_are_scipys() -> None:
    from scipy.stats import t

    assert tuple(float(t.ppf(0.975, df)) for df in range(1, 30)) == T_975


def test_batch_means_interval_brackets_the_mean_names_its_method_and_is_repeatable() -> None:
    samples = [1.0, 1.1, 0.9, 1.05, 0.95, 1.2, 0.8, 1.0, 1.1]
    lo, hi, method = batch_means_interval(samples)
    assert lo < sum(samples) / len(samples) < hi
    assert method == "batch means, 3 batches of 3, Student's t with 2 df"
    assert batch_means_interval(samples) == (lo, hi, method)
    assert batch_means_interval([2.0] * 9)[:2] == (2.0, 2.0)


def test_batch_means_widen_the_interval_of_autocorrelated_samples() -> None:
    """A drifting series (each step slower than the last) is not n independent samples: its
    batch means interval is wider than the naive one over the samples taken as independent."""
    drift = [1.0 + 0.01 * i for i in range(36)]
    lo, hi, _ = batch_means_interval(drift)
    naive = 2.03 * np.std(drift, ddof=1) / np.sqrt(len(drift))  # t(35 df, 0.975) ≈ 2.03
    assert (hi - lo) / 2 > 1.5 * naive


def test_too_few_samples_to_batch_are_their_own_batches_and_one_has_no_interval() -> None:
    lo, hi, method = batch_means_interval([1.0, 3.0, 2.0])
    assert lo < 2.0 < hi and method.startswith("3 samples, too few to batch")
    assert batch_means_interval([1.0]) == (None, None, "no interval: 1 sample(s)")


def test_completion_bins_time_groups_of_completions_from_the_one_before_the_window() -> None:
    # a request every 0.25 s; the last completion before the window is where the first group's
    # time starts: 16 requests in [0, 4) took 4.0 s, in 4 groups of 4
    ends = [-0.05, *(0.2 + 0.25 * i for i in range(16)), 4.2]
    assert completion_bins(ends, 0.0, 4.0) == pytest.approx([0.25] * 4)
    assert completion_bins(ends, 5.0, 6.0) == []
    assert completion_bins([0.5], 0.0, 2.0) == [2.0]  # one completion: the window's length
    # no completion before the window: timed from the first one; fewer than 4 a group: fewer
    assert completion_bins([0.5, 1.5, 2.5, 3.5], 0.0, 4.0) == pytest.approx([1.0])


def test_a_batch_answered_at_one_instant_is_one_completion_instant_of_its_requests() -> None:
    # batches of 4 answered at 1, 2 and 3 s: a group never holds only one batch's requests
    ends = [1.0] * 4 + [2.0] * 4 + [3.0] * 4
    assert completion_bins(ends, 0.0, 3.5, min_per_bin=1) == pytest.approx([0.25, 0.25])
    assert completion_bins(ends, 1.5, 3.5, min_per_bin=1) == pytest.approx([0.25, 0.25])
    assert completion_bins([2.0] * 4, 0.0, 4.0) == pytest.approx([1.0])  # 4 in the window


def test_completion_bins_are_exact_where_clock_bins_were_quantised_and_keep_a_stall() -> None:
    # a request every 0.3 s: clock bins of 1 s held 3 or 4 of them (0.33 or 0.25 s each, the
    # rate off by -10% or +20%); groups of completions give 0.3 s each, the true rate
    ends = [0.3 * i for i in range(1, 14)]
    samples = completion_bins(ends, 0.0, 4.0)
    assert len(samples) == 3 and samples == pytest.approx([0.3] * 3)
    # a stall between 0.4 and 3.1 s stays in the group that spans it; the groups' summed time
    # is the whole span, so the window's rate is exact
    ends = [0.1, 0.2, 0.3, 0.4, *(3.1 + 0.1 * i for i in range(8))]
    samples = completion_bins(ends, 0.0, 4.0)
    assert samples == pytest.approx([3.2 / 6, 0.5 / 5])
    assert 6 * samples[0] + 5 * samples[1] == pytest.approx(ends[-1] - ends[0])


def test_time_calls_keeps_warmup_apart_and_reaches_min_samples() -> None:
    calls = []
    warm, timed = time_calls(lambda: calls.append(1), warmup_s=0.0, duration_s=0.0,
                             min_samples=7)
    assert len(warm) == 1 and len(timed) == 7 and len(calls) == 8


def test_a_duration_s_interval_never_goes_below_zero() -> None:
    lo, hi, _ = batch_means_interval([0.01, 0.01, 0.01, 0.01, 5.0, 5.0, 5.0, 5.0])
    assert lo == 0.0 and hi > 2.5


def test_the_injected_slowdown_is_off_unless_set_and_a_bad_value_is_refused_by_name(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(INJECT_VAR, raising=False)
    assert injected_slowdown() == 0
    monkeypatch.setenv(INJECT_VAR, "0.10")
    assert injected_slowdown() == pytest.approx(0.10)
    for bad in ("ten percent", "-0.1", "11"):
        monkeypatch.setenv(INJECT_VAR, bad)
        with pytest.raises(ValueError, match=f"{INJECT_VAR}='{bad}'"):
            injected_slowdown()


def test_timed_waits_for_the_result_and_the_slowdown_lengthens_the_timed_window() -> None:
    def work() -> np.float32:
        time.sleep(0.05)
        return np.float32(2.5)

    out, plain = timed(work)
    assert out == 2.5 and isinstance(out, float) and plain >= 0.05
    out, slowed = timed(work, 1.0)  # twice as long: the sleep is inside the window
    assert out == 2.5 and slowed >= 0.1
    assert timed(lambda: None)[0] is None


def test_the_reference_kernel_runs_on_each_cpu_and_gives_the_affinity_back() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    rate = reference_rate(cpus)
    assert set(rate["per_cpu"]) == {str(c) for c in cpus}
    assert all(r > 0 for r in rate["per_cpu"].values())
    assert rate["rate"] == pytest.approx(np.mean(list(rate["per_cpu"].values())))
    assert os.sched_getaffinity(0) == set(cpus)


def test_the_reference_kernel_samples_at_most_8_cpus_evenly(monkeypatch) -> None:
    import bench.measure as measure

    pinned = []
    monkeypatch.setattr(measure.os, "sched_setaffinity", lambda _, cpus: pinned.append(cpus))
    monkeypatch.setattr(measure.os, "sched_getaffinity", lambda _: set(range(112)))
    rate = reference_rate(range(112))
    assert len(rate["per_cpu"]) == 8 and {"0", "111"} <= set(rate["per_cpu"])
    assert pinned[-1] == set(range(112))  # given back


def test_a_process_s_reference_is_the_geometric_mean_of_before_and_after() -> None:
    ref = reference({"rate": 4.0}, {"rate": 9.0})
    assert ref["rate"] == pytest.approx(6.0) and ref["unit"] == "Gelem/s"
    assert ref["kernel"].startswith(f"numpy {np.__version__} ")
