"""What machine and software a result was measured on (read without importing TensorFlow).

Everything is read from /sys, /proc and psutil, from a root the tests point at a recorded tree
(tests/fixtures/sysfs-2s-smt). A VM or container lacks many of these files: what is missing
becomes None ("unknown"), never an error. The peak FLOP/s is a stated assumption, not a
measurement: physical cores x base frequency x FLOP per cycle per core, with the basis recorded.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import psutil

from bench import __version__
from bench.efficiency import rapl_status
from bench.pinning import PlacementError, Topology, read_cpu_list, read_list, read_topology

# ISA features that decide which oneDNN kernels (and so which speed) a run gets.
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
PACKAGES = ("tensorflow-cpu", "tensorflow", "keras", "intel-extension-for-tensorflow", "openvino",
            "nncf", "torch", "jax", "jaxlib", "numpy", "psutil", "rich")
SYS, CPUINFO = "/sys", "/proc/cpuinfo"

# Xeon server parts by (cpu family, model): what a VM's anonymous "Intel Xeon Processor" is.
CODENAMES = {(6, 85): "Skylake-SP", (6, 106): "Ice Lake-SP", (6, 143): "Sapphire Rapids",
             (6, 207): "Emerald Rapids", (6, 173): "Granite Rapids"}

# AVX-512 FMA units per core: not readable from /sys or cpuid, so taken from the model name
# (Intel's ark lists it per part). First match wins.
FMA_RULES = (
    (r"Platinum", 2, "Xeon Platinum: 2 AVX-512 FMA units per core"),
    (r"Gold (5122|5222)\b", 2, "Xeon Gold 5122/5222: 2 (the exceptions among Gold 5100/5200)"),
    (r"Gold 5[12]\d\d", 1, "Xeon Gold 5100/5200 (Skylake/Cascade Lake): 1 FMA unit per core"),
    (r"(Silver|Bronze) [34][12]\d\d", 1, "Xeon Silver 4100/4200, Bronze 3100/3200: 1 FMA unit"),
    (r"Bronze", 1, "Xeon Bronze: 1 FMA unit per core (assumed, as for Bronze 3100/3200)"),
    (r"(Gold|Silver) \d{4}", 2, "Xeon Gold 6100/6200 and 3rd-gen (Ice Lake) or later Xeon "
                                "Scalable: 2 AVX-512 FMA units per core"),
)
FMA_DEFAULT = (2, "not a Xeon Scalable name known here (a VM often hides the model): assumed 2 "
                  "AVX-512 FMA units per core, as on Xeon Gold 6xxx / Platinum; a part with 1 "
                  "has half the AVX-512 peak")
# AMD has no model-name rule to read: the family tells the AVX-512 datapath (assumed per family).
AMD_FMA = {
    25: (1, "AMD family 25 (Zen 3/4): Zen 4 runs each 512-bit FMA as two 256-bit halves, as 1 "
            "full-width unit per core (assumed from the family)"),
    26: (2, "AMD family 26 (Zen 5): server parts have a full 512-bit datapath, 2 AVX-512 FMA "
            "units per core (assumed from the family)"),
}
CPU_MHZ_SOURCE = "/proc/cpuinfo cpu MHz (the clock the guest is told: a floor, not the base)"
PEAK_CAVEAT = ("nominal: at base frequency; sustained AVX-512 and AMX clocks are lower on many "
               "Xeons (the AVX-512 frequency licence) and turbo is higher; in a VM the "
               "frequency is the one the guest is told")

def cpuinfo(path: str | Path = "/proc/cpuinfo") -> dict[str, str]:
    """The first processor's fields from /proc/cpuinfo (empty where the file is missing)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")


