"""The contract's figures, defined once: each scenario's from its series, the one-off
measurements and the run's parameters (`figures`). See `bench.record`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.measure import batch_means_interval
from bench.record.schema import Json, Record, Series, _record, parse_run
from bench.suite import FullTrainingSpec

TRAIN_FLOPS_PER_FORWARD = 3  # forward + backward ≈ 3 forward passes
HIGHER, LOWER, NEITHER = "higher", "lower", "neither"


# ---------------------------------------------------------------------------------------------
# Figures, defined once


@dataclass(frozen=True)
class Figure:
    """One figure of a run: its value, unit, which way is better, and what it is judged on."""

    name: str
    value: float | None
    unit: str
    better: str  # HIGHER, LOWER, or NEITHER (a fact, not a speed)
    series: str | None = None  # the series compare judges it on; None: shown, not judged
    kind: str = "measured"  # or "projected"
    low: float | None = None  # a projected figure's interval
    high: float | None = None
    headline: bool = False  # the one figure a run's scenario is summarised by
    note: str = ""
    processes: int = 1  # worker processes the value is the median over (repeats)
    spread: tuple[float, float] | None = None  # their lowest and highest value

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, "")}
        if self.spread is not None:
            out["spread"] = list(self.spread)
        return out


def _median(x: np.ndarray) -> float:
    return float(np.median(x))


def samples(run: Record | dict[str, Any], series: str) -> np.ndarray:
    """The per-sample values a judged figure is the median of (img/s, or ms for latency)."""
    return _SAMPLES[_record(run).scenario](_record(run), series)


def _series(record: Record, name: str) -> Series:
    if name.startswith("stage "):
        return record.stages[int(name.split()[1]) - 1].series
    return record.series[name]


def _update_share(record: Record) -> float:
    """Each micro-step's share of one update (the optimizer step and its all-reduce)."""
    update = record.series.get("update")
    if update is None or not update.samples:
        return 0.0
    return _median(np.asarray(update.samples)) / accumulation(record.params)


def accumulation(params: dict[str, Any]) -> int:
    """Micro-steps each worker runs per update (the suite's definition)."""
    return FullTrainingSpec(**params).accumulation


def _training_samples(record: Record, name: str) -> np.ndarray:
    """Whole-update img/s of each micro-step: its seconds plus its share of the update."""
    micro = record.series["micro_step"]
    return micro.work / (np.asarray(micro.samples, dtype=float) + _update_share(record))


def _rate_samples(record: Record, name: str) -> np.ndarray:
    return _series(record, name).rates()


def _inference_samples(record: Record, name: str) -> np.ndarray:
    if name == "latency_bs1":
        return np.asarray(record.series[name].samples, dtype=float) * 1e3
    return record.series[name].rates()


_SAMPLES = {"full_training": _training_samples, "transfer": _rate_samples,
            "fine_tune": _rate_samples, "inference": _inference_samples}


def _efficiency(record: Record, gflops: float | None) -> Figure:
    """Achieved GFLOP/s over the peak of the cores the run had, at its precision."""
    peak = (record.peak or {}).get("gflops")
    if gflops is None or not peak:
        reason = (record.peak or {}).get("reason", "no peak recorded")
        return Figure("fraction of peak", None, "", NEITHER, note=reason)
    fraction, basis = gflops / peak, (record.peak or {}).get("basis", "")
    if fraction > 1:  # the stated clock is a floor (a VM's "cpu MHz"): never shown as if not
        basis = (f"above 100% of the stated peak: its clock is a floor, the cores ran faster "
                 f"than it says; {basis}")
    return Figure("fraction of peak", fraction, "", NEITHER, note=basis)


def projection(micro: Series, update: Series | None, spec: dict[str, Any], fixed_s: float,
               window: int | None = None, updates: int | None = None) -> dict[str, Any]:
    """Project the wall time of every step from a steady window.

    total = fixed + (micro-steps - 1) x mean(micro window) + (updates - 1) x mean(updates);
    each mean's interval from batch means (autocorrelated samples), the two half-widths added.
    Means, not medians: a total is a sum, slow steps count.
    """
    planned = FullTrainingSpec(**spec)
    steps = planned.total_steps
    micro_steps = steps * planned.accumulation - 1
    w = list(micro.samples[:window] if window else micro.samples)
    u = list(update.samples[:updates] if updates else update.samples) if update else []
    m_lo, m_hi, method = batch_means_interval(w)
    mean_m = float(np.mean(w))
    mean_u = float(np.mean(u)) if u else 0.0
    u_lo, u_hi, _ = batch_means_interval(u)
    if u_lo is None:  # one update or none: its cost is taken as measured
        u_lo = u_hi = mean_u
    total = fixed_s + micro_steps * mean_m + (steps - 1) * mean_u
    out = {"total_s": total, "low": None, "high": None, "window_steps": len(w),
           "update_samples": len(u), "method": method}
    if m_lo is not None:
        out.update(low=fixed_s + micro_steps * m_lo + (steps - 1) * u_lo,
                   high=fixed_s + micro_steps * m_hi + (steps - 1) * u_hi)
    return out


