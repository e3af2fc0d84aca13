"""The contract's figures, defined once: each scenario's own (declared with it, in
bench.scenarios: from its series, the one-off measurements and the run's parameters), the
kernels' share in the precision asked, and a run's figures over its worker processes
(`figures`). See `bench.record`."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from bench import scenarios
from bench.record.figure import HIGHER, NEITHER, Figure
from bench.record.schema import Json, Record, _record, cached, parse_run

# The runtime precisions (OpenVINO's runtimePrecision) that count as the precision a run asked
# for; a run whose profiled pass spent less than MIN_KERNEL_SHARE of its time in them is flagged:
# it measured other kernels than it is labelled with (e.g. f32 where int8 was asked).
KERNEL_PRECISIONS = {"fp32": ("f32",), "bf16": ("bf16",), "int8": ("i8", "u8")}
MIN_KERNEL_SHARE = 0.5
KERNEL_SHARE = "time in precision asked"


def precision_share(kernels: dict[str, Any] | None) -> float | None:
    """The share of a profiled pass's node time in the precision it asked for (None where the
    runtime profiled nothing)."""
    kernels = kernels or {}
    spent = kernels.get("precision_s")
    if not spent or kernels.get("asked") not in KERNEL_PRECISIONS:
        return None
    asked = KERNEL_PRECISIONS[kernels["asked"]]
    total = sum(spent.values())
    return sum(s for p, s in spent.items() if p.lower() in asked) / total if total else None


def _kernels(record: Record) -> list[Figure]:
    kernels = record.kernels or {}
    if kernels.get("asked") not in KERNEL_PRECISIONS or not kernels.get("precision_s"):
        return []
    asked = KERNEL_PRECISIONS[kernels["asked"]]
    share = precision_share(kernels)
    return [Figure(KERNEL_SHARE, share, "", NEITHER,
                   note=f"share of the profiled pass's node time in {'/'.join(asked)} nodes "
                        f"({kernels['asked']} asked)")]


def relative_speed(new: Figure, base: Figure) -> float | None:
    """How many times faster `new` is than `base` (>1: faster), whichever way the figure goes."""
    if not (new.value and base.value) or new.better == NEITHER:
        return None
    return new.value / base.value if new.better == HIGHER else base.value / new.value


def kernel_mismatch(run: Record | dict[str, Any]) -> str | None:
    """Why a run's kernels do not match the precision it asked for (None when they do, or when
    its runtime did not profile them)."""
    return kernels_problem(_record(run).kernels)


def kernels_problem(kernels: dict[str, Any] | None) -> str | None:
    """Why a profiled pass (a record's `kernels`) did not run the precision it asked for."""
    share = precision_share(kernels)
    if share is None or share >= MIN_KERNEL_SHARE:
        return None
    spent = kernels["precision_s"]
    total = sum(spent.values()) or 1.0
    top = ", ".join(f"{p} {s / total:.0%}" for p, s in
                    sorted(spent.items(), key=lambda kv: -kv[1])[:3])
    return (f"asked for {kernels['asked']} but spent {share:.0%} of its profiled "
            f"time in {kernels['asked']} kernels ({top})")


def rounds(run: Record | dict[str, Any]) -> list[Record]:
    """The worker processes of a run, round by round (one unless the suite had repeats)."""
    return cached(_record(run), "_rounds", lambda record: [
        dataclasses.replace(record, repeats=()),
        *(parse_run(r, f"{record.run_id} repeat") for r in record.repeats)])


# What else took a run's CPUs during its scenario, and the median share of its processes' CPU
# time at which a run is disturbed: flagged in the reports, never judged by compare.
# - steal (the hypervisor): on the 2-vCPU dev VM, training ran 5x slower at 14-24% steal — far
#   more than the share stolen, as two threads that wait for each other both stall when either
#   vCPU does, and more than the single-threaded reference kernel showed. Interleaved rounds put
#   such a spell on either side.
# - foreign_load (other processes): a quiet machine reads well under 1%, two suites on the same
#   two CPUs about half each (docs/2026-12-06-zen3-cpu-classes.md).
DISTURBED = {"steal": 0.05, "foreign_load": 0.05}
DISTURBANCES = tuple(DISTURBED)


def disturbance_shares(run: Record | dict[str, Any], kind: str) -> list[float]:
    """The share of its CPUs' time each worker process of a run lost to `kind` (one of
    DISTURBANCES): its rounds, and their processes side by side (instances, data-parallel
    workers)."""
    return [s["share"] for rec in rounds(run)
            for s in (getattr(rec, kind), *(p.get(kind) for p in rec.processes)) if s]


def disturbance(run: Record | dict[str, Any], kind: str) -> float | None:
    """The median share of its CPUs' time a run's processes lost to `kind` (None: not
    recorded); at DISTURBED[kind] or more the run is disturbed."""
    shares = disturbance_shares(run, kind)
    return float(np.median(shares)) if shares else None


def disturbed(run: Record | dict[str, Any], kind: str) -> float | None:
    """The median share of its CPUs' time a run's processes lost to `kind` when it is
    DISTURBED[kind] or more (the run is disturbed), else None."""
    share = disturbance(run, kind)
    return share if share is not None and share >= DISTURBED[kind] else None


def references(run: Record | dict[str, Any]) -> list[Json | None]:
    """Each ok round's reference (bench.measure.reference): every reading of the machine's
    speed beside that round's scenario (each CPU of each process side by side, before and
    after) and the kernels; None for a round that has none (a result from before the
    reference kernel, or a process that did not record it)."""
    out: list[Json | None] = []
    for rec in rounds(run):
        if rec.status != "ok":
            continue
        refs = [r for r in (rec.reference, *(p.get("reference") for p in rec.processes)) if r]
        out.append(None if not refs else {
            "readings": [x for r in refs for side in ("before", "after")
                         for x in r[side]["per_cpu"].values()],
            "kernels": sorted({r["kernel"] for r in refs})})
    return out


def samples(run: Record | dict[str, Any], series: str) -> np.ndarray:
    """The per-sample values a judged figure is the median of (img/s, or ms for latency)."""
    record = _record(run)
    return scenarios.get(record.scenario).samples(record, series)


def _figures_of(record: Record) -> dict[str, Figure]:
    return {f.name: f for f in (*scenarios.get(record.scenario).figures(record),
                                *_kernels(record))}


def process_figures(run: Record | dict[str, Any]) -> list[dict[str, Figure]]:
    """Each ok process's own figures, round by round."""
    return [_figures_of(r) for r in rounds(run) if r.status == "ok"]


def figures(run: Record | dict[str, Any]) -> dict[str, Figure]:
    """Every figure of an ok run, by name ({} for a run that did not succeed). With repeats,
    each figure is the median of the processes' own (one definition: the per-process figure),
    with their spread; a projected interval is then the processes' spread, not one's window.
    Computed once per record."""
    return dict(cached(_record(run), "_figures", _run_figures))


def _run_figures(record: Record) -> dict[str, Figure]:
    if record.status != "ok":
        return {}
    if not record.repeats:
        return _figures_of(record)
    per = process_figures(record)
    out = {}
    for name, first in per[0].items():
        values = [p[name].value for p in per if name in p and p[name].value is not None]
        if not values:
            out[name] = first
            continue
        out[name] = dataclasses.replace(
            first, value=float(np.median(values)), low=None, high=None,
            processes=len(values), spread=(min(values), max(values)),
            note=f"median of {len(values)} processes; {first.note}".rstrip("; "))
    return out


def value(run: Record | dict[str, Any], name: str) -> float | None:
    figure = figures(run).get(name)
    return None if figure is None else figure.value


def headline(run: Record | dict[str, Any]) -> Figure | None:
    return next((f for f in figures(run).values() if f.headline), None)


def headline_name(scenario: str, params: dict[str, Any]) -> str:
    """The headline figure's name for a scenario, without a run (for table headers)."""
    return scenarios.get(scenario).headline(params)


def judged(run: Record | dict[str, Any]) -> list[Figure]:
    """The figures compare tests, each on its series."""
    return [f for f in figures(run).values() if f.series is not None]


# ---------------------------------------------------------------------------------------------
# Figures across runs and machines, defined once as well


def geometric_mean(ratios: list[float]) -> float | None:
    """The geometric mean of ratios (as OpenBenchmarking and Geekbench ML summarise a machine
    against a reference); None for none."""
    ratios = [r for r in ratios if r]
    return math.exp(sum(math.log(r) for r in ratios) / len(ratios)) if ratios else None


def cores(run: Record | dict[str, Any]) -> int | None:
    """Physical cores a run had: its peak's count, else its placement's CPUs."""
    record = _record(run)
    return (record.peak or {}).get("cores") or len((record.placement or {})
                                                   .get("cpus", [])) or None


def per_core(run: Record | dict[str, Any], ghz: float | None) -> tuple[float | None,
                                                                      float | None]:
    """A run's headline per physical core, and per core per GHz of its machine's clock."""
    figure, n = headline(run), cores(run)
    if figure is None or figure.value is None or not n:
        return None, None
    return figure.value / n, figure.value / n / ghz if ghz else None


def kernel_time_shares(kernels: dict[str, Any]) -> dict[str, float]:
    """Each implementation's share of a profiled pass's node time (OpenVINO's), largest
    first."""
    spent: dict[str, float] = {}
    for impls in kernels["node_types"].values():
        for impl, facts in impls.items():
            spent[impl] = spent.get(impl, 0.0) + facts["seconds"]
    total = sum(spent.values()) or 1.0
    return {impl: s / total for impl, s in sorted(spent.items(), key=lambda kv: -kv[1])}