def hardware_id(machine: dict[str, Any]) -> str:
    """Which hardware a machine block describes, from the facts every result records (so old
    results get one too): CPU model and cpuid, sockets, cores, logical CPUs, the ISA flags
    present and the memory in GiB. Host names do not count: every VM here is called `vm`."""
    cpu = machine.get("cpuid") or {}
    facts = [machine.get("cpu_model"), cpu.get("vendor"), cpu.get("family"), cpu.get("model"),
             cpu.get("stepping"), machine.get("sockets"), machine.get("physical_cores"),
             machine.get("logical_cpus"),
             sorted(k for k, v in (machine.get("isa") or {}).items() if v),
             round(machine.get("memory_gib") or 0)]
    digest = hashlib.sha256(json.dumps(facts).encode()).hexdigest()[:6]
    name = re.sub(r"\((R|TM)\)|\bCPU\b|\bProcessor\b|@", " ", machine.get("cpu_model") or "cpu",
                  flags=re.IGNORECASE)
    return (f"{_slug('-'.join(name.lower().split()))[:32]}-{machine.get('sockets')}s"
            f"{machine.get('physical_cores')}c-{digest}")


def machine_id(hardware: dict[str, Any]) -> str:
    """Directory name for this machine's results: $TLBENCH_MACHINE_ID, else its hardware id."""
    return _slug(os.environ.get("TLBENCH_MACHINE_ID", "")) or hardware_id(hardware)


def cpuid(info: dict[str, str]) -> dict[str, Any]:
    """Vendor, family, model, stepping, and the server codename they point to (None if unknown)."""
    def num(key: str) -> int | None:
        try:
            return int(info[key])
        except (KeyError, ValueError):
            return None

    family, model, stepping = num("cpu family"), num("model"), num("stepping")
    codename = CODENAMES.get((family, model))
    if (family, model) == (6, 85) and stepping is not None:  # one model number, three parts
        codename = ("Cooper Lake" if stepping >= 10 else "Cascade Lake" if stepping >= 5
                    else "Skylake-SP")
    return {"vendor": info.get("vendor_id"), "family": family, "model": model,
            "stepping": stepping, "codename": codename}


def numa_nodes(sys_root: str | Path = SYS) -> list[dict[str, Any]]:
    """Each NUMA node's CPUs and memory (node<N>/meminfo, GiB); [] where sysfs shows no node."""
    nodes = []
    root = Path(sys_root) / "devices/system/node"
    dirs = [p for p in root.glob("node*") if re.fullmatch(r"node\d+", p.name)]
    for node_dir in sorted(dirs, key=lambda p: int(p.name[4:])):
        mem: dict[str, float] = {}
        try:
            for line in (node_dir / "meminfo").read_text().splitlines():
                m = re.match(r"Node\s+\d+\s+(\w+):\s+(\d+)\s*kB", line)
                if m:
                    mem[m.group(1)] = int(m.group(2)) / 2**20
        except OSError:
            pass
        nodes.append({"node": int(node_dir.name[4:]),
                      "cpus": read_list(node_dir / "cpulist") or [],
                      "memory_total_gib": _round(mem.get("MemTotal")),
                      "memory_free_gib": _round(mem.get("MemFree"))})
    return nodes


def _round(x: float | None, digits: int = 1) -> float | None:
    return None if x is None else round(x, digits)


def _read_khz_as_ghz(path: Path) -> float | None:
    try:
        return int(path.read_text().split()[0]) / 1e6
    except (OSError, ValueError, IndexError):
        return None


def base_frequency(sys_root: str | Path = SYS, info: dict[str, str] | None = None
                   ) -> dict[str, Any]:
    """The base (nominal) frequency in GHz, and where it came from.

    Preferred: intel_pstate's cpufreq/base_frequency; then the "@ 2.50GHz" of the model name
    (Intel's nominal frequency; absent from Sapphire Rapids names); then cpuinfo_max_freq, which
    under intel_pstate is the turbo maximum, so it is labelled as such; last /proc/cpuinfo's
    "cpu MHz", all a VM without cpufreq shows (the clock the guest is told: the cores may run
    faster, so a run can exceed the peak it gives, and is then shown as above it).
    """
    info = cpuinfo() if info is None else info
    cpufreq = Path(sys_root) / "devices/system/cpu/cpu0/cpufreq"
    found: dict[str, float] = {}
    if (ghz := _read_khz_as_ghz(cpufreq / "base_frequency")) is not None:
        found["cpufreq base_frequency"] = ghz
    if m := re.search(r"@\s*([\d.]+)\s*GHz", info.get("model name", ""), re.IGNORECASE):
        found["cpuinfo model name"] = float(m.group(1))
    if (ghz := _read_khz_as_ghz(cpufreq / "cpuinfo_max_freq")) is not None:
        found["cpufreq cpuinfo_max_freq (may be the turbo maximum)"] = ghz
    with contextlib.suppress(KeyError, ValueError):
        found[CPU_MHZ_SOURCE] = round(float(info["cpu MHz"]) / 1e3, 3)
    source = next(iter(found), None)
    return {"ghz": found.get(source) if source else None, "source": source, "found": found}