def _training(record: Record) -> list[Figure]:
    p = record.params
    micro, update = record.series["micro_step"], record.series.get("update")
    rate = _median(_training_samples(record, "micro_step"))
    flops = record.model.get("forward_flops")
    gflops = rate * TRAIN_FLOPS_PER_FORWARD * flops / 1e9 if flops else None
    t = record.measured
    firsts = [s.first for s in (micro, update) if s is not None and s.first is not None]
    first = sum(firsts) if micro.first is not None else None
    fixed = t.get("data_fill_s", 0.0) + (first or 0.0)
    figs = [
        Figure("train img/s", rate, "img/s", HIGHER, "micro_step", headline=True,
               note="whole updates: each micro-step with its share of the update"),
        Figure("train GFLOP/s", gflops, "GFLOP/s", HIGHER),
        _efficiency(record, gflops),
        Figure("first step s", first, "s", LOWER,
               note="the first micro-step and update: tracing and graph optimisation"),
        Figure("data fill s", t.get("data_fill_s"), "s", LOWER,
               note="decoding the training shard into the cache, before the clock"),
        Figure("input pipeline img/s", t.get("input_pipeline_images_per_s"), "img/s", NEITHER),
        Figure("update s", _median(np.asarray(update.samples)) if update and update.samples
               else None, "s", LOWER),
    ]
    if p.get("measure") == "full" and "total_s" in t:
        figs.append(Figure("train total s", t["total_s"], "s", LOWER))
        window = FullTrainingSpec(**p).window_steps
        check = projection(micro, update, p, fixed, window=window, updates=3)
        if len(micro.samples) > window >= 3:
            figs.append(_projection_error(check, t["total_s"]))
    else:
        proj = projection(micro, update, p, fixed)
        figs.append(Figure("train total s", proj["total_s"], "s", LOWER, kind="projected",
                           low=proj["low"], high=proj["high"],
                           note=f"95% interval, {proj['method']}, from "
                                f"{proj['window_steps']} micro-steps"))
    figs += _scaling(record, rate)
    return figs


def _projection_error(check: dict[str, Any], measured: float) -> Figure:
    """What a projected run would have said, from a full run's own first window."""
    if check["low"] is None:
        where, low, high = "no interval", None, None
    else:
        low, high = check["low"] / measured - 1, check["high"] / measured - 1
        inside = check["low"] <= measured <= check["high"]
        where = (f"[{check['low']:.1f}, {check['high']:.1f}] s: measured "
                 + ("inside" if inside else "outside") + " the 95% interval")
    return Figure("projection error", check["total_s"] / measured - 1, "", NEITHER, low=low,
                  high=high, note=f"projected {check['total_s']:.1f} s from the first "
                                  f"{check['window_steps']} steady micro-steps vs "
                                  f"{measured:.1f} s measured; {where} ({check['method']})")


def _scaling(record: Record, rate: float) -> list[Figure]:
    """A data-parallel run against its references, measured right after on the same cores."""
    refs = record.references or {}
    out = []
    workers = record.params.get("workers", 1)
    alone = refs.get("alone")
    if alone and alone.get("status") == "ok":
        single = value(alone, "train img/s")
        out.append(Figure("1 worker alone img/s", single, "img/s", HIGHER))
        out.append(Figure("scaling efficiency", rate / (workers * single), "", HIGHER,
                          note="N workers ÷ (N × one worker alone on one worker's cores)"))
    whole = refs.get("one_worker_all_cores")
    if whole and whole.get("status") == "ok":
        single = value(whole, "train img/s")
        out.append(Figure("1 worker all cores img/s", single, "img/s", HIGHER))
        out.append(Figure("vs 1 worker", rate / single, "x", HIGHER,
                          note="N workers ÷ one worker on all the cores"))
    return out


