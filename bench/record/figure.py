"""One figure of a run (`Figure`), and the pieces every scenario's figures are made of. Each
scenario declares its own figures (bench.scenarios.<name>); `bench.record.figures` gathers
them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.record.schema import Record, Series

HIGHER, LOWER, NEITHER = "higher", "lower", "neither"


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


def median(x: np.ndarray) -> float:
    return float(np.median(x))


def series_of(record: Record, name: str) -> Series:
    """A record's series by name; "stage k" is the k-th fine-tuning stage's."""
    if name.startswith("stage "):
        return record.stages[int(name.split()[1]) - 1].series
    return record.series[name]


def rate_samples(record: Record, name: str) -> np.ndarray:
    """Img/s of each sample of a series."""
    return series_of(record, name).rates()


def efficiency(record: Record, gflops: float | None) -> Figure:
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


def compiled(record: Record) -> str:
    """How a run's first calls got their compiled code, for the first call's note: from the
    runtime's persistent cache, or compiled cold ("" for a runtime that keeps no cache)."""
    cache = (record.runtime or {}).get("compile_cache")
    if not cache:
        return ""
    return (f"; compiled code {cache['state']} ({cache['hits']} from the {cache['runtime']} "
            f"cache, {cache['misses']} compiled)")