def fma_units(model_name: str, cpu: dict[str, Any] | None = None) -> tuple[int, str]:
    """AVX-512 FMA units per core, and why that number (a rule on the model name or the AMD
    family, or assumed)."""
    for pattern, units, why in FMA_RULES:
        if "Xeon" in model_name and re.search(pattern, model_name):
            return units, why
    if (cpu or {}).get("vendor") == "AuthenticAMD":
        family = cpu.get("family")
        if family in AMD_FMA:
            return AMD_FMA[family]
        return 1, (f"AMD family {family}: not known here; assumed 1 full-width AVX-512 FMA unit "
                   f"per core (as Zen 4)")
    return FMA_DEFAULT


def flop_per_cycle(flags: set[str], fma: int) -> dict[str, tuple[int | None, str]]:
    """FLOP per cycle per core for fp32 and bf16, each with its basis (None: no such unit)."""
    if not flags:
        unknown = (None, "ISA unknown (no flags in /proc/cpuinfo)")
        return {"fp32": unknown, "bf16": unknown}
    if "avx512f" in flags:
        fp32 = (16 * 2 * fma, f"AVX-512: 16 fp32 lanes x 2 (FMA) x {fma} FMA unit(s)")
    elif {"avx2", "fma"} <= flags:
        fp32 = (32, "AVX2: 8 fp32 lanes x 2 (FMA) x 2 FMA units (every Intel core since Haswell)")
    elif "avx" in flags:
        fp32 = (16, "AVX: 8 fp32 lanes x (1 add + 1 multiply), no FMA")
    else:
        fp32 = (8, "SSE: 4 fp32 lanes x (1 add + 1 multiply)")
    if "amx_bf16" in flags:
        bf16 = (1024, "AMX-BF16: 1024 bf16 FLOP/cycle per core (the tile unit, Intel's figure)")
    elif "avx512_bf16" in flags:
        bf16 = (2 * 16 * 2 * fma, f"AVX512_BF16: vdpbf16ps, 32 bf16 pairs x 2 (multiply-add) "
                                  f"x {fma} FMA unit(s), twice fp32")
    else:
        bf16 = (None, "no native bf16 (avx512_bf16 / amx_bf16 absent): bf16 runs are skipped")
    return {"fp32": fp32, "bf16": bf16}


def peak(cores: int | None, frequency: dict[str, Any], flags: set[str],
         model_name: str, cpu: dict[str, Any] | None = None) -> dict[str, Any]:
    """Peak GFLOP/s per precision = physical cores x base GHz x FLOP per cycle per core."""
    ghz = frequency.get("ghz")
    fma, fma_why = fma_units(model_name, cpu)
    out: dict[str, Any] = {
        "formula": "physical cores x base frequency (GHz) x FLOP per cycle per core",
        "cores": cores, "ghz": ghz, "frequency_source": frequency.get("source"),
        "fma_units": fma if "avx512f" in flags else None,
        "fma_units_basis": (fma_why if "avx512f" in flags else None),
        "caveat": PEAK_CAVEAT,
    }
    for precision, (flop, basis) in flop_per_cycle(flags, fma).items():
        per_core = ghz * flop if ghz and flop else None
        out[precision] = {"flop_per_cycle": flop, "basis": basis,
                          "gflops_per_core": per_core,
                          "gflops": per_core * cores if per_core and cores else None}
    return out


