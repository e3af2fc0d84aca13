"""What a log shows of each finished run: its cause whole, an ETA that skipped runs do not
inflate, and text in brackets as written (never taken for rich markup)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench import cli
from bench.commands import measure as commands_measure
from bench.commands.measure import _run_line, eta_s

from .conftest import only_result, write_suite


def test_the_eta_adds_each_run_still_to_measure_at_its_expected_cost() -> None:
    measured = {"full_training/tf-stock": 100.0, "full_training/tf-onednn": 60.0,
                "transfer/tf-stock": 10.0}
    # a run of the previous result costs what it cost then; one without, the mean of its
    # scenario so far; a scenario not yet measured, the mean of every measured run
    previous = {"inference/torch-compile": 400.0}
    assert eta_s(("full_training/jax", "inference/torch-compile", "inference/jax"), previous,
                 measured) == pytest.approx(80.0 + 400.0 + 170.0 / 3)
    assert eta_s((), previous, measured) == 0.0  # only skipped runs are left
    # before the first measured run: known from the previous result, else unknown
    assert eta_s(("inference/torch-compile",), previous, {}) == 400.0
    assert eta_s(("inference/torch-compile", "transfer/jax"), previous, {}) is None


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
def test_a_ci_log_gives_no_time_to_runs_that_will_be_skipped_and_reports_follow_each_run(
        tmp_path: Path, capsys, monkeypatch) -> None:
    written, real = [], commands_measure.write_reports

    def write_reports(doc, path, reports_dir):
        written.append([r["run_id"] for r in doc["runs"]])
        return real(doc, path, reports_dir)

    monkeypatch.setattr(commands_measure, "write_reports", write_reports)
    suite = write_suite(tmp_path, backends=("tf-stock", "openvino"),
                        scenarios=("full_training",))
    assert cli.main(["run", str(suite), "--out", str(tmp_path / "r")]) == 0
    # the report files after the measured run (not after the skipped one), and at the end
    assert written == [["full_training/tf-stock"],
                       ["full_training/tf-stock", "full_training/openvino"]]
    summary = next((tmp_path / "reports").glob("*.txt")).read_text()
    assert "full_training/openvino" in summary and "\x1b[" not in summary
    lines = [x for x in capsys.readouterr().out.splitlines() if re.match(r"\[\d/2\] ", x)]
    assert len(lines) == 2, lines
    # after the one measured run only a skipped one is left: nothing more to wait for
    assert lines[0].startswith("[1/2] full_training/tf-stock ok: ")
    assert lines[0].endswith("ETA 0:00:00")
    assert lines[1].startswith("[2/2] full_training/openvino skipped: openvino does not train: "
                               "it runs inference and transfer extraction only (0 s)")


@pytest.mark.slow
def test_report_files_that_cannot_be_written_never_stop_the_measuring(
        tmp_path: Path, capsys, monkeypatch) -> None:
    def full_disk(doc, path, reports_dir):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(commands_measure, "write_reports", full_disk)
    suite = write_suite(tmp_path, backends=("tf-stock", "tf-onednn"), scenarios=("inference",))
    assert cli.main(["run", str(suite), "--out", str(tmp_path / "r")]) == cli.EXIT_CANNOT_WRITE
    out, err = capsys.readouterr()
    assert out.count("cannot write the report files") == 1  # said once, and the suite went on
    assert "cannot write the report files of" in err and "tlbench report" in err
    doc = only_result(tmp_path / "r")
    assert doc["complete"] and [r["status"] for r in doc["runs"]] == ["ok", "ok"]
