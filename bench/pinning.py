"""CPU topology and placement: which CPUs a worker runs on and how many threads each runtime gets.

The parent resolves a placement (`all`, `socket:N`, `cores:LIST`) against the machine's topology;
the worker pins itself with psutil before TensorFlow is imported, because TF sizes its thread pools
at import. TF 2.21 runs oneDNN on its own pool (TF_NUM_INTRAOP_THREADS is honoured, OMP/KMP are
not); OpenMP runtimes (ITEX) read OMP_NUM_THREADS and KMP_*; both are set so either is pinned.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import psutil


class PlacementError(ValueError):
    """A placement this machine cannot honour; the message names the fix."""


@dataclass(frozen=True)
class Cpu:
    id: int
    socket: int
    core: int
    node: int
    siblings: tuple[int, ...] = ()  # thread_siblings_list, this CPU included; () when unknown


@dataclass(frozen=True)
class Topology:
    cpus: tuple[Cpu, ...]

    @property
    def sockets(self) -> tuple[int, ...]:
        return tuple(sorted({c.socket for c in self.cpus}))

    @property
    def nodes(self) -> tuple[int, ...]:
        return tuple(sorted({c.node for c in self.cpus}))

    def physical(self, cpus: tuple[Cpu, ...] | None = None) -> tuple[Cpu, ...]:
        """One logical CPU per physical core (the lowest-numbered SMT sibling)."""
        seen: dict[tuple[int, int], Cpu] = {}
        for c in sorted(cpus if cpus is not None else self.cpus, key=lambda c: c.id):
            seen.setdefault((c.socket, c.core), c)
        return tuple(seen.values())

    def describe(self) -> dict:
        return {
            "logical_cpus": len(self.cpus),
            "physical_cores": len(self.physical()),
            "sockets": len(self.sockets),
            "numa_nodes": len(self.nodes),
            "smt": len(self.cpus) > len(self.physical()),
        }

    def cores(self) -> list[dict]:
        """Each physical core with its logical CPUs (the kernel's thread_siblings_list if read)."""
        groups: dict[tuple[int, int], set[int]] = {}
        for c in self.cpus:
            groups.setdefault((c.socket, c.core), set()).update(c.siblings or (c.id,))
        return [{"socket": s, "core": core, "cpus": sorted(cpus)}
                for (s, core), cpus in sorted(groups.items(), key=lambda kv: min(kv[1]))]


def _read_int(path: Path, default: int) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def _parse_list(text: str) -> list[int]:
    """Parse a kernel CPU list such as '0-3,8,10-11'."""
    out: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def read_list(path: Path) -> list[int] | None:
    """A kernel CPU list file (cpulist, thread_siblings_list); None where it is missing."""
    try:
        return _parse_list(path.read_text())
    except (OSError, ValueError):
        return None


def read_cpu_list(sys_root: str | Path, name: str) -> list[int] | None:
    """A CPU list of /sys/devices/system/cpu (`online`, `isolated`); None where it is missing."""
    return read_list(Path(sys_root) / "devices/system/cpu" / name)


def read_topology(sys_root: str | Path = "/sys", allowed: set[int] | None = None) -> Topology:
    """Read the CPU topology from sysfs; missing files (VMs, containers) fall back to defaults.

    `allowed` limits the result to the CPUs this process may run on (cgroups, taskset).
    """
    root = Path(sys_root) / "devices/system/cpu"
    if allowed is None:
        allowed = set(os.sched_getaffinity(0))
    online_file = root / "online"
    ids = _parse_list(online_file.read_text()) if online_file.exists() else sorted(allowed)
    node_of: dict[int, int] = {}
    for node_dir in sorted((Path(sys_root) / "devices/system/node").glob("node[0-9]*")):
        cpulist = node_dir / "cpulist"
        if cpulist.exists():
            for cpu in _parse_list(cpulist.read_text()):
                node_of[cpu] = int(node_dir.name[4:])
    cpus = []
    for i in ids:
        if i not in allowed:
            continue
        topo = root / f"cpu{i}/topology"
        cpus.append(Cpu(
            id=i,
            socket=_read_int(topo / "physical_package_id", 0),
            core=_read_int(topo / "core_id", i),
            node=node_of.get(i, 0),
            siblings=tuple(read_list(topo / "thread_siblings_list") or ()),
        ))
    if not cpus:
        raise PlacementError(f"no usable CPU found under {root} within affinity {sorted(allowed)}")
    return Topology(tuple(cpus))


@dataclass(frozen=True)
class Placement:
    """Where one worker runs: the CPUs it pins to and the threads each runtime gets."""

    asked: str
    cpus: tuple[int, ...]
    nodes: tuple[int, ...]
    # instances:K — K workers side by side: each group's CPUs and NUMA nodes
    groups: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] = ()

    @property
    def threads(self) -> int:
        return len(self.cpus)

    @property
    def instances(self) -> int:
        return len(self.groups) or 1

    def split(self) -> list[Placement]:
        """One placement per instance (just this one without `instances:K`)."""
        if not self.groups:
            return [self]
        return [Placement(f"{self.asked}#{i}", cpus, nodes)
                for i, (cpus, nodes) in enumerate(self.groups)]

    def describe(self) -> dict:
        out = {"asked": self.asked, "cpus": list(self.cpus), "threads": self.threads,
               "numa_nodes": list(self.nodes)}
        if self.groups:
            out["instances"] = [list(cpus) for cpus, _ in self.groups]
        return out

    def environment(self) -> dict[str, str]:
        """Thread and affinity variables, for TF's own pool and for OpenMP runtimes alike."""
        n = str(self.threads)
        return {
            "TF_NUM_INTRAOP_THREADS": n,
            "TF_NUM_INTEROP_THREADS": "1",
            "OMP_NUM_THREADS": n,
            "KMP_AFFINITY": "granularity=fine,compact,1,0",
            "KMP_BLOCKTIME": "1",
        }

    def command_prefix(self, topology: Topology) -> list[str]:
        """`numactl` binding when there is more than one NUMA node and numactl is installed."""
        numactl = shutil.which("numactl")
        if len(topology.nodes) < 2 or numactl is None:
            return []
        nodes = ",".join(map(str, self.nodes))
        return [numactl, f"--cpunodebind={nodes}", f"--membind={nodes}"]