def _whole_topology(sys_root: str | Path, allowed: set[int] | None) -> Topology | None:
    """Every online CPU (not only this process's affinity); None where nothing is readable."""
    online = read_cpu_list(sys_root, "online")
    try:
        return read_topology(sys_root, allowed=set(online) if online else allowed)
    except PlacementError:
        return None


STAT = "/proc/stat"
STEAL_SOURCE = ("/proc/stat steal ticks of the run's CPUs over its scenario: time the "
                "hypervisor gave those vCPUs' turn to something else")


FOREIGN_SOURCE = ("/proc/stat busy ticks of the run's CPUs over its scenario, less the CPU time "
                  "of the worker's own process tree: what other processes ran on those CPUs")


class Ticks(NamedTuple):
    """Clock ticks so far of some CPUs, summed (/proc/stat, in USER_HZ)."""

    steal: int
    total: int
    busy: int  # user + nice + system + irq + softirq: running anything, this worker included


def cpu_ticks(cpus: tuple[int, ...], path: str | Path = STAT) -> Ticks | None:
    """These CPUs' ticks so far, or None where /proc/stat has no steal column (bare metal has
    one, always near 0) or cannot be read."""
    wanted = {f"cpu{c}" for c in cpus}
    steal = total = busy = 0
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if fields and fields[0] in wanted:
            if len(fields) < 9:
                return None
            ticks = [int(x) for x in fields[1:9]]  # user nice system idle iowait irq softirq steal
            steal, total = steal + ticks[7], total + sum(ticks)
            busy += ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6]
    return Ticks(steal, total, busy) if total else None


def steal(before: Ticks | None, after: Ticks | None) -> dict[str, Any] | None:
    """The share of the CPUs' time stolen between two `cpu_ticks` readings."""
    if before is None or after is None or after.total <= before.total:
        return None
    return {"share": (after.steal - before.steal) / (after.total - before.total),
            "source": STEAL_SOURCE}


def foreign_load(before: Ticks | None, after: Ticks | None,
                 own_s: float) -> dict[str, Any] | None:
    """The share of the CPUs' time other processes ran between two `cpu_ticks` readings, when
    this worker's process tree used `own_s` CPU seconds of it (it runs on no other CPU)."""
    if before is None or after is None or after.total <= before.total:
        return None
    hz = os.sysconf("SC_CLK_TCK")
    busy_s = (after.busy - before.busy) / hz
    return {"share": max(0.0, busy_s - own_s) / ((after.total - before.total) / hz),
            "source": FOREIGN_SOURCE}


def tree_cpu_seconds() -> float:
    """User + system CPU seconds of this process and its descendants, live or waited for."""
    me = psutil.Process()
    times = me.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            child_times = child.cpu_times()
            total += child_times.user + child_times.system
    return total


@functools.cache
def current_peak() -> dict[str, Any]:
    """This machine's peak, read once per process (the launcher's efficiency figures use it)."""
    info = cpuinfo(CPUINFO)
    topology = _whole_topology(SYS, None)
    return peak(len(topology.physical()) if topology else None, base_frequency(SYS, info),
                set(info.get("flags", "").split()), info.get("model name", ""), cpuid(info))


