"""What a log shows of each finished run: its cause whole, an ETA that skipped runs do not
inflate, and text in brackets as written (never taken for rich markup)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench import cli
from bench.commands.measure import _run_line, eta_s

from .conftest import write_suite


def test_the_eta_counts_only_the_runs_still_to_measure() -> None:
    assert eta_s(elapsed=60.0, measured=3, ahead=2) == 40.0  # 20 s a measured run, 2 to go
    assert eta_s(elapsed=60.0, measured=3, ahead=0) == 0.0  # only skipped runs are left
    assert eta_s(elapsed=5.0, measured=0, ahead=4) is None  # nothing measured yet: unknown


def test_a_cause_is_printed_whole_on_one_line() -> None:
    reason = ("this CPU has no native bf16 (AVX-512 without bf16 (Skylake, Cascade Lake, Ice "
              "Lake)): tf-onednn-bf16 would run oneDNN's avx512_core bf16 kernels: bf16 data, "
              "fp32 arithmetic, which measures no bf16 hardware; run it on a CPU with "
              "AVX512_BF16 or AMX (Cooper Lake, Zen 4/5, Sapphire Rapids)")
    line = _run_line({"run_id": "inference/tf-onednn-bf16", "status": "skipped",
                      "reason": reason, "wall_s": 0.0}, 3, 8, 75.0, None)
    assert line == (f"[3/8] inference/tf-onednn-bf16 skipped: {reason} (0 s); elapsed 0:01:15, "
                    f"ETA ?")
    failed = _run_line({"run_id": "transfer/x", "status": "failed", "wall_s": 2.0,
                        "error": "RuntimeError: first line\n  second line\n"}, 1, 1, 2.0, 0.0)
    assert "failed: RuntimeError: first line / second line (2 s)" in failed


@pytest.mark.slow
def test_a_ci_log_gives_no_time_to_runs_that_will_be_skipped(tmp_path: Path, capsys) -> None:
    suite = write_suite(tmp_path, backends=("tf-stock", "openvino"),
                        scenarios=("full_training",))
    assert cli.main(["run", str(suite), "--out", str(tmp_path / "r")]) == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if re.match(r"\[\d/2\] ", x)]
    assert len(lines) == 2, lines
    # after the one measured run only a skipped one is left: nothing more to wait for
    assert lines[0].startswith("[1/2] full_training/tf-stock ok: ")
    assert lines[0].endswith("ETA 0:00:00")
    assert lines[1].startswith("[2/2] full_training/openvino skipped: openvino does not train: "
                               "it runs inference and transfer extraction only (0 s)")
