"""Efficiency figures of a run: achieved FLOP/s as a fraction of the CPU's peak, and RAPL energy.

The peak a run is measured against is the machine's stated peak (`bench.machine.peak`) scaled to
the physical cores the run was placed on, recorded by the worker; the fraction of it that the
run's GFLOP/s reach is one of the run's figures (`bench.record`).

Energy comes from the package domains of Intel RAPL (/sys/class/powercap), read by the
parent before and after the worker and sampled in between, so a counter that wraps (at
max_energy_range_uj, every half hour or so at a few hundred watts) is never missed. RAPL counts
the whole package: everything else running on the socket is in it too.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.pinning import Topology

POWERCAP = Path("/sys/class/powercap")
SAMPLE_S = 10.0  # far below the shortest wrap period (~15 min at 300 W per package)
_PACKAGE_ZONE = re.compile(r"intel-rapl:\d+")  # not intel-rapl:0:0 (a subdomain), not -mmio


def cores_used(topology: Topology, cpus: tuple[int, ...] | list[int]) -> int:
    """Physical cores among `cpus` (two SMT siblings of one core count once)."""
    wanted = set(cpus)
    return len(topology.physical(tuple(c for c in topology.cpus if c.id in wanted)))


def run_peak(precision: str, peak: dict[str, Any], cores: int) -> dict[str, Any]:
    """The peak of the `cores` a run used, at the run's precision: what its GFLOP/s are a
    fraction of (`bench.record` computes the fraction), or the reason there is none."""
    figure = peak.get(precision) or {}
    per_core = figure.get("gflops_per_core")
    if not per_core or cores < 1:
        return {"precision": precision,
                "reason": figure.get("basis") or f"no {precision} peak known for this CPU"}
    return {
        "precision": precision,
        "cores": cores,
        "gflops": per_core * cores,
        "machine_peak_gflops": figure.get("gflops"),
        "basis": f"{cores} core(s) x {peak.get('ghz')} GHz ({peak.get('frequency_source')}) x "
                 f"{figure.get('flop_per_cycle')} FLOP/cycle ({figure.get('basis')})",
    }


@dataclass(frozen=True)
class Counter:
    """One RAPL domain's reading: energy in µJ, and the value at which it wraps to 0."""

    zone: str
    name: str
    energy_uj: int
    max_uj: int


class RaplUnavailable(Exception):
    """RAPL cannot be read here; the message says why."""


def read_rapl(root: str | Path | None = None) -> list[Counter]:
    """The package domains' counters now; raises RaplUnavailable naming the cause."""
    root = Path(root if root is not None else POWERCAP)
    zones = sorted(p for p in root.glob("intel-rapl:*") if _PACKAGE_ZONE.fullmatch(p.name))
    counters = []
    for zone in zones:
        try:
            name = (zone / "name").read_text().strip()
            if not name.startswith("package"):
                continue  # psys (the whole platform) would count the packages twice
            counters.append(Counter(zone.name, name, int((zone / "energy_uj").read_text()),
                                    int((zone / "max_energy_range_uj").read_text())))
        except PermissionError:
            raise RaplUnavailable(
                f"{zone}/energy_uj is readable by root only (Linux >= 5.10); run as root or "
                f"`sudo chmod a+r {root}/intel-rapl:*/energy_uj`") from None
        except (OSError, ValueError) as exc:
            raise RaplUnavailable(f"{zone} unreadable: {exc}") from None
    if not counters:
        raise RaplUnavailable(
            f"no RAPL package domain under {root} (none exposed: a VM, a container, or a CPU or "
            f"kernel without intel_rapl)")
    return counters


def delta_uj(before: int, after: int, max_uj: int) -> int:
    """Energy between two readings of one counter that wraps to 0 past `max_uj`."""
    return after - before if after >= before else max_uj - before + after


def rapl_status(root: str | Path | None = None) -> dict[str, Any]:
    """For `tlbench machine`: the package domains and their counters, or why there are none."""
    try:
        counters = read_rapl(root)
    except RaplUnavailable as exc:
        return {"status": "unavailable", "reason": str(exc), "source": "RAPL"}
    return {"status": "available", "source": "RAPL",
            "domains": [{"zone": c.zone, "name": c.name, "energy_j": c.energy_uj / 1e6,
                         "wraps_at_j": c.max_uj / 1e6} for c in counters]}


class EnergyMeter:
    """Package energy while a block runs: sampled every `interval_s` so wraps are all seen.

        with EnergyMeter() as meter:
            run_the_worker()
        record["energy"] = meter.result()
    """

    def __init__(self, root: str | Path | None = None, interval_s: float = SAMPLE_S):
        self.root = Path(root if root is not None else POWERCAP)
        self.interval_s = interval_s
        self.problem: str | None = None
        self.joules: dict[str, float] = {}
        self.wraps: dict[str, int] = {}
        self.samples = 0
        self._last: dict[str, Counter] = {}
        self._names: dict[str, str] = {}
        self._t0 = self._t1 = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def sample(self) -> None:
        """Read every package counter and add what it counted since the last reading."""
        if self.problem is not None:
            return
        try:
            counters = read_rapl(self.root)
        except RaplUnavailable as exc:
            self.problem = str(exc)
            return
        with self._lock:
            self.samples += 1
            for c in counters:
                last = self._last.get(c.zone)
                self._names[c.zone] = c.name
                if last is not None:
                    self.joules[c.zone] = self.joules.get(c.zone, 0.0) + delta_uj(
                        last.energy_uj, c.energy_uj, c.max_uj) / 1e6
                    self.wraps[c.zone] = self.wraps.get(c.zone, 0) + (c.energy_uj < last.energy_uj)
                else:
                    self.joules.setdefault(c.zone, 0.0)
                    self.wraps.setdefault(c.zone, 0)
                self._last[c.zone] = c

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> EnergyMeter:
        self._t0 = time.perf_counter()
        self.sample()
        if self.problem is None:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()
        self._t1 = time.perf_counter()

    def result(self) -> dict[str, Any]:
        if self.problem is not None:
            return {"status": "unavailable", "reason": self.problem, "source": "RAPL"}
        seconds = self._t1 - self._t0
        total = sum(self.joules.values())
        return {
            "joules": total,
            "seconds": seconds,
            "watts_mean": total / seconds if seconds > 0 else None,
            "domains": [{"zone": z, "name": self._names[z], "joules": j, "wraps": self.wraps[z]}
                        for z, j in sorted(self.joules.items())],
            "samples": self.samples,
            "source": "RAPL",
            "scope": "package domains, whole worker process (start-up included)",
        }
