"""Spawn one fresh worker process per run, with its environment built here, explicitly.

The worker runs in its own session (process group) so that a timeout or a Ctrl-C of the suite
kills it and everything it started. Whatever happens to a worker — a traceback, a signal, a
timeout, no result document — becomes a `failed` run with the cause and the tail of its log; the
suite goes on with the next run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench import backends, efficiency, machine
from bench.pinning import Placement, Topology
from bench.plan import Run
from bench.worker import PROGRESS_PREFIX

LOG_TAIL_LINES = 30
POLL_S = 0.2  # how often a running worker's clock and memory are checked


@dataclass(frozen=True)
class Limits:
    timeout_s: float
    max_memory_gb: float = 0.0  # 0: no cap


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


def worker_environment(run: Run, placement: Placement) -> dict[str, str]:
    """The variables a worker's runtime reads at import: threads, affinity, backend switches."""
    return {**placement.environment(), **backends.get(run.backend).environment()}


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def onednn_summary(lines: list[str]) -> dict[str, Any]:
    """oneDNN's verbose lines → its version, the ISA it dispatched to, implementations used.

    With ONEDNN_VERBOSE=profile_create oneDNN prints an info header (version, `isa:`) and one
    line per primitive created, naming its implementation, e.g.
    `brg_conv_fwd:avx512_core` or `brg_conv_fwd:avx512_core_amx`: proof of the kernels used.
    """
    info: dict[str, Any] = {"implementations": {}}
    for line in lines:
        fields = line.rstrip("\n").split(",")
        if len(fields) > 1 and fields[1] == "v1":  # oneDNN >= 3.4 adds a format version field
            del fields[1]
        if len(fields) > 2 and fields[1] == "info":
            text = ",".join(fields[2:])
            if text.startswith("oneDNN v"):
                info["version"] = text.split(" (")[0]
            elif text.startswith("cpu,isa:"):
                info["isa"] = text.removeprefix("cpu,isa:")
        elif len(fields) > 5 and fields[1] == "primitive" and fields[2].startswith("create"):
            impl = fields[5]
            info["implementations"][impl] = info["implementations"].get(impl, 0) + 1
    return info


def _pump(stream, log, on_event: Callable[[dict[str, Any]], None],
          onednn: list[str]) -> None:
    for line in stream:
        if line.startswith("onednn_verbose,"):
            onednn.append(line)  # summarised, not logged: thousands of lines
        elif line.startswith(PROGRESS_PREFIX):
            try:
                on_event(json.loads(line[len(PROGRESS_PREFIX):]))
            except ValueError:
                log.write(line)
        else:
            log.write(line)
            log.flush()


class Launcher:
    def __init__(self, topology: Topology, log_dir: Path, isa: dict[str, bool],
                 python: str | None = None):
        self.topology = topology
        self.log_dir = log_dir
        self.isa = isa
        self.python = python  # overrides every backend's interpreter (tests)
        self.current: subprocess.Popen | None = None

    def run(self, run: Run, placement: Placement, limits: Limits,
            on_event: Callable[[dict[str, Any]], None] = lambda e: None) -> dict[str, Any]:
        backend = backends.get(run.backend)
        env_vars = worker_environment(run, placement)
        record: dict[str, Any] = {
            **run.to_dict(),
            "placement": {"asked": placement.asked, "cpus": list(placement.cpus),
                          "threads": placement.threads, "numa_nodes": list(placement.nodes)},
            "env": env_vars,
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        reason = backend.skip_reason(run.scenario, self.isa)
        if reason:
            return {**record, "status": "skipped", "reason": reason, "wall_s": 0.0}
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / (run.run_id.replace("/", "--") + ".log")
        record["log"] = str(log_path)
        with tempfile.TemporaryDirectory(prefix="tlbench-") as tmp:
            task_path, out_path = Path(tmp) / "task.json", Path(tmp) / "out.json"
            task_path.write_text(json.dumps({"run": run.to_dict(), "cpus": list(placement.cpus),
                                             "env_keys": sorted(env_vars)}))
            cmd = [*placement.command_prefix(self.topology), self.python or backend.python,
                   "-m", "bench.worker", str(task_path), str(out_path)]
            t0 = time.perf_counter()
            onednn: list[str] = []
            with efficiency.EnergyMeter() as meter:
                outcome = self._spawn(cmd, {**os.environ, **env_vars}, log_path, limits,
                                      on_event, onednn)
            record["wall_s"] = time.perf_counter() - t0
            doc = json.loads(out_path.read_text()) if out_path.exists() else None
        record.update(doc or {})
        if onednn:
            record["onednn"] = onednn_summary(onednn)
        if outcome is not None or doc is None:
            record["status"] = "failed"
            record.setdefault("error", outcome or "worker wrote no result")
        if record["status"] == "failed":
            record["log_tail"] = _tail(log_path)
        record["energy"] = meter.result()
        if record["status"] == "ok":
            record["efficiency"] = efficiency.of_run(
                record.get("derived", {}).get("gflops_per_s"), backend.precision,
                machine.current_peak(), efficiency.cores_used(self.topology, placement.cpus))
        return record

    def _spawn(self, cmd: list[str], env: dict[str, str], log_path: Path, limits: Limits,
               on_event: Callable[[dict[str, Any]], None], onednn: list[str]) -> str | None:
        """Run the worker; return None on a clean exit, else the cause of failure."""
        with open(log_path, "w", encoding="utf-8") as log:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env, text=True,
                                    start_new_session=True, stdin=subprocess.DEVNULL)
            self.current = proc
            pump = threading.Thread(target=_pump, args=(proc.stdout, log, on_event, onednn),
                                    daemon=True)
            pump.start()
            try:
                cause = self._watch(proc, limits)
            except BaseException:  # Ctrl-C or SIGTERM of the suite: the worker goes with it
                self.kill()
                proc.wait()
                raise
            finally:
                if proc.poll() is None:
                    self.kill()
                    proc.wait()
                pump.join(timeout=5)
                self.current = None
        if cause is not None:
            return cause
        if proc.returncode < 0:
            return f"worker killed by signal {signal.Signals(-proc.returncode).name}"
        if proc.returncode != 0:
            return f"worker exited with status {proc.returncode}"
        return None

    @staticmethod
    def _watch(proc: subprocess.Popen, limits: Limits) -> str | None:
        """Wait for the worker, enforcing the time limit and the memory cap; None if it exited.

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
            if time.monotonic() > deadline:
                return f"timed out after {limits.timeout_s:g} s (raise timeout_s in the suite)"
            if cap is not None:
                rss = _tree_rss(proc.pid)
                if rss > cap:
                    return (f"exceeded the memory cap: {rss / 2**30:.2f} GB resident > "
                            f"max_memory_gb = {limits.max_memory_gb:g} (raise it, or lower "
                            f"the batch / micro_batch)")

    def kill(self) -> None:
        """Kill the running worker and its whole process group."""
        proc = self.current
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
