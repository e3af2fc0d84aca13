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

from bench import backends, distributed, efficiency, machine
from bench.measure import summarize
from bench.pinning import Placement, Topology, divide
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
                 python: str | None = None, cluster: distributed.Cluster | None = None):
        self.topology = topology
        self.log_dir = log_dir
        self.isa = isa
        self.python = python  # overrides every backend's interpreter (tests)
        self.cluster = cluster  # several hosts: this one runs only its own worker
        self.running: set[subprocess.Popen] = set()

    def run(self, run: Run, placement: Placement, limits: Limits,
            on_event: Callable[[dict[str, Any]], None] = lambda e: None) -> dict[str, Any]:
        """One planned run: one worker; for inference with `instances:K`, K workers side by
        side, each on its own cores, whose throughputs add up; for training with `workers = N`,
        N data-parallel workers and their references."""
        backend = backends.get(run.backend)
        reason = backend.skip_reason(run.scenario, self.isa)
        if reason:
            return {**run.to_dict(), "placement": placement.describe(), "status": "skipped",
                    "reason": reason, "wall_s": 0.0}
        if run.scenario == "full_training" and run.params["workers"] > 1:
            return self._distributed(run, placement, limits, on_event)
        parts = placement.split() if run.scenario == "inference" else [placement]
        if len(parts) == 1:
            record = self._one(run, placement, limits, on_event, run.run_id)
            if placement.instances > 1:
                record["placement"]["note"] = ("instances apply to inference; this run used "
                                               "every core of the placement in one worker")
            return record
        records = self._together(run, [(f"{run.run_id}#{i}", part, {})
                                       for i, part in enumerate(parts)], limits, on_event)
        return self._combine(run, placement, records)

    def _together(self, run: Run, workers: list[tuple[str, Placement, dict[str, str]]],
                  limits: Limits, on_event: Callable[[dict[str, Any]], None]
                  ) -> list[dict[str, Any]]:
        """Workers side by side, each (name, placement, extra environment). When one fails
        the others are stopped: a distributed peer would otherwise wait for it forever."""
        abort = threading.Event()

        def one(i: int, name: str, part: Placement, env: dict[str, str]) -> dict[str, Any]:
            record = self._one(run, part, limits, on_event if i == 0 else (lambda e: None), name,
                               env, abort)
            if record["status"] != "ok":
                abort.set()
            return record

        pool = ThreadPoolExecutor(len(workers))
        try:
            futures = [pool.submit(one, i, *w) for i, w in enumerate(workers)]
            return [f.result() for f in futures]
        except BaseException:  # Ctrl-C: every worker goes with the suite
            self.kill()
            raise
        finally:
            pool.shutdown(wait=True)

    def _distributed(self, run: Run, placement: Placement, limits: Limits,
                     on_event: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """`workers = N` training on MultiWorkerMirroredStrategy, then the references its
        scaling is measured against, right after on this machine: one worker alone on one
        worker's cores with one worker's share of the batch and, on one host, one worker on
        all the placement's cores with the global batch."""
        n = run.params["workers"]
        if self.cluster is not None:
            cluster = self.cluster
            local = [(cluster.task_index, placement)]
        else:
            cluster = distributed.local_cluster(n)
            local = list(enumerate(divide(placement, n, self.topology)))
        records = self._together(
            run, [(f"{run.run_id}#{i}", part, {"TF_CONFIG": cluster.tf_config(i)})
                  for i, part in local], limits, _relabel(on_event, f"{n} workers"))
        record = self._combine_workers(run, placement, records, cluster, [i for i, _ in local])
        if record["status"] != "ok":
            return record
        # references time whole updates over a window, whatever the suite's measure
        reference = {**run.params, "workers": 1, "measure": "projected", "target_accuracy": 0.0}
        share = {**reference, "batch_size": run.params["batch_size"] // n}
        alone = self._one(
            dataclasses.replace(run, params=share), local[0][1], limits,
            _relabel(on_event, "1 worker alone"), f"{run.run_id}@alone")
        whole = None if self.cluster is not None else self._one(
            dataclasses.replace(run, params=reference), placement, limits,
            _relabel(on_event, "1 worker, all cores"), f"{run.run_id}@1worker")
        record["scaling"] = distributed.scaling(records, alone, whole, n)
        record["wall_s"] += sum(ref["wall_s"] for ref in (alone, whole) if ref is not None)
        return record

    def _one(self, run: Run, placement: Placement, limits: Limits,
             on_event: Callable[[dict[str, Any]], None], name: str,
             extra_env: dict[str, str] | None = None,
             abort: threading.Event | None = None) -> dict[str, Any]:
        """One worker process on `placement`, its document merged into the run's record."""
        backend = backends.get(run.backend)
        env_vars = {**worker_environment(run, placement), **(extra_env or {})}
        record: dict[str, Any] = {
            **run.to_dict(),
            "placement": placement.describe(),
            "env": env_vars,
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / (name.replace("/", "--") + ".log")
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
                                      on_event, onednn, abort)
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

    def _group(self, run: Run, placement: Placement, records: list[dict[str, Any]],
               key: str, names: list[str]) -> dict[str, Any]:
        """Workers that ran side by side → the start of one record: each kept under `key`, their
        resident memory summed; the group failed if one of them did. Package energy is one
        worker's reading (they ran at once, so each meter saw the same package)."""
        record = {**run.to_dict(), "placement": placement.describe(),
                  key: [{k: r.get(k) for k in ("status", "error", "placement",
                                               "placement_obtained", "derived", "log", "wall_s",
                                               "peak_rss_mb")} for r in records],
                  "wall_s": max(r["wall_s"] for r in records),
                  "energy": records[0].get("energy"),
                  "peak_rss_mb": sum(r.get("peak_rss_mb", 0) for r in records)}
        failed = [f"{name}: {r.get('error')}" for name, r in zip(names, records, strict=True)
                  if r["status"] != "ok"]
        if failed:
            failed.sort(key=lambda text: "another worker" in text)  # the cause first
            first = next(r for r in records if r["status"] != "ok")
            record.update(status="failed", error="; ".join(failed),
                          log_tail=first.get("log_tail", ""))
        return record

    def _summed(self, run: Run, placement: Placement, records: list[dict[str, Any]],
                keys: tuple[str, ...]) -> dict[str, Any]:
        """The first worker's derived figures with `keys` summed over all, and the efficiency
        of their sum on the placement's cores."""
        derived = {**records[0]["derived"],
                   **{key: sum(r["derived"][key] for r in records) for key in keys}}
        return {"status": "ok", "derived": derived,
                "efficiency": efficiency.of_run(
                    derived["gflops_per_s"], backends.get(run.backend).precision,
                    machine.current_peak(), efficiency.cores_used(self.topology, placement.cpus))}

    def _combine(self, run: Run, placement: Placement, records: list[dict[str, Any]]
                 ) -> dict[str, Any]:
        """K concurrent inference instances → one record: throughputs summed, latency samples
        pooled, each instance kept."""
        record = self._group(run, placement, records, "instances",
                             [f"instance {i}" for i in range(len(records))])
        if record.get("status") == "failed":
            return record
        first = records[0]
        pooled = [x for r in records for x in r["samples"]["latency_bs1"]]
        lat = summarize(pooled)
        record.update({k: first[k] for k in ("model", "data", "runtime", "parity") if k in first})
        record.update(self._summed(run, placement, records,
                                   ("images_per_s", "bs1_images_per_s", "gflops_per_s")),
                      samples={"latency_bs1": pooled}, stats={"latency_bs1": lat})
        record["derived"].update(latency_ms_p50=lat["median"] * 1e3,
                                 latency_ms_p90=lat["p90"] * 1e3,
                                 latency_ms_p99=lat["p99"] * 1e3)
        return record

    def _combine_workers(self, run: Run, placement: Placement, records: list[dict[str, Any]],
                         cluster: distributed.Cluster, indexes: list[int]) -> dict[str, Any]:
        """This host's workers of one distributed run → one record, each worker kept. Updates
        are synchronous, so the slowest worker's samples, projection and throughput are the
        run's (every worker holds the same weights): its img/s and GFLOP/s, once per worker of
        this host, give this host's figures."""
        record = self._group(run, placement, records, "workers",
                             [f"worker {i}" for i in indexes])
        record["cluster"] = {"workers": list(cluster.workers), "this_host": indexes}
        if record.get("status") == "failed":
            return record
        slowest = distributed.pace(records)
        record.update({k: v for k, v in slowest.items()
                       if k not in ("placement", "log", "wall_s", "energy", "peak_rss_mb")})
        record.update(self._summed(run, placement, [slowest] * len(records),
                                   ("images_per_s", "gflops_per_s")))
        return record

    def _spawn(self, cmd: list[str], env: dict[str, str], log_path: Path, limits: Limits,
               on_event: Callable[[dict[str, Any]], None], onednn: list[str],
               abort: threading.Event | None = None) -> str | None:
        """Run the worker; return None on a clean exit, else the cause of failure."""
        with open(log_path, "w", encoding="utf-8") as log:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env, text=True,
                                    start_new_session=True, stdin=subprocess.DEVNULL)
            self.running.add(proc)
            pump = threading.Thread(target=_pump, args=(proc.stdout, log, on_event, onednn),
                                    daemon=True)
            pump.start()
            try:
                cause = self._watch(proc, limits, abort)
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
    def _watch(proc: subprocess.Popen, limits: Limits,
               abort: threading.Event | None = None) -> str | None:
        """Wait for the worker, enforcing the time limit and the memory cap; None if it exited.
        `abort` set (a worker beside this one failed) stops it too.

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


def _relabel(on_event: Callable[[dict[str, Any]], None], label: str
             ) -> Callable[[dict[str, Any]], None]:
    """Progress events of one part of a run, their phase prefixed with the part's name."""
    return lambda event: on_event({**event, "phase": f"{label}: {event['phase']}"})


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
