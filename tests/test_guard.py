"""A busy machine is seen, a full disk loses nothing: the CPU lock between suites, other
processes' load on a run's CPUs, and a result file that cannot be written."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import cli, compare, lock, record, results
from bench.pinning import read_topology
from bench.report import console as console_report

from .conftest import REPO, only_result, write_suite

CPUS = tuple(sorted(c.id for c in read_topology().cpus))


def test_a_cpu_held_by_one_suite_refuses_another_naming_it(tmp_path: Path) -> None:
    with lock.acquire(CPUS, where=tmp_path) as first:
        assert sorted(first.held) == sorted(CPUS) and first.concurrent == []
        with pytest.raises(lock.BusyError) as refused:
            lock.acquire(CPUS[:1], where=tmp_path)
        text = str(refused.value)
        assert f"pid {os.getpid()}" in text and "--allow-concurrent" in text
        assert f"CPU(s) {CPUS[0]}" in text and str(tmp_path) in text
        beside = lock.acquire(CPUS, allow_concurrent=True, where=tmp_path)
        assert beside.held == {} and beside.concurrent[0]["pid"] == os.getpid()
        assert beside.concurrent[0]["on"] == sorted(CPUS)
        assert beside.describe()["machine_wide"] is False
    with lock.acquire(CPUS, where=tmp_path) as again:  # released: free again
        assert sorted(again.held) == sorted(CPUS)


@pytest.mark.skipif(len(CPUS) < 2, reason="needs two CPUs: one per host")
def test_the_hosts_of_one_training_run_each_lock_only_their_own_cpus(tmp_path: Path) -> None:
    with lock.acquire(CPUS[:1], where=tmp_path), lock.acquire(CPUS[1:2], where=tmp_path) as b:
        assert list(b.held) == [CPUS[1]] and b.concurrent == []


def _spin(cpu: int) -> subprocess.Popen:
    """Another process, busy on one CPU (bounded: it ends by itself after 10 minutes)."""
    return subprocess.Popen([sys.executable, "-c", f"import os, time\nos.sched_setaffinity(0, "
                             f"{{{cpu}}})\nend = time.monotonic() + 600\n"
                             f"while time.monotonic() < end: pass"])


def _wait_for(predicate, what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


@pytest.mark.slow
def test_a_second_suite_is_refused_or_labelled_and_foreign_load_is_flagged(
        tmp_path: Path, monkeypatch, capsys) -> None:
    """A suite runs while other processes spin on its CPUs; a second suite on those CPUs is
    refused (exit 75, naming the first), or with --allow-concurrent runs, labelled. The first's
    run records the foreign load; the reports flag it and compare does not judge it."""
    locks = tmp_path / "locks"
    monkeypatch.setenv(lock.LOCK_DIR_VAR, str(locks))
    first_suite = write_suite(tmp_path, "first", backends=("tf-stock",), scenarios=("inference",))
    spinners = [_spin(cpu) for cpu in CPUS]
    first = subprocess.Popen([sys.executable, "-m", "bench", "run", str(first_suite), "--out",
                              str(tmp_path / "first")], cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        holder = locks / f"cpu{CPUS[0]}.lock"
        _wait_for(lambda: holder.is_file() and str(first.pid) in holder.read_text(),
                  "the first suite's lock")
        second = write_suite(tmp_path, "second", backends=("openvino",),
                             scenarios=("full_training",))  # skipped: no worker needed
        assert cli.main(["run", str(second), "--out", str(tmp_path / "refused")]) == \
            cli.EXIT_BUSY
        err = capsys.readouterr().err
        assert f"pid {first.pid}" in err and "first.toml" in err and "--allow-concurrent" in err
        assert not (tmp_path / "refused").exists(), "a refused suite writes no result"
        assert cli.main(["run", str(second), "--out", str(tmp_path / "beside"),
                         "--allow-concurrent"]) == 0
        labelled = only_result(tmp_path / "beside")
        assert [h["pid"] for h in labelled["lock"]["concurrent"]] == [first.pid]
        assert "run with --allow-concurrent beside another suite" in "\n".join(
            console_report.quality_lines(labelled))
        out, _ = first.communicate(timeout=600)
        assert first.returncode == 0, out[-3000:]
    finally:
        for process in (*spinners, first):
            process.kill()
            process.wait()
    doc = only_result(tmp_path / "first")
    assert doc["lock"] == {**doc["lock"], "held": sorted(CPUS), "concurrent": []}
    run = doc["runs"][0]
    assert run["status"] == "ok", run.get("error")
    # two spinners on its CPUs take about half their time
    assert run["foreign_load"]["share"] >= 0.25, run["foreign_load"]
    assert re.search(r"inference/tf-stock: measured under \d+% other processes' load", out)
    assert "other processes' load on the runs' CPUs: median" in out
    slower = json.loads(json.dumps(doc))  # the same run, every sample taking twice as long
    for series in slower["runs"][0]["series"].values():
        series["samples"] = [2 * x for x in series["samples"]]
    rows = compare.compare(doc, slower)  # the disturbed side is never judged worse
    assert rows and all(r.status != compare.WORSE for r in rows)
    # the rows carry the share the run recorded; whether a row is significant depends on how
    # many samples the loaded run took, so the rule itself is applied with p = 0 here (and
    # unit-tested in test_compare)
    share = record.disturbance(run, "foreign_load")
    assert share >= record.DISTURBED["foreign_load"]
    assert all(r.foreign_base == pytest.approx(share) for r in rows)
    judged = compare.decide(rows[0], 0.0, compare.DEFAULT_MAX_SLOWDOWN_PCT, compare.ALPHA, 1)
    assert judged.status == compare.SAME and judged.significant
    assert "to other processes, a disturbed machine" in judged.note


def _mount_tmpfs(where: Path, options: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    if shutil.which("mount") is None:
        pytest.skip("no mount command here")
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


def _fill(folder: Path) -> None:
    """Write into `folder` until its file system has no space left."""
    chunk = b"\0" * 4096
    with open(folder / "filler", "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(chunk)
        except OSError:
            pass


@pytest.mark.slow
def test_a_full_disk_stops_the_suite_cleanly_and_keeps_every_run(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "size=2m")
    try:
        suite = write_suite(tmp_path, "full", backends=("tf-stock", "tf-onednn"),
                            scenarios=("inference",))
        env = {**os.environ, "TMPDIR": str(tmp_path)}  # where the unsaved document goes
        proc = subprocess.Popen([sys.executable, "-m", "bench", "run", str(suite), "--out",
                                 str(disk / "results")], cwd=REPO, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

        def first_saved() -> bool:
            files = list((disk / "results").glob("*/*_full.json"))
            return bool(files) and len(results.load(files[0])["runs"]) == 1

        _wait_for(first_saved, "the first run in the result file", 600)
        _fill(disk)  # the second run's record cannot be written
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == cli.EXIT_CANNOT_WRITE, out[-2000:] + err[-2000:]
        assert "Traceback" not in out + err
        [path] = (disk / "results").glob("*/*_full.json")
        assert f"cannot write the result file {path}: No space left on device" in err
        assert "free space on that disk, or give --out a folder on another one" in err
        kept = Path(re.search(r"is kept in (\S+): `tlbench report", err).group(1))
        assert kept.parent == tmp_path / "tlbench-unsaved"
        saved, unsaved = results.load(path), results.load(kept)
        assert [r["run_id"] for r in saved["runs"]] == ["inference/tf-stock"]
        assert [r["run_id"] for r in unsaved["runs"]] == ["inference/tf-stock",
                                                          "inference/tf-onednn"]
        assert unsaved["runs"][1]["status"] == "ok" and unsaved["runs"][1]["series"]
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_read_only_folder_is_refused_before_any_run_with_the_fix(tmp_path: Path,
                                                                   capsys) -> None:
    disk = tmp_path / "ro"
    _mount_tmpfs(disk, "ro,size=1m")
    try:
        suite = write_suite(tmp_path, backends=("openvino",), scenarios=("full_training",))
        assert cli.main(["run", str(suite), "--out", str(disk / "results")]) == \
            cli.EXIT_CANNOT_WRITE
        err = capsys.readouterr().err
        assert f"cannot write the result file {disk / 'results'}" in err
        assert "the file system is read-only: give --out a writable folder" in err
        assert "No run had been measured yet: nothing is lost" in err
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
