"""Faults lose nothing: workers killed, timed out, over their memory cap, interrupted.

Real worker processes; where the fault is the point (a signal, a timeout, the memory cap), a
small script stands in for `bench.worker` and does exactly that, whatever the machine's load."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import launcher as launcher_module
from bench.cli import main
from bench.launcher import Launcher, Limits
from bench.pinning import read_topology, resolve
from bench.plan import expand, plan
from bench.results import load
from bench.suite import parse

from ..conftest import REPO, only_result, write_suite

pytestmark = pytest.mark.slow


def _fake_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> Path:
    """`tlbench run` in this process with every worker replaced by a Python script `body`,
    through the launcher's interpreter override (the one the signal tests use): what the
    worker does is then fixed by the test, not by how fast this machine is right now."""
    script = tmp_path / "fake-worker"
    script.write_text(f"#!{sys.executable}\n{body}")
    script.chmod(0o755)
    monkeypatch.setattr(launcher_module, "Launcher",
                        functools.partial(Launcher, python=str(script)))
    return script


# Sleeps far beyond any limit here: only the launcher can end it.
SLEEPER = "import time\ntime.sleep(3600)\n"


def test_a_timed_out_worker_is_failed_and_the_suite_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = _fake_worker(tmp_path, monkeypatch, SLEEPER)
    suite = write_suite(tmp_path, backends=("tf-stock", "tf-onednn"), scenarios=("inference",),
                        timeout=2)
    assert main(["run", str(suite), "--out", str(tmp_path / "r")]) == 1
    runs = only_result(tmp_path / "r")["runs"]
    cause = "timed out after 2 s (raise timeout_s in the suite)"
    assert [(r["run_id"], r["status"], r["error"]) for r in runs] == [
        ("inference/tf-stock", "failed", cause), ("inference/tf-onednn", "failed", cause)]
    assert all("log_tail" in r for r in runs)
    assert _processes_mentioning(str(script)) == [], "a timed-out worker is killed"


def test_a_worker_over_its_memory_cap_is_failed_with_the_cause(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 0.5 GiB written (so resident) beside the interpreter, twice the cap, then it waits:
    # nothing but the cap can end it before the 600 s timeout.
    script = _fake_worker(tmp_path, monkeypatch, "block = b'\\x01' * 2**29\n" + SLEEPER)
    suite = write_suite(tmp_path, backends=("tf-stock",), scenarios=("inference",),
                        max_memory_gb=0.25, timeout=600)
    assert main(["run", str(suite), "--out", str(tmp_path / "r")]) == 1
    run = only_result(tmp_path / "r")["runs"][0]
    assert run["status"] == "failed"
    error = run["error"]
    assert error.startswith("exceeded the memory cap: ") and "max_memory_gb = 0.25 " in error
    resident_gb = float(error.removeprefix("exceeded the memory cap: ").split(" GB")[0])
    assert 0.25 <= resident_gb <= 0.75, "the worker's resident set, read when it passed the cap"
    assert _processes_mentioning(str(script)) == [], "a worker over its cap is killed"


def test_a_failing_run_is_recorded_and_the_next_still_runs(tmp_path: Path) -> None:
    """Weights that pass the parent's check (format, depth, embedding size) but lack one
    variable: only the worker that loads them finds out, and fails."""
    import numpy as np

    from bench.models import weights
    from bench.models.store import build_base

    saved = weights.save(build_base({"variant": "small", "image_size": 96, "embedding_size": 64}),
                         tmp_path / "whole.npz")
    arrays = weights.read(saved)
    del arrays["block35_1_Conv2d_1x1/1"]
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
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
    launcher = Launcher(topology, tmp_path / "logs", python=str(suicide))
    record = launcher.run(expand(plan(suite)[0], placement, topology), Limits(timeout_s=30))
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
    # The signal comes while the second run's worker is alive, whatever the machine's speed:
    # the launcher opens the run's log (under the result's `.logs` folder) once the first run
    # is recorded, then starts the worker; that worker is stopped (SIGSTOP) so that it cannot
    # finish before the suite is interrupted, which kills it as it would a running one.
    deadline = time.monotonic() + 240
    worker = None
    while worker is None and time.monotonic() < deadline and proc.poll() is None:
        if any(out.rglob("inference--tf-onednn.log")):
            worker = next((pid for pid in _processes_mentioning(str(tmp_path))
                           if "bench.worker" in _cmdline(pid)), None)
        time.sleep(0.05)
    if worker is None or not _stop(worker):
        proc.kill()
        proc.wait()
        pytest.fail("the second run's worker never started, or ended before it was stopped")
    files = list(out.glob("*/*.json"))
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
    assert resumed["runs"][0]["series"] == doc["runs"][0]["series"]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _state(pid: int) -> str | None:
    """A process's state letter from /proc (R, S, T, Z, ...), None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return None