def resolve(asked: str, topology: Topology, use_logical_cores: bool = False) -> Placement:
    """Turn `all`, `socket:N`, `cores:0,1,4-7` or `instances:K` into CPUs; physical cores only
    by default. `instances:K` splits the physical cores into K equal groups, socket by socket
    (as Intel's launchers do for multi-instance inference)."""
    kind, _, arg = asked.partition(":")
    if kind == "instances":
        return _instances(asked, arg, topology, use_logical_cores)
    by_id = {c.id: c for c in topology.cpus}
    if kind == "all" and not arg:
        chosen = topology.cpus
    elif kind == "socket":
        try:
            socket = int(arg)
        except ValueError:
            raise PlacementError(f"placement {asked!r}: write socket:N, e.g. socket:0") from None
        if socket not in topology.sockets:
            raise PlacementError(
                f"placement {asked!r}: this machine has socket(s) {list(topology.sockets)}; "
                f"use one of them or 'all'")
        chosen = tuple(c for c in topology.cpus if c.socket == socket)
    elif kind == "cores":
        try:
            wanted = _parse_list(arg)
        except ValueError:
            raise PlacementError(f"placement {asked!r}: write cores:0,1 or cores:0-3") from None
        missing = [i for i in wanted if i not in by_id]
        if not wanted or missing:
            raise PlacementError(
                f"placement {asked!r}: CPU(s) {missing or arg!r} not available here; "
                f"usable CPUs are {sorted(by_id)}")
        chosen = tuple(by_id[i] for i in wanted)
        use_logical_cores = True  # an explicit list is taken as written
    else:
        raise PlacementError(
            f"placement {asked!r} is not understood; write 'all', 'socket:N', 'cores:LIST' or "
            f"'instances:K'")
    if not use_logical_cores:
        chosen = topology.physical(chosen)
    return Placement(asked=asked, cpus=tuple(sorted(c.id for c in chosen)),
                     nodes=tuple(sorted({c.node for c in chosen})))


def _instances(asked: str, arg: str, topology: Topology, use_logical_cores: bool) -> Placement:
    try:
        k = int(arg)
    except ValueError:
        raise PlacementError(f"placement {asked!r}: write instances:K, e.g. instances:2") from None
    whole = resolve("all", topology, use_logical_cores)
    groups = tuple((part.cpus, part.nodes) for part in divide(whole, k, topology, asked))
    return Placement(asked=asked, cpus=whole.cpus, nodes=whole.nodes, groups=groups)


def divide(placement: Placement, k: int, topology: Topology, asked: str = "") -> list[Placement]:
    """The placement's CPUs in k equal groups of whole physical cores, socket by socket (as
    Intel's launchers split a machine into instances); SMT siblings stay with their core."""
    by_id = {c.id: c for c in topology.cpus}
    cores: dict[tuple[int, int], list[int]] = {}
    for cpu in sorted(placement.cpus):
        c = by_id[cpu]
        cores.setdefault((c.socket, c.core), []).append(cpu)
    keys = sorted(cores, key=lambda key: (key[0], min(cores[key])))
    if not 1 <= k <= len(keys) or len(keys) % k:
        raise PlacementError(
            f"placement {asked or placement.asked!r}: {len(keys)} physical cores cannot be split "
            f"into {k} equal groups; use a divisor of {len(keys)}")
    size = len(keys) // k
    parts = []
    for i in range(k):
        cpus = tuple(sorted(cpu for key in keys[i * size:(i + 1) * size] for cpu in cores[key]))
        parts.append(Placement(f"{placement.asked}#{i}", cpus,
                               tuple(sorted({by_id[c].node for c in cpus}))))
    return parts


_UNPINNED: set[int] = set()  # the CPUs this process could use before pin_self


def pin_self(cpus: tuple[int, ...]) -> list[int]:
    """Pin this process to `cpus` (before TensorFlow is imported); return the affinity read back."""
    proc = psutil.Process()
    _UNPINNED.update(proc.cpu_affinity())
    proc.cpu_affinity(list(cpus))
    return sorted(proc.cpu_affinity())


def spare_core(topology: Topology, used: set[int]) -> tuple[int, ...]:
    """The logical CPUs of the first physical core none of whose CPUs are in `used`: a core
    apart for a helper's threads (LoadGen's), or () when `used` touches every core."""
    for core in topology.cores():
        if not used & set(core["cpus"]):
            return tuple(core["cpus"])
    return ()


def apart_from_run() -> tuple[int, ...]:
    """In a pinned worker: a core the run's CPUs leave free among those the worker could use
    before it pinned itself (the suite's machine, less what cgroups or taskset withhold)."""
    if not _UNPINNED:
        return ()
    return spare_core(read_topology(allowed=_UNPINNED), set(os.sched_getaffinity(0)))
