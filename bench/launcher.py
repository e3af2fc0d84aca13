"""Spawn one fresh worker process per run, with its environment built here, explicitly.

The worker runs in its own session (process group) so that a timeout or a Ctrl-C of the suite
kills it and everything it started. Whatever happens to a worker — a traceback, a signal, a
timeout, no result document — becomes a `failed` run with the cause and the tail of its log; the
suite goes on with the next run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench import backends, distributed, efficiency, measure, record
from bench.pinning import Placement, Topology
from bench.plan import Process, Run, RunPlan
from bench.training import PretrainSpec
from bench.worker import PROGRESS_PREFIX

LOG_TAIL_LINES = 30
# pretraining runs on the runtime of this backend's worker: the one the paper optimised, on the
# main environment's TensorFlow (tlbench pretrain did so from the start)
PRETRAIN_BACKEND = "tf-onednn"
POLL_S = 0.2  # how often a running worker's clock and memory are checked


@dataclass(frozen=True)
class Limits:
    timeout_s: float
    max_memory_gb: float = 0.0  # 0: no cap
    join_timeout_s: float = 120.0  # a data-parallel worker's wait for its peers


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (0 for those already gone)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += p.memory_info().rss
    return total


# Passed through from the shell to every worker; nothing else is (pyperf's gotcha: a stray
# TF_CONFIG, OMP_* or LD_PRELOAD would change what is measured, and the result could not show it).
# OPENBLAS_* are machine-level workarounds some hosts set for old OpenBLAS builds; the test-only
# slowdown is recorded by the run it touches.
PASS_ENV = ("PATH", "HOME", "USER", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
            "TLBENCH_CACHE", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", measure.INJECT_VAR)


def worker_environment(backend: str, placement: Placement, pass_env: tuple[str, ...] = (),
                       extra: dict[str, str] | None = None,
                       shell: dict[str, str] | None = None) -> dict[str, str]:
    """The whole environment of a worker, built here: the variables passed through from the
    shell (PASS_ENV and the suite's `pass_env`), then what the runtime reads at import —
    threads, affinity, backend switches — and `extra` (a data-parallel worker's cluster
    variables)."""
    shell = os.environ if shell is None else shell
    passed = {k: shell[k] for k in (*PASS_ENV, *pass_env) if k in shell}
    return {**passed, **placement.environment(), **backends.get(backend).environment(),
            **(extra or {})}


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _pump(stream, log, on_event: Callable[[dict[str, Any]], None]) -> None:
    """The worker's stdout: progress events to `on_event`, anything else to its log. The pipe
    is drained to the end even when the log cannot be written (a full disk): a worker whose
    pipe fills would block."""
    for line in stream:
        if line.startswith(PROGRESS_PREFIX):
            try:
                on_event(json.loads(line[len(PROGRESS_PREFIX):]))
                continue
            except ValueError:
                pass
        with contextlib.suppress(OSError):
            log.write(line)
            log.flush()


class Launcher:
    """Spawns, watches, kills and collects worker processes; computes nothing."""

    def __init__(self, topology: Topology, log_dir: Path, python: str | None = None,
                 pass_env: tuple[str, ...] = (), env: dict[str, str] | None = None,
                 cwd: str | None = None):
        self.topology = topology
        self.log_dir = log_dir
        self.python = python  # overrides every backend's interpreter (tests)
        self.pass_env = pass_env  # the suite's extra variables passed through to workers
        self.env = env or {}  # set in every worker (tlbench ab --a-env / --b-env)
        self.cwd = cwd  # where workers start: the `bench` they import (None: the parent's)
        self.log_suffix = ""  # ".r2", ... for the processes of a run's later rounds
        self.running: set[subprocess.Popen] = set()

    def run(self, planned: RunPlan, limits: Limits,
            on_event: Callable[[dict[str, Any]], None] = lambda e: None) -> dict[str, Any]:
        """One planned run: its processes started as the plan says, their records combined."""
        run = planned.run
        base = {**run.to_dict(), "placement": planned.placement.describe()}
        if planned.skip_reason:
            return {**base, "status": "skipped", "reason": planned.skip_reason, "wall_s": 0.0}
        if planned.kind == "single":
            out = self._one(run, planned.group[0], limits, on_event)
            if planned.note:
                out["placement"]["note"] = planned.note
            return out
        if planned.kind == "instances":
            records = self._together(run, planned.group, limits, on_event, {})
            return record.to_dict(record.combine_instances(
                record.parse_run({**base, "status": "ok"}), _parsed(records)))
        cluster = distributed.Cluster(planned.cluster or distributed.local_cluster(
            planned.workers).workers)
        backend = backends.get(run.backend)
        joining = {distributed.JOIN_TIMEOUT_VAR: f"{limits.join_timeout_s:g}"}
        records = self._together(
            run, planned.group, limits, _relabel(on_event, f"{planned.workers} workers"),
            {p.process_id: {**backend.cluster_environment(cluster, p.task_index), **joining}
             for p in planned.group})
        refs = {}
        if all(r["status"] == "ok" for r in records):
            labels = {"alone": "1 worker alone", "one_worker_all_cores": "1 worker, all cores"}
            refs = {p.role: self._one(run, p, limits, _relabel(on_event, labels[p.role]))
                    for p in planned.references}
        combined = record.to_dict(record.combine_workers(
            record.parse_run({**base, "status": "ok"}), _parsed(records), planned.workers,
            {role: record.parse_run(r) for role, r in refs.items()}))
        combined["cluster"] = {"workers": list(cluster.workers),
                               "this_host": [p.task_index for p in planned.group]}
        return combined

    def _together(self, run: Run, processes: tuple[Process, ...], limits: Limits,
                  on_event: Callable[[dict[str, Any]], None],
                  extra_env: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
        """Processes side by side. When one fails the others are stopped: a distributed peer
        would otherwise wait for it forever."""
        abort = threading.Event()

        def one(i: int, process: Process) -> dict[str, Any]:
            out = self._one(run, process, limits, on_event if i == 0 else (lambda e: None),
                            extra_env.get(process.process_id), abort)
            if out["status"] != "ok":
                abort.set()
            return out

        pool = ThreadPoolExecutor(len(processes))
        try:
            futures = [pool.submit(one, i, p) for i, p in enumerate(processes)]
            return [f.result() for f in futures]
        except BaseException:  # Ctrl-C: every worker goes with the suite
            self.kill()
            raise
        finally:
            pool.shutdown(wait=True)

    def _one(self, run: Run, process: Process, limits: Limits,
             on_event: Callable[[dict[str, Any]], None],
             extra_env: dict[str, str] | None = None,
             abort: threading.Event | None = None) -> dict[str, Any]:
        """One worker process; its document merged into the record of its run."""
        backend = backends.get(run.backend)
        placement = process.placement
        sub = dataclasses.replace(run, params=process.params)
        env_vars = worker_environment(run.backend, placement, self.pass_env,
                                      {**self.env, **(extra_env or {})})
        out: dict[str, Any] = {
            **sub.to_dict(),
            "placement": placement.describe(),
            "env": env_vars,
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / (process.process_id.replace("/", "--") + self.log_suffix
                                   + ".log")
        out["log"] = str(log_path)
        # the run's log: a scenario writes its tools' files beside it (LoadGen's logs)
        task = {"run": {**sub.to_dict(), "log": str(log_path)}, "cpus": list(placement.cpus),
                "env_keys": sorted(env_vars)}
        with efficiency.EnergyMeter() as meter:
            doc, outcome, out["wall_s"] = self._process(
                "bench.worker", task, placement, self.python or backend.python, env_vars,
                log_path, limits, on_event, abort)
        out.update(doc or {})
        if outcome is not None or doc is None:
            out["status"] = "failed"
            out.setdefault("error", outcome or "worker wrote no result")
        if out["status"] == "failed":
            out["log_tail"] = _tail(log_path)
        out["energy"] = meter.result()
        return out

    def pretrain(self, model: dict[str, Any], spec: PretrainSpec, seed: int, placement: Placement,
                 limits: Limits, on_event: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Pretraining of `model` as `spec` (a suite's [pretrain]) says (`bench.pretrain`), in
        its own process, pinned and threaded as a worker, with the runtime of PRETRAIN_BACKEND's
        worker but none of oneDNN's verbose lines (not a measurement); its log `pretrain.log`.
        Its facts, `wall_s`, and `error` if it failed."""
        env = worker_environment(PRETRAIN_BACKEND, placement, self.pass_env, self.env)
        env.pop("ONEDNN_VERBOSE", None)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / "pretrain.log"
        doc, cause, wall = self._process(
            "bench.pretrain", {"model": model, "spec": dataclasses.asdict(spec), "seed": seed,
                               "cpus": list(placement.cpus)}, placement,
            self.python or backends.get(PRETRAIN_BACKEND).python, env, log_path, limits,
            on_event)
        out = {**(doc or {}), "wall_s": wall, "log": str(log_path)}
        if cause is not None or doc is None or "error" in doc:
            out["error"] = (doc or {}).get("error") or cause or "pretraining wrote no result"
            out["log_tail"] = _tail(log_path)
        return out

    def _process(self, module: str, task: dict[str, Any], placement: Placement, python: str,
                 env: dict[str, str], log_path: Path, limits: Limits,
                 on_event: Callable[[dict[str, Any]], None],
                 abort: threading.Event | None = None) -> tuple[Any, str | None, float]:
        """`python -m MODULE TASK.json OUT.json`, placed as `placement` says: the document it
        wrote (None if none), the cause of its failure (None on a clean exit), its wall time."""
        with tempfile.TemporaryDirectory(prefix="tlbench-") as tmp:
            task_path, out_path = Path(tmp) / "task.json", Path(tmp) / "out.json"
            task_path.write_text(json.dumps(task))
            cmd = [*placement.command_prefix(self.topology), python, "-m", module,
                   str(task_path), str(out_path)]
            t0 = time.perf_counter()
            cause = self._spawn(cmd, env, log_path, limits, on_event, abort)
            wall = time.perf_counter() - t0
            doc = json.loads(out_path.read_text()) if out_path.exists() else None
        return doc, cause, wall

    def _spawn(self, cmd: list[str], env: dict[str, str], log_path: Path, limits: Limits,
               on_event: Callable[[dict[str, Any]], None],
               abort: threading.Event | None = None) -> str | None:
        """Run the worker; return None on a clean exit, else the cause of failure."""
        with open(log_path, "w", encoding="utf-8") as log:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env, text=True,
                                    start_new_session=True, stdin=subprocess.DEVNULL,
                                    cwd=self.cwd)
            self.running.add(proc)
            joining: dict[str, float] = {}  # the engine's join phases, when they began

            def seen(event: dict[str, Any]) -> None:
                if event.get("phase") in (distributed.JOINING, distributed.JOINED):
                    joining[event["phase"]] = time.monotonic()
                on_event(event)

            pump = threading.Thread(target=_pump, args=(proc.stdout, log, seen), daemon=True)
            pump.start()
            try:
                cause = self._watch(proc, limits, abort, joining)
            except BaseException:  # Ctrl-C or SIGTERM of the suite: the worker goes with it
                self.kill()
                proc.wait()
                raise
            finally:
                if proc.poll() is None:
                    _kill_group(proc)
                    proc.wait()
                pump.join(timeout=5)
                self.running.discard(proc)
        if cause is not None:
            return cause
        if proc.returncode < 0:
            return f"worker killed by signal {signal.Signals(-proc.returncode).name}"
        if proc.returncode != 0:
            return f"worker exited with status {proc.returncode}"
        return None

    @staticmethod
    def _watch(proc: subprocess.Popen, limits: Limits, abort: threading.Event | None = None,
               joining: dict[str, float] | None = None) -> str | None:
        """Wait for the worker, enforcing the time limit and the memory cap; None if it exited.
        `abort` set (a worker beside this one failed) stops it too, and so does a data-parallel
        worker's join that has not ended within the join timeout (`joining`: when its phases
        began).

        Memory is the resident set of the worker's whole process tree, polled: address-space
        limits (RLIMIT_AS) cannot be used, TensorFlow reserves far more than it touches.
        """
        deadline = time.monotonic() + limits.timeout_s
        cap = limits.max_memory_gb * 2**30 if limits.max_memory_gb else None
        while True:
            try:
                proc.wait(timeout=POLL_S)
                return None
            except subprocess.TimeoutExpired:
                pass
            if abort is not None and abort.is_set():
                return "stopped: another worker of this run failed"
            if time.monotonic() > deadline:
                return f"timed out after {limits.timeout_s:g} s (raise timeout_s in the suite)"
            began = (joining or {}).get(distributed.JOINING)
            if (began is not None and distributed.JOINED not in joining and time.monotonic()
                    > began + limits.join_timeout_s + distributed.JOIN_MARGIN_S):
                return (f"did not join the cluster within join_timeout_s = "
                        f"{limits.join_timeout_s:g} s: a peer that never started, a port "
                        f"taken on task 0's host or hosts that cannot reach each other (check "
                        f"the cluster file; raise join_timeout_s for slow starts)")
            if cap is not None:
                rss = _tree_rss(proc.pid)
                if rss > cap:
                    return (f"exceeded the memory cap: {rss / 2**30:.2f} GB resident > "
                            f"max_memory_gb = {limits.max_memory_gb:g} (raise it, or lower "
                            f"the batch / micro_batch)")

    def kill(self) -> None:
        """Kill every running worker and its whole process group."""
        for proc in list(self.running):
            _kill_group(proc)


def _parsed(records: list[dict[str, Any]]) -> list[record.Record]:
    return [record.parse_run(r) for r in records]


def _relabel(on_event: Callable[[dict[str, Any]], None], label: str
             ) -> Callable[[dict[str, Any]], None]:
    """Progress events of one part of a run, their phase prefixed with the part's name."""
    return lambda event: on_event({**event, "phase": f"{label}: {event['phase']}"})


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
