"""The result contract: each scenario's sample series, and its figures, defined once.

A worker records what it timed as **series**: every call of one kind, in the order they ran.
One rule for every scenario: the first call (tracing, compiling, a cold cache), the warm-up
calls and the steady samples are kept apart, in three fields. A sample is the seconds that
`work` images took — one call, or for an asynchronous queue one group of consecutive
completions, about a second's worth (`per = "bin"`: the time from the completion before the
group to its last, over its requests; `bench.measure.completion_bins`). One-off costs (data
decoding, a head's tracing, a measured total) go in **measured**, never inside a series.

**Figures** are computed here and nowhere else, from the series, the one-off measurements and
the run's parameters. A figure judged on a series is the median of that series' per-sample
values (img/s of one sample, or its milliseconds), so the value shown and the samples a
comparison tests are the same thing. Compare, summary, history, the console and the HTML
report all read `figures(run)`.

Schema: frozen dataclasses with one validator (`parse`), not pydantic or msgspec: the worker
emits the contract in two environments (TensorFlow 2.21 with numpy 2.4, and ITEX's TensorFlow
2.15 with numpy 1.26), and the contract imports in both with nothing added to either. The
validator is strict: an unknown key or a value of the wrong type is an error naming its path.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.measure import batch_means_interval
from bench.suite import FullTrainingSpec

TRAIN_FLOPS_PER_FORWARD = 3  # forward + backward ≈ 3 forward passes
HIGHER, LOWER, NEITHER = "higher", "lower", "neither"


class RecordError(ValueError):
    """A run record that breaks the contract; the message names the field."""


# ---------------------------------------------------------------------------------------------
# The typed contract


@dataclass(frozen=True)
class Series:
    """Every timed call of one kind, by one rule: the first call, the warm-up calls, the steady
    samples, each kept apart. A sample is the seconds that `work` images took."""

    work: float
    samples: tuple[float, ...]  # steady
    first: float | None = None  # the first call: tracing, compiling, a cold cache
    warmup: tuple[float, ...] = ()  # the calls after the first that are not yet steady
    per: str = "call"  # "call", or "bin": one sub-window of an asynchronous queue's completions

    def check(self, where: str) -> None:
        if self.work <= 0:
            raise RecordError(f"{where}.work: {self.work} images; must be above 0")
        if self.per not in ("call", "bin"):
            raise RecordError(f"{where}.per: {self.per!r}; write \"call\" or \"bin\"")
        times = [*self.samples, *self.warmup, *([] if self.first is None else [self.first])]
        if not all(math.isfinite(x) and x > 0 for x in times):
            raise RecordError(f"{where}: every time must be a positive number of seconds")

    def rates(self) -> np.ndarray:
        """Images per second of each steady sample."""
        return self.work / np.asarray(self.samples, dtype=float)

    @classmethod
    def of(cls, work: float, first: float | None, warm: list[float], steady: list[float],
           per: str = "call") -> Series:
        return cls(work=float(work), samples=tuple(steady), first=first, warmup=tuple(warm),
                   per=per)


@dataclass(frozen=True)
class Stage:
    """One fine-tuning stage: the blocks unfrozen so far and its training steps."""

    stage: str
    unfrozen: tuple[str, ...]
    trainable_weights: int
    steps: int
    series: Series
    stage_s: float
    elapsed_s: float
    accuracy: float


Json = dict[str, Any]


@dataclass(frozen=True)
class Record:
    """One run as the result file holds it (schema_version 2)."""

    run_id: str
    backend: str
    scenario: str
    status: str  # "ok", "failed", "skipped"
    params: Json = field(default_factory=dict)
    model: Json = field(default_factory=dict)
    data: Json = field(default_factory=dict)
    backend_params: Json = field(default_factory=dict)  # the suite's [openvino] for OpenVINO
    # the process: where it ran and what it got
    placement: Json = field(default_factory=dict)
    placement_obtained: Json | None = None
    env: Json = field(default_factory=dict)  # every variable the worker was given
    started: str | None = None
    log: str | None = None
    wall_s: float = 0.0
    worker_wall_s: float | None = None
    runtime: Json | None = None
    runtime_start_s: float | None = None
    peak_rss_mb: float | None = None
    energy: Json | None = None
    onednn: Json | None = None
    kernels: Json | None = None  # OpenVINO: the profiled pass's kernels and precisions
    peak: Json | None = None  # the peak of the run's cores at its precision (efficiency)
    steal: Json | None = None  # the CPUs' time the hypervisor gave away during the scenario
    foreign_load: Json | None = None  # the CPUs' time other processes ran during the scenario
    reference: Json | None = None  # the machine's speed beside the scenario (measure.reference)
    reason: str | None = None
    error: str | None = None
    traceback: str | None = None
    log_tail: str | None = None
    carried_from: str | None = None
    # what was measured
    series: dict[str, Series] = field(default_factory=dict)
    measured: dict[str, float] = field(default_factory=dict)
    stages: tuple[Stage, ...] = ()
    # how batches were driven (inference's throughput, transfer's extraction): mode, requests
    throughput: Json | None = None
    # quality and facts
    accuracy: float | None = None
    accuracy_note: str | None = None
    chance_accuracy: float | None = None
    accuracy_random_weights: float | None = None
    time_to_accuracy: Json | None = None
    lfw_verification: Json | None = None
    parity: Json | None = None
    loss: Json | None = None
    head: str | None = None
    head_final_loss: float | None = None
    distributed: Json | None = None
    # a test-only slowdown made this run's training steps that much longer (bench.measure)
    injected_slowdown: float | None = None
    # runs of several processes: each process kept, and the scaling references
    processes: tuple[Json, ...] = ()
    references: Json | None = None
    # `repeats`: rounds 2..N of the run, each a whole record of one fresh worker process
    # (round 1 is this record itself); the run's figures are over all of them
    repeats: tuple[Json, ...] = ()
    cluster: Json | None = None
    note: str | None = None


def _check_type(value: Any, hint: Any, where: str) -> Any:
    """`value` as type `hint` (JSON lists become tuples), or a RecordError naming `where`."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_type(value, option, where)
            except RecordError as exc:
                errors.append(str(exc))
        raise RecordError(errors[0] if errors else f"{where}: {value!r} is not allowed")
    if dataclasses.is_dataclass(hint):
        return parse(hint, value, where)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise RecordError(f"{where}: expected an object, got {type(value).__name__}")
        args = typing.get_args(hint)
        if not args:
            return value
        return {k: _check_type(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise RecordError(f"{where}: expected a list, got {type(value).__name__}")
        item = typing.get_args(hint)[0]
        return tuple(_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RecordError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecordError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint in (str, bool):
        if not isinstance(value, hint):
            raise RecordError(f"{where}: expected {hint.__name__}, got {value!r}")
        return value
    raise RecordError(f"{where}: no rule for {hint!r}")  # pragma: no cover - a contract bug


_HINTS: dict[type, dict[str, Any]] = {}


def parse(cls: type, data: Any, where: str = "run") -> Any:
    """The one validator: a dict → the dataclass `cls`; unknown keys and wrong types refused."""
    if not isinstance(data, dict):
        raise RecordError(f"{where}: expected an object, got {type(data).__name__}")
    hints = _HINTS.setdefault(cls, typing.get_type_hints(cls))
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise RecordError(f"{where}: unknown key(s) {unknown} (this tlbench reads "
                          f"{sorted(hints)})")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    missing = [n for n, f in fields.items() if n not in data
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise RecordError(f"{where}: missing {missing}")
    values = {k: _check_type(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    obj = cls(**values)
    if hasattr(obj, "check"):
        obj.check(where)
    return obj


def parse_run(run: dict[str, Any], where: str = "run") -> Record:
    record = parse(Record, run, f"{where} {run.get('run_id', '?')}"
                   if isinstance(run, dict) else where)
    if record.status not in ("ok", "failed", "skipped"):
        raise RecordError(f"{where}: status {record.status!r}; one of ok, failed, skipped")
    return record


def to_dict(obj: Any) -> Any:
    """A record (or any part of one) as JSON-ready data: tuples as lists, None fields dropped
    from records so a file holds what a run measured."""
    if dataclasses.is_dataclass(obj):
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if value is None or (isinstance(value, tuple | dict) and not value
                                 and f.name not in ("params", "samples")):
                continue
            out[f.name] = to_dict(value)
        return out
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    return obj


def _record(run: Record | dict[str, Any]) -> Record:
    return run if isinstance(run, Record) else parse_run(run)


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


DISTURBANCES = ("steal", "foreign_load")  # what else took the run's CPUs during its scenario


def disturbance_shares(run: Record | dict[str, Any], kind: str) -> list[float]:
    """The share of its CPUs' time each worker process of a run lost to `kind` (one of
    DISTURBANCES): its rounds, and their processes side by side (instances, data-parallel
    workers)."""
    return [s["share"] for rec in rounds(run)
            for s in (getattr(rec, kind), *(p.get(kind) for p in rec.processes)) if s]


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


# ---------------------------------------------------------------------------------------------
# The paper's experiment, and this run's transfer-vs-full speed-up beside it

PAPER = {  # reported by the white paper, never mixed with measured or projected figures
    "machine": "2S Intel Xeon Gold 6148",
    "software": "TensorFlow, no CPU optimizations",
    "full_training_s": 20 * 3600.0,
    "transfer_s": 15 * 60.0,
    "speedup": 80.0,
    "training_images": 80 * 13 * 1024,
    "lfw_images": 13_233,
    "image_size": 160,
}


def speedup(full: Record | dict[str, Any], transfer: Record | dict[str, Any]) -> dict[str, Any]:
    """Transfer vs full training of one backend: as the suite ran, and at the paper's scale.

    As run: the suite's full-training total (measured or projected) over its transfer total.
    Paper scale, both sides projected from this run: full training's one-off costs (the
    shard's decoding scaled to LFW's images, the first step) plus its per-image part scaled to
    1,064,960 training images; transfer's one-offs (first batch, head tracing and training)
    plus LFW's 13,233 images decoded and embedded at this run's steady mean rate (a sum, so a
    mean: sum of images over sum of seconds).
    """
    full, transfer = _record(full), _record(transfer)
    ff, tf_ = figures(full), figures(transfer)
    spec = FullTrainingSpec(**full.params)
    training_images = spec.total_steps * spec.batch_size
    embedded = transfer.data.get("train_images", 0) + transfer.data.get("test_images", 0)
    lfw = PAPER["lfw_images"]
    fill = full.measured.get("data_fill_s", 0.0) * lfw / max(1, full.data.get("train_images", 1))
    fixed = full.measured.get("data_fill_s", 0.0) + ff["first step s"].value
    total = ff["train total s"].value
    full_s = fill + ff["first step s"].value + (total - fixed) * (
        PAPER["training_images"] / training_images)
    extract = transfer.series["extract_batch"]
    mean_rate = extract.work * len(extract.samples) / sum(extract.samples)
    m = transfer.measured
    transfer_s = (extract.first + m.get("head_trace_s", 0.0) + m.get("head_s", 0.0)
                  + (lfw - extract.work) / mean_rate
                  + m.get("decode_s", 0.0) * lfw / max(1, embedded))
    return {
        "backend": full.backend, "image_size": full.model.get("image_size"),
        "variant": full.model.get("variant"), "full_training_s": total,
        "full_training_kind": ff["train total s"].kind,
        "transfer_s": tf_["transfer total s"].value, "training_images": training_images,
        "transfer_images": embedded, "speedup": total / tf_["transfer total s"].value,
        "paper_scale": {"full_training_s": full_s, "transfer_s": transfer_s,
                        "speedup": full_s / transfer_s},
    }


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
    (all-reduce included), each worker kept, and the scaling references beside."""
    fields: dict[str, Any] = {
        "processes": _processes(records), "wall_s": max(r.wall_s for r in records),
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
