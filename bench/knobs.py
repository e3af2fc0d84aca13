"""Knobs: what `tlbench tune` may change of a run — each declared by its backend
(`Backend.knobs`), with its domain on this machine, how it is applied and where the result
records what the run obtained.

A knob is applied one of three ways:
- `section`: a key of a suite section (the scenario's, e.g. `inference.batch_size`, or the
  backend's settings, e.g. `openvino.streams`), checked by the strict suite parser;
- `env`: a variable set in the worker's environment before the runtime is imported (the memory
  allocator through `LD_PRELOAD`, OpenMP's wait policy);
- `placement`: the suite's `placement` (how many cores, `instances:K`), which also sets the
  runtime's threads (the worker gives each runtime one intra-op thread per pinned CPU).

Domains come from the machine: placements from its topology (sockets, physical cores, SMT),
allocators from the libraries present. A knob a stack does not have is not offered; one that
cannot be offered here says why (`Knob.absent`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.pinning import Topology

SECTION, ENV, PLACEMENT = "section", "env", "placement"

# Debian's packages of the allocators Intel's launchers offer (libjemalloc2,
# libtcmalloc-minimal4); `make install` installs them where it can (root and apt)
ALLOCATORS = {
    "jemalloc": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "tcmalloc": "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
}
ALLOCATOR_INSTALL = "apt-get install libjemalloc2 libtcmalloc-minimal4 (make install does, as root)"


@dataclass(frozen=True)
class Knob:
    """One thing a tuning search may change: its values here (the suite's default first)."""

    name: str  # as a search and a tuned suite name it: "inference.batch_size", "allocator"
    values: tuple[Any, ...]
    how: str  # SECTION, ENV or PLACEMENT
    key: str  # the section key ("inference.batch_size"), the variable, or "placement"
    obtained: str  # where a run's record holds what it got (a dotted path)
    absent: str = ""  # why it has no choice here (a single value), if it has none
    # ENV: the worker's variables for a value (none for the runtime's own default)
    env: Callable[[Any], dict[str, str]] | None = None

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError(f"knob {self.name}: no value")
        if len(set(map(repr, self.values))) != len(self.values):
            raise ValueError(f"knob {self.name}: a value twice in {self.values}")

    @property
    def default(self) -> Any:
        return self.values[0]

    def check(self, value: Any) -> None:
        """An unknown value: the error names the knob and its domain here."""
        if value not in self.values:
            raise ValueError(f"{self.name} = {value!r} is not offered here; its values on this "
                             f"machine: {', '.join(map(repr, self.values))}")


def placements(topology: Topology, default: str, instances: bool) -> tuple[str, ...]:
    """The placements worth trying on `topology`, `default` first: all physical cores, one
    socket each on a multi-socket machine, the first core alone (one thread), and for a scenario
    that may run side by side, `instances:K` for every K that divides the physical cores."""
    cores = len(topology.physical())
    found = ["all", *(f"socket:{s}" for s in topology.sockets if len(topology.sockets) > 1)]
    if cores > 1:
        found.append("cores:0")
    if instances:
        found += [f"instances:{k}" for k in range(2, cores + 1) if cores % k == 0]
    return tuple(dict.fromkeys([default, *found]))


def powers_of_two(low: int, high: int, default: int) -> tuple[int, ...]:
    """`default` first, then the powers of two from `low` to `high`."""
    values, v = [default], 1
    while v <= high:
        if v >= low:
            values.append(v)
        v *= 2
    return tuple(dict.fromkeys(values))


def allocator() -> Knob:
    """glibc's malloc (the default), then each allocator library present on this machine."""
    present = {name: path for name, path in ALLOCATORS.items() if Path(path).is_file()}
    values = ("glibc", *present)
    absent = ("" if present else f"no jemalloc or tcmalloc library here: {ALLOCATOR_INSTALL}")
    return Knob("allocator", values, ENV, "LD_PRELOAD", "placement_obtained.env.LD_PRELOAD",
                absent=absent,
                env=lambda value: {} if value == "glibc" else {"LD_PRELOAD": ALLOCATORS[value]})


def variable(name: str, key: str, values: tuple[str, ...]) -> Knob:
    """A runtime's environment variable: "default" leaves it unset, another value sets it (in
    capitals, as OpenMP reads them)."""
    return Knob(name, ("default", *values), ENV, key, f"placement_obtained.env.{key}",
                env=lambda value: {} if value == "default" else {key: value.upper()})


INTEROP = "TF_NUM_INTEROP_THREADS"  # the harness sets 1 (pinning.Placement.environment)


def inter_op(topology: Topology) -> Knob:
    """TensorFlow's inter-op pool (independent ops run side by side): the harness's 1, then the
    powers of two up to the physical cores; read at the runtime's start."""
    values = powers_of_two(2, len(topology.physical()), 1)
    return Knob("inter_op_threads", values, ENV, INTEROP, "runtime.inter_op_threads",
                env=lambda value: {} if value == 1 else {INTEROP: str(value)})


# each scenario's batch key a search may change, with the powers of two it tries
BATCH_KEYS = {"inference": ("batch_size", 1, 64), "transfer": ("batch_size", 8, 128),
              "serving": ("server_batch", 1, 16), "full_training": ("micro_batch", 4, 64),
              "fine_tune": ("batch_size", 8, 64)}


def batch(scenario: str, params: dict[str, Any]) -> Knob | None:
    """The scenario's batch key (full training: a micro-batch that divides the global batch)."""
    if scenario not in BATCH_KEYS:
        return None
    key, low, high = BATCH_KEYS[scenario]
    values = powers_of_two(low, high, params[key])
    if scenario == "full_training":
        values = tuple(v for v in values if params["batch_size"] % v == 0)
    return Knob(f"{scenario}.{key}", values, SECTION, f"{scenario}.{key}", f"params.{key}")
