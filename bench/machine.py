"""What machine and software a result was measured on (read without importing TensorFlow)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import psutil

from bench import __version__
from bench.pinning import read_topology

# ISA features that decide which oneDNN kernels (and so which speed) a run gets.
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
PACKAGES = ("tensorflow-cpu", "tensorflow", "keras", "intel-extension-for-tensorflow", "openvino",
            "numpy", "psutil", "rich")


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


def machine_id() -> str:
    """Directory name for this machine's results: $TLBENCH_MACHINE_ID or the host name."""
    raw = os.environ.get("TLBENCH_MACHINE_ID") or platform.node() or "unknown-host"
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", raw).strip("-.") or "unknown-host"


def describe() -> dict:
    info = cpuinfo()
    flags = set(info.get("flags", "").split())
    topology = read_topology()
    return {
        "id": machine_id(),
        "hostname": platform.node(),
        "cpu_model": info.get("model name", platform.processor() or "unknown"),
        "isa": {flag: flag in flags for flag in ISA_FLAGS},
        "hypervisor": "hypervisor" in flags,
        **topology.describe(),
        "cpus_allowed": sorted(os.sched_getaffinity(0)),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "os": platform.platform(),
    }


def software() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {"python": platform.python_version(), "executable": sys.executable,
            "tlbench": __version__, "packages": versions}


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
