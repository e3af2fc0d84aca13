"""The result contract's schema: the typed run record (`Record`, `Series`, `Stage`) and its
one strict validator (`parse`). See `bench.record`."""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import numpy as np


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
    # serving under MLPerf LoadGen: its version, the latency bound, every LoadGen run (scenario,
    # rate, valid or not and why) and the Server peak search (bench.scenarios.serving)
    serving: Json | None = None
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
    hints = _HINTS.get(cls) or _HINTS.setdefault(cls, typing.get_type_hints(cls))
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


class Run(dict):
    """A run as a loaded result file holds it — its JSON — with its typed `record`, parsed
    once (`bench.results.load`). Views read the JSON; every figure is computed from the record,
    once (`bench.record.figures` caches them on it). A copy is a plain dict, parsed anew where it
    is used; setting or removing a key of the run itself drops its record, to be parsed anew.
    What is nested in it is not watched: change a copy (`copy.deepcopy`), never a loaded run's
    series or measurements in place."""

    def __init__(self, run: dict[str, Any], where: str = "run"):
        super().__init__(run)
        self._record: Record | None = parse_run(run, where)

    @property
    def record(self) -> Record:
        if self.__dict__.get("_record") is None:
            self._record = parse_run(self)
        return self._record

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return copy.deepcopy(dict(self), memo)

    def _changes(name: str) -> Any:
        def method(self: Run, *args: Any, **kwargs: Any) -> Any:
            self._record = None
            return getattr(dict, name)(self, *args, **kwargs)
        return method

    __setitem__, __delitem__, update, setdefault, pop, popitem, clear = map(
        _changes, ("__setitem__", "__delitem__", "update", "setdefault", "pop", "popitem",
                   "clear"))
    del _changes


def _record(run: Record | dict[str, Any]) -> Record:
    if isinstance(run, Record):
        return run
    return run.record if isinstance(run, Run) else parse_run(run)


def cached(record: Record, name: str, compute: Any) -> Any:
    """`compute(record)`, kept on the record under `name`: a record is frozen, so what is
    computed from it once holds for as long as it lives."""
    if name not in record.__dict__:
        object.__setattr__(record, name, compute(record))
    return record.__dict__[name]
