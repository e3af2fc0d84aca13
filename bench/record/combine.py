"""Several processes of one run → one record, pure: inference instances side by side,
data-parallel workers. See `bench.record`."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from bench.record.figures import value
from bench.record.schema import Json, Record, RecordError, Series, _record, parse, to_dict
from bench.scenarios.full_training import FullTrainingSpec

# ---------------------------------------------------------------------------------------------
# Several processes → one record (pure)


def harmonic(series: list[Series], work: float) -> Series:
    """Side-by-side processes' throughput series as one: the k-th steady samples of every
    process run at about the same time, so the machine's rate at that moment is the sum of
    their rates; the combined sample is the time `work` images took at that summed rate. The
    first call is the slowest first call; warm-up stays with each process."""
    n = min(len(s.samples) for s in series)
    if n == 0:
        raise RecordError("a process side by side has no steady throughput samples")
    rates = sum(s.work / np.asarray(s.samples[:n], dtype=float) for s in series)
    first = max((s.first for s in series if s.first is not None), default=None)
    return Series.of(work, first, [], list(work / rates), per=series[0].per)


def pooled(series: list[Series]) -> Series:
    """Latency samples of side-by-side processes, pooled (each sample is still one call)."""
    first = max((s.first for s in series if s.first is not None), default=None)
    return Series.of(series[0].work, first, [], [x for s in series for x in s.samples])


_KEEP = ("status", "error", "placement", "placement_obtained", "log", "wall_s", "peak_rss_mb",
         "series", "distributed", "measured", "steal", "foreign_load", "reference")


def _processes(records: list[Record]) -> tuple[Json, ...]:
    return tuple({k: to_dict(getattr(r, k)) for k in _KEEP if getattr(r, k) not in (None, {})}
                 for r in records)


def _group_failure(records: list[Record], names: list[str]) -> dict[str, Any] | None:
    failed = [f"{n}: {r.error}" for n, r in zip(names, records, strict=True) if r.status != "ok"]
    if not failed:
        return None
    failed.sort(key=lambda text: "another worker" in text)  # the cause first
    first = next(r for r in records if r.status != "ok")
    return {"status": "failed", "error": "; ".join(failed), "log_tail": first.log_tail}


def _summed_peak(records: list[Record]) -> Json | None:
    peaks = [r.peak for r in records]
    if not all(p and p.get("gflops") for p in peaks):
        return peaks[0]
    return {**peaks[0], "gflops": sum(p["gflops"] for p in peaks),
            "cores": sum(p.get("cores", 0) for p in peaks),
            "basis": f"{len(peaks)} processes: " + str(peaks[0].get("basis", ""))}


def combine_instances(base: Record, records: list[Record]) -> Record:
    """K inference instances side by side → one run: latency pooled, throughput summed."""
    fields: dict[str, Any] = {
        "processes": _processes(records), "wall_s": max(r.wall_s for r in records),
        "peak_rss_mb": sum(r.peak_rss_mb or 0 for r in records), "energy": records[0].energy,
        "note": f"{len(records)} instances side by side: latency pooled, throughput summed"}
    failure = _group_failure(records, [f"instance {i}" for i in range(len(records))])
    if failure:
        return dataclasses.replace(base, **fields, **failure)
    first = records[0]
    name = f"throughput_bs{base.params['batch_size']}"
    series = {"latency_bs1": pooled([r.series["latency_bs1"] for r in records]),
              name: harmonic([r.series[name] for r in records],
                             first.series[name].work)}
    return dataclasses.replace(
        base, **fields, status="ok", series=series, peak=_summed_peak(records),
        **{k: getattr(first, k) for k in ("model", "data", "runtime", "parity", "throughput",
                                          "onednn", "placement_obtained", "env", "log")})


def pace(records: list[Record]) -> Record:
    """The worker that sets a synchronous run's pace: the slowest whole update."""
    return min(records, key=lambda r: value(r, "train img/s"))


def combine_workers(base: Record, records: list[Record], workers: int,
                    references: dict[str, Record]) -> Record:
    """A data-parallel run's workers (those of this host) → one run at the slowest worker's
    pace: its micro-steps carry the global batch (`workers` x micro-batch) and its update
    (all-reduce included), each worker kept, and the scaling references beside. Its wall time
    is the workers' side by side, then each reference's alone."""
    fields: dict[str, Any] = {
        "processes": _processes(records),
        "wall_s": max(r.wall_s for r in records) + sum(r.wall_s for r in references.values()),
        "peak_rss_mb": sum(r.peak_rss_mb or 0 for r in records), "energy": records[0].energy}
    failure = _group_failure(records, [f"worker {(r.distributed or {}).get('task_index', i)}"
                                       for i, r in enumerate(records)])
    if failure:
        return dataclasses.replace(base, **fields, **failure)
    slowest = pace(records)
    micro = slowest.series["micro_step"]
    series = {**slowest.series,
              "micro_step": dataclasses.replace(micro, work=micro.work * workers)}
    refs = {name: to_dict(r) for name, r in references.items()}
    kept = {f.name: getattr(slowest, f.name) for f in dataclasses.fields(slowest)
            if f.name not in ("run_id", "placement", "log", "wall_s", "energy", "peak_rss_mb",
                              "series", "processes", "references", "peak", "distributed")}
    peak = _summed_peak(records) if len(records) == workers else slowest.peak
    if peak and peak.get("gflops") and len(records) != workers:  # one host of a cluster
        peak = {**peak, "gflops": peak["gflops"] * workers,
                "basis": f"{workers} hosts' workers, each as this one: {peak.get('basis')}"}
    return dataclasses.replace(base, **{**kept, **fields}, series=series, references=refs,
                               peak=peak, distributed={**(slowest.distributed or {}),
                                                       "pace_worker": (slowest.distributed
                                                                       or {}).get("task_index")})


def worker_step_s(record: Record | dict[str, Any]) -> dict[str, float]:
    """Each worker's whole-update step time (a data-parallel run), by task index."""
    rec = _record(record)
    out = {}
    for proc in rec.processes:
        if proc.get("status") != "ok":
            continue
        sub = parse(Record, {"run_id": rec.run_id, "backend": rec.backend,
                             "scenario": rec.scenario, "params": rec.params,
                             **{k: proc[k] for k in ("status", "series", "measured")
                                if k in proc}}, "process")
        task = str((proc.get("distributed") or {}).get("task_index", len(out)))
        out[task] = FullTrainingSpec(**rec.params).worker_batch / value(sub, "train img/s")
    return out