def _transfer(record: Record) -> list[Figure]:
    extract = record.series["extract_batch"]
    t = record.measured
    rate = _median(extract.rates())
    flops = record.model.get("forward_flops")
    gflops = rate * flops / 1e9 if flops else None
    total = sum(t.get(k, 0.0) for k in TRANSFER_TOTAL)
    driven = record.throughput or {}
    how = driven["mode"] if driven.get("asynchronous") else "the forward pass of one batch"
    return [
        Figure("extract img/s", rate, "img/s", HIGHER, "extract_batch", headline=True,
               note=f"{how}; images decoded before the clock"),
        Figure("extract GFLOP/s", gflops, "GFLOP/s", HIGHER),
        _efficiency(record, gflops),
        Figure("extraction s", t.get("extraction_s"), "s", LOWER),
        Figure("decode s", t.get("decode_s"), "s", LOWER),
        Figure("head trace s", t.get("head_trace_s"), "s", LOWER),
        Figure("head s", t.get("head_s"), "s", LOWER),
        Figure("transfer total s", total, "s", LOWER,
               note=" + ".join(k.removesuffix("_s") for k in TRANSFER_TOTAL)),
        Figure("accuracy", record.accuracy, "", HIGHER),
        *_lfw(record),
    ]


def _lfw(record: Record) -> list[Figure]:
    lfw = (record.lfw_verification or {}).get("euclidean")
    if not lfw:
        return []
    return [Figure("LFW accuracy", lfw["accuracy"], "", HIGHER,
                   note="10-fold LFW protocol, squared Euclidean distance"),
            Figure("LFW AUC", lfw["auc"], "", HIGHER)]


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


TRANSFER_TOTAL = ("decode_s", "extraction_s", "head_trace_s", "head_s")


def _fine_tune(record: Record) -> list[Figure]:
    figs = []
    for k, stage in enumerate(record.stages, start=1):
        figs.append(Figure(f"stage {k} img/s", _median(stage.series.rates()), "img/s", HIGHER,
                           f"stage {k}", headline=k == len(record.stages),
                           note=" + ".join(stage.unfrozen)))
    figs.append(Figure("fine-tune total s", record.stages[-1].elapsed_s if record.stages
                       else None, "s", LOWER))
    figs.append(Figure("accuracy", record.accuracy, "", HIGHER))
    return figs


def _inference(record: Record) -> list[Figure]:
    lat = np.asarray(record.series["latency_bs1"].samples, dtype=float) * 1e3
    batch = record.params["batch_size"]
    name = f"throughput_bs{batch}"
    mode = (record.throughput or {}).get("mode", "")
    if name in record.series:
        throughput = Figure(f"throughput bs{batch} img/s", _median(record.series[name].rates()),
                            "img/s", HIGHER, name, headline=True, note=mode)
    else:  # schema 1 kept no completions to judge; its figure, counted from completions
        throughput = Figure(f"throughput bs{batch} img/s",
                            record.measured.get("throughput_images_per_s"), "img/s", HIGHER,
                            headline=True, note=record.note or mode)
    flops = record.model.get("forward_flops")
    gflops = throughput.value * flops / 1e9 if flops and throughput.value else None
    return [
        Figure("latency bs1 p50 ms", _median(lat), "ms", LOWER, "latency_bs1"),
        Figure("latency bs1 p90 ms", float(np.percentile(lat, 90)), "ms", LOWER),
        Figure("latency bs1 p99 ms", float(np.percentile(lat, 99)), "ms", LOWER),
        Figure("bs1 img/s", 1e3 / _median(lat), "img/s", HIGHER),
        throughput,
        Figure("infer GFLOP/s", gflops, "GFLOP/s", HIGHER),
        _efficiency(record, gflops),
    ]


_FIGURES = {"full_training": _training, "transfer": _transfer, "fine_tune": _fine_tune,
            "inference": _inference}


def rounds(run: Record | dict[str, Any]) -> list[Record]:
    """The worker processes of a run, round by round (one unless the suite had repeats)."""
    record = _record(run)
    return [dataclasses.replace(record, repeats=()),
            *(parse_run(r, f"{record.run_id} repeat") for r in record.repeats)]


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


def _figures_of(record: Record) -> dict[str, Figure]:
    return {f.name: f for f in (*_FIGURES[record.scenario](record), *_kernels(record))}


def process_figures(run: Record | dict[str, Any]) -> list[dict[str, Figure]]:
    """Each ok process's own figures, round by round."""
    return [_figures_of(r) for r in rounds(run) if r.status == "ok"]


def figures(run: Record | dict[str, Any]) -> dict[str, Figure]:
    """Every figure of an ok run, by name ({} for a run that did not succeed). With repeats,
    each figure is the median of the processes' own (one definition: the per-process figure),
    with their spread; a projected interval is then the processes' spread, not one's window."""
    record = _record(run)
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
    return {"full_training": "train img/s", "transfer": "extract img/s",
            "fine_tune": f"stage {params.get('stages', 1)} img/s",
            "inference": f"throughput bs{params.get('batch_size')} img/s"}[scenario]


def judged(run: Record | dict[str, Any]) -> list[Figure]:
    """The figures compare tests, each on its series."""
    return [f for f in figures(run).values() if f.series is not None]
