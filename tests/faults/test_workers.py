"""Faults lose nothing: real workers, killed, timed out, over their memory cap, interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.cli import main
from bench.launcher import Launcher, Limits
from bench.pinning import read_topology, resolve
from bench.plan import plan
from bench.results import load
from bench.suite import parse

from ..conftest import only_result, write_suite

pytestmark = pytest.mark.slow


def test_a_timed_out_worker_is_failed_and_the_suite_goes_on(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, backends=("tf-stock",), scenarios=("inference",), timeout=2)
    assert main(["run", str(suite), "--out", str(tmp_path / "r")]) == 1
    run = only_result(tmp_path / "r")["runs"][0]
    assert run["status"] == "failed" and run["error"].startswith("timed out after 2 s")
    assert "log_tail" in run


def test_a_worker_over_its_memory_cap_is_failed_with_the_cause(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, backends=("tf-stock",), scenarios=("inference",),
                        max_memory_gb=0.25)  # importing TensorFlow alone takes more
    assert main(["run", str(suite), "--out", str(tmp_path / "r")]) == 1
    run = only_result(tmp_path / "r")["runs"][0]
    assert run["status"] == "failed"
    assert "exceeded the memory cap" in run["error"] and "max_memory_gb = 0.25" in run["error"]


def test_a_failing_run_is_recorded_and_the_next_still_runs(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not an h5 file")
    suite = write_suite(tmp_path, backends=("tf-onednn",), scenarios=("inference",
                        "full_training"), weights=str(bad))
    assert main(["run", str(suite), "--out", str(tmp_path / "r")]) == 1
    failed, ok = only_result(tmp_path / "r")["runs"]
    assert failed["status"] == "failed" and str(bad) in failed["error"]
    assert "Traceback" in failed["traceback"]
    assert ok["status"] == "ok", "full training starts from scratch and ignores weights"


@pytest.mark.parametrize("name", ["SIGSEGV", "SIGKILL"])
def test_a_worker_killed_by_a_signal_is_failed_with_the_signal_name(tmp_path: Path,
                                                                    name: str) -> None:
    suicide = tmp_path / "python"
    suicide.write_text(f"#!/bin/sh\nkill -{name.removeprefix('SIG')} $$\n")
    suicide.chmod(0o755)
    suite = parse(write_suite(tmp_path, backends=("tf-stock",),
                              scenarios=("inference",)).read_text())
    topology = read_topology()
    placement = resolve("all", topology)
    launcher = Launcher(topology, tmp_path / "logs", isa={}, python=str(suicide))
    record = launcher.run(plan(suite)[0], placement, Limits(timeout_s=30))
    assert record["status"] == "failed"
    assert record["error"] == f"worker killed by signal {name}"


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupt_keeps_finished_runs_and_resume_runs_the_rest(tmp_path: Path, sig,
                                                                   code: int) -> None:
    suite = write_suite(tmp_path, name="intr", backends=("tf-stock", "tf-onednn"),
                        scenarios=("inference",))
    out = tmp_path / "r"
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # the worker's task file lands here
    proc = subprocess.Popen([sys.executable, "-m", "bench", "run", str(suite), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        files = list(out.glob("*/*.json"))
        if files and load(files[0])["runs"]:
            break
        time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("the first run never finished")
    proc.send_signal(sig)
    assert proc.wait(timeout=60) == code
    doc = only_result(out)
    assert doc["interrupted"] == sig.name and doc["complete"] is True
    assert [r["run_id"] for r in doc["runs"]] == ["inference/tf-stock"]
    assert doc["runs"][0]["status"] == "ok"
    assert _processes_mentioning(str(tmp_path)) == [], "the running worker died with the suite"

    # --resume runs only what is missing, into a new file that carries the finished run over.
    assert main(["run", "--resume", str(files[0]), "--out", str(out)]) == 0
    resumed = load(max(out.glob("*/*.json"), key=lambda p: p.stat().st_mtime_ns))
    assert resumed["resumed_from"] == str(files[0]) and resumed["complete"] is True
    assert [(r["run_id"], r["status"], r.get("carried_from")) for r in resumed["runs"]] == [
        ("inference/tf-stock", "ok", str(files[0])), ("inference/tf-onednn", "ok", None)]
    assert resumed["runs"][0]["derived"] == doc["runs"][0]["derived"]


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(pid))
    return found