def _stop(pid: int, timeout: float = 10.0) -> bool:
    """SIGSTOP `pid`; True once it is stopped (alive, and going nowhere). Otherwise — it ended
    first — False, and it is killed if it is still there."""
    try:
        os.kill(pid, signal.SIGSTOP)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while _state(pid) not in ("T", "Z", None) and time.monotonic() < deadline:
        time.sleep(0.01)
    if _state(pid) == "T":
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return False


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


RECORDING_WORKER = """\
import json, sys
from pathlib import Path
task = json.loads(Path(sys.argv[-2]).read_text())
with open({order!r}, "a") as order:
    order.write(task["run"]["run_id"] + "\\n")
series = {{"latency_bs1": {{"work": 1, "first": 0.5, "samples": [0.01, 0.012, 0.011]}},
          "throughput_bs4": {{"work": 4, "first": 0.5, "samples": [0.1, 0.11, 0.12]}}}}
Path(sys.argv[-1]).write_text(json.dumps({{"status": "ok", "series": series}}))
"""


def test_repeats_run_fresh_processes_round_by_round_and_keep_each(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    order = tmp_path / "order.txt"
    _fake_worker(tmp_path, monkeypatch, RECORDING_WORKER.format(order=str(order)))
    suite = write_suite(tmp_path, backends=("tf-stock", "tf-onednn"), scenarios=("inference",))
    assert main(["run", str(suite), "--repeats", "3", "--out", str(tmp_path / "r")]) == 0
    assert order.read_text().split() == ["inference/tf-stock", "inference/tf-onednn"] * 3
    doc = only_result(tmp_path / "r")
    assert doc["suite"]["repeats"] == 3
    for run in doc["runs"]:
        assert len(run["repeats"]) == 2 and all(r["status"] == "ok" for r in run["repeats"])
        logs = {Path(run["log"]).name, *(Path(r["log"]).name for r in run["repeats"])}
        stem = run["run_id"].replace("/", "--")
        assert logs == {f"{stem}.log", f"{stem}.r2.log", f"{stem}.r3.log"}


SIDE_WORKER = """#!{python}
import json, os, sys
from pathlib import Path
task = json.loads(Path(sys.argv[-2]).read_text())
with open({order!r}, "a") as order:
    order.write({side!r} + " " + task["run"]["run_id"]
                + os.environ.get("TLBENCH_INJECT_SLOWDOWN", "") + "\\n")
s = {seconds} * (1 + (os.getpid() % 7) / 200)  # each process a little off the others
series = {{"latency_bs1": {{"work": 1, "first": 0.5, "samples": [s, s * 1.01, s * 0.99]}},
          "throughput_bs4": {{"work": 4, "first": 0.5, "samples": [4 * s, 4.1 * s, 3.9 * s]}}}}
Path(sys.argv[-1]).write_text(json.dumps({{"status": "ok", "series": series}}))
"""


def test_ab_alternates_the_two_stacks_round_by_round_and_judges_b_against_a(
        tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")  # the verdict's note on one line of the table
    order = tmp_path / "order.txt"
    sides = {}
    for side, seconds in (("A", 0.010), ("B", 0.013)):  # B 30% slower
        script = tmp_path / f"python-{side}"
        script.write_text(SIDE_WORKER.format(python=sys.executable, order=str(order),
                                             side=side, seconds=seconds))
        script.chmod(0o755)
        sides[side] = str(script)
    suite = write_suite(tmp_path, backends=("tf-stock",), scenarios=("inference",))
    code = main(["ab", str(suite), "--a", sides["A"], "--b", sides["B"], "--repeats", "4",
                 "--b-env", "TLBENCH_INJECT_SLOWDOWN= 0.2", "--out", str(tmp_path / "r")])
    assert order.read_text().split("\n")[:-1] == [  # B's variable reaches B's workers only
        "A inference/tf-stock", "B inference/tf-stock 0.2", "B inference/tf-stock 0.2",
        "A inference/tf-stock"] * 2
    files = sorted((tmp_path / "r").glob("*/*.json"))
    assert [load(f)["ab"]["side"] for f in files] == ["A", "B"]
    assert [load(f)["ab"]["env"] for f in files] == [{}, {"TLBENCH_INJECT_SLOWDOWN": " 0.2"}]
    assert all(len(load(f)["runs"][0]["repeats"]) == 3 for f in files)
    out = " ".join(capsys.readouterr().out.split())
    assert code == 1 and "B is slower" in out and "4 pairs of adjacent processes" in out


def test_ab_builds_the_baseline_of_a_git_ref_and_runs_its_own_code(
        tmp_path: Path, capsys, monkeypatch) -> None:
    """--a-ref HEAD: the commit's tree is extracted to the cache and A's workers start in it, so
    they import its `bench` (here its worker replaced by a recording one), under the same pins
    the candidate's interpreter."""
    from bench import baseline

    monkeypatch.setenv("TLBENCH_CACHE", str(tmp_path / "cache"))
    order = tmp_path / "order.txt"
    built = baseline.prepare("HEAD", note=lambda text: None)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.strip()
    assert built.commit == commit and built.source == tmp_path / "cache" / "baselines" / commit
    assert built.python == sys.executable and "the candidate's" in built.env
    (built.source / "bench" / "worker.py").write_text(
        SIDE_WORKER.format(python=sys.executable, order=str(order), side="A", seconds=0.010))
    script = tmp_path / "python-B"
    script.write_text(SIDE_WORKER.format(python=sys.executable, order=str(order), side="B",
                                         seconds=0.010))
    script.chmod(0o755)
    suite = write_suite(tmp_path, backends=("tf-stock",), scenarios=("inference",))
    code = main(["ab", str(suite), "--a-ref", "HEAD", "--b", str(script), "--repeats", "2",
                 "--out", str(tmp_path / "r")])
    assert code in (0, 1)
    assert order.read_text().split("\n")[:-1] == [
        "A inference/tf-stock", "B inference/tf-stock", "B inference/tf-stock",
        "A inference/tf-stock"]
    a = load(sorted((tmp_path / "r").glob("*/*_e2e-A.json"))[0])
    assert a["ab"]["baseline"] == {"ref": "HEAD", "commit": commit, "source": str(built.source),
                                   "env": built.env}
    assert "A: HEAD = commit" in capsys.readouterr().out


def test_ab_refuses_a_ref_the_repository_does_not_have(tmp_path: Path, capsys,
                                                        monkeypatch) -> None:
    monkeypatch.setenv("TLBENCH_CACHE", str(tmp_path / "cache"))
    suite = write_suite(tmp_path, backends=("tf-stock",), scenarios=("inference",))
    code = main(["ab", str(suite), "--a-ref", "no-such-branch-xyz", "--b", sys.executable,
                 "--out", str(tmp_path / "r")])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "--a-ref no-such-branch-xyz: no such commit" in err
    assert not (tmp_path / "r").exists()


def test_a_baseline_with_other_pins_gets_an_environment_of_its_own_once(
        tmp_path: Path) -> None:
    """A ref whose pyproject.toml differs from the candidate's is given the venv keyed by that
    file's hash; a venv already built for those pins is reused (building one is pip's work,
    which the end-to-end CI job does)."""
    from bench import baseline

    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    (repo / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "1"\n')
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "old pins"], check=True)
    (repo / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "2"\n')
    old = tmp_path / "old.toml"
    old.write_text('[project]\nname = "x"\nversion = "1"\n')
    key = baseline.env_key(old)
    env = tmp_path / "cache" / "envs" / key
    (env / "bin").mkdir(parents=True)
    (env / ".installed").touch()
    built = baseline.prepare("HEAD", repo=repo, cache=tmp_path / "cache", note=lambda t: None)
    assert built.python == str(env / "bin" / "python") and built.env == f"cached: {env}"
    assert (built.source / "pyproject.toml").read_text().endswith('version = "1"\n')



def test_ab_refuses_a_side_variable_that_is_not_name_equals_value(tmp_path: Path, capsys) -> None:
    suite = write_suite(tmp_path, backends=("tf-stock",), scenarios=("inference",))
    code = main(["ab", str(suite), "--a", sys.executable, "--b", sys.executable,
                 "--a-env", "TF_ENABLE_ONEDNN_OPTS", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "--a-env 'TF_ENABLE_ONEDNN_OPTS': give NAME=VALUE" in err
    assert not (tmp_path / "r").exists()  # refused before anything ran