def describe(sys_root: str | Path = SYS, cpuinfo_path: str | Path = CPUINFO,
             allowed: set[int] | None = None) -> dict:
    """The machine block of a result file (flat keys first, as the reports read them).

    `logical_cpus`, `physical_cores`... count the CPUs this process may use; `topology` and
    `peak` describe the whole machine.
    """
    info = cpuinfo(cpuinfo_path)
    flags = set(info.get("flags", "").split())
    topology = read_topology(sys_root, allowed=allowed)
    whole = _whole_topology(sys_root, allowed) or topology
    model_name = info.get("model name", platform.processor() or "unknown")
    frequency = base_frequency(sys_root, info)
    out = {
        "hostname": platform.node(),
        "cpu_model": model_name,
        "isa": {flag: flag in flags for flag in ISA_FLAGS},
        "hypervisor": "hypervisor" in flags,
        **topology.describe(),
        "cpus_allowed": sorted(os.sched_getaffinity(0)),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "os": platform.platform(),
        "cpuid": cpuid(info),
        "base_frequency": frequency,
        "topology": {
            **whole.describe(),
            "online_cpus": read_cpu_list(sys_root, "online"),
            "isolated_cpus": read_cpu_list(sys_root, "isolated"),
            "cores": whole.cores(),
            "numa": numa_nodes(sys_root),
        },
        "peak": peak(len(whole.physical()), frequency, flags, model_name, cpuid(info)),
        "energy": rapl_status(Path(sys_root) / "class/powercap"),
    }
    return {"id": machine_id(out), "hardware_id": hardware_id(out), **out}


# The software stacks the backends run on: which environment, which packages say the version.
STACKS = (
    ("TensorFlow", ("tf-stock", "tf-onednn", "tf-onednn-bf16", "tf-xla"), "main",
     ("tensorflow-cpu", "tensorflow"), ("keras", "numpy")),
    ("ITEX", ("itex", "itex-bf16"), "itex",
     ("intel-extension-for-tensorflow",), ("tensorflow", "keras", "numpy")),
    ("OpenVINO", ("openvino", "openvino-bf16", "openvino-int8"), "main", ("openvino",),
     ("nncf", "numpy")),
    ("PyTorch", ("torch", "torch-compile", "torch-bf16"), "main", ("torch",), ("keras", "numpy")),
    ("JAX", ("jax", "jax-classic"), "main", ("jax",), ("jaxlib", "keras", "numpy")),
)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def site_packages(python: str | Path) -> list[Path]:
    """The site-packages of the virtual environment `python` belongs to (not resolved: a venv's
    bin/python is a symlink to the base interpreter)."""
    root = Path(os.path.abspath(python)).parent.parent
    return sorted([*root.glob("lib/python3*/site-packages"),
                   *root.glob("lib64/python3*/site-packages")])


def env_versions(paths: list[Path] | None) -> dict[str, str]:
    """Name → version of the distributions in `paths` (None: this interpreter's)."""
    dists = (importlib.metadata.distributions() if paths is None
             else importlib.metadata.distributions(path=[str(p) for p in paths]))
    return {_norm(d.metadata["Name"] or ""): d.version for d in dists}


def backend_stacks() -> list[dict[str, Any]]:
    """Each stack's backends, interpreter and package versions, read from dist-info metadata
    (the ITEX environment is not started)."""
    from bench.backends.itex import itex_python

    envs: dict[str, tuple[str, dict[str, str] | None, str | None]] = {
        "main": (sys.executable, env_versions(None), None)}
    itex = itex_python()
    paths = site_packages(itex)
    if not Path(itex).exists():
        envs["itex"] = (str(itex), None, f"no interpreter at {itex}: build it with `make itex`")
    elif not paths:
        envs["itex"] = (str(itex), None, f"no site-packages beside {itex}: versions unknown")
    else:
        envs["itex"] = (str(itex), env_versions(paths), None)
    stacks = []
    for label, names, env, required, extra in STACKS:
        python, versions, problem = envs[env]
        found = {p: versions[p] for p in (*required, *extra) if versions and p in versions}
        missing = problem or (None if any(p in found for p in required)
                              else f"{' / '.join(required)} not installed in {python}")
        stacks.append({"stack": label, "backends": list(names), "python": python,
                       "packages": found, "status": "missing" if missing else "installed",
                       **({"reason": missing} if missing else {})})
    return stacks


def software() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {"python": platform.python_version(), "executable": sys.executable,
            "tlbench": __version__, "packages": versions, "backends": backend_stacks()}


def project_commit(repo: str | Path | None = None) -> dict:
    """The git commit the harness ran from, and whether the tree had local changes."""
    cwd = str(repo or Path(__file__).resolve().parent.parent)

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
