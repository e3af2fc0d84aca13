"""Rich tables of `tlbench machine`: CPU, topology, peak FLOP/s, backends, what each can run
on this CPU, energy."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text


def cpu_list(ids: list[int] | None) -> str:
    """[0, 1, 2, 3, 8] → '0-3,8' (as the kernel writes CPU lists); None → 'unknown'."""
    if ids is None:
        return "unknown"
    if not ids:
        return "none"
    ids = sorted(ids)
    parts, start = [], ids[0]
    for prev, cur in zip(ids, [*ids[1:], None], strict=True):
        if cur != prev + 1:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = cur
    return ",".join(parts)


def _unknown(value: Any, fmt: str = "") -> str:
    return "unknown" if value is None else format(value, fmt)


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f}"


def _facts(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, value)
    return table


def cpu_table(m: dict[str, Any]) -> Table:
    cid, freq = m.get("cpuid", {}), m.get("base_frequency", {})
    isa = m.get("isa", {})
    ghz = freq.get("ghz")
    others = {k: v for k, v in freq.get("found", {}).items() if k != freq.get("source")}
    freq_text = (f"{ghz:.2f} GHz (from {freq.get('source')})" if ghz is not None
                 else "unknown (no cpufreq base_frequency, no '@ GHz' in the model name)")
    if others:
        freq_text += "; also " + ", ".join(f"{v:.2f} GHz from {k}" for k, v in others.items())
    return _facts("CPU", [
        ("model", str(m.get("cpu_model"))),
        ("cpuid", f"{cid.get('vendor') or '?'} family {_unknown(cid.get('family'))} model "
                  f"{_unknown(cid.get('model'))} stepping {_unknown(cid.get('stepping'))}"
                  + (f" ({cid['codename']})" if cid.get("codename") else "")),
        ("hypervisor", "yes (a VM: topology and frequency are what the guest is told)"
         if m.get("hypervisor") else "no"),
        ("base frequency", freq_text),
        ("ISA present", ", ".join(k for k, v in isa.items() if v) or "none of those tracked"),
        ("ISA absent", ", ".join(k for k, v in isa.items() if not v) or "—"),
        ("memory", f"{m.get('memory_gib')} GiB"),
        ("this process may use", f"CPUs {cpu_list(m.get('cpus_allowed'))}"),
        ("kernel", str(m.get("kernel"))),
    ])


def topology_table(m: dict[str, Any]) -> Group:
    topo = m.get("topology", {})
    isolated = set(topo.get("isolated_cpus") or [])
    nodes = topo.get("numa", [])
    node_of = {cpu: n["node"] for n in nodes for cpu in n["cpus"]}
    summary = Text(f"{topo.get('sockets')} socket(s), {topo.get('numa_nodes')} NUMA node(s), "
                   f"{topo.get('physical_cores')} physical cores, {topo.get('logical_cpus')} "
                   f"logical CPUs, SMT {'on' if topo.get('smt') else 'off'}; isolated CPUs: "
                   f"{cpu_list(topo.get('isolated_cpus'))}")
    table = Table(title="Topology", title_justify="left")
    for col in ("socket", "NUMA node", "cores", "logical CPUs", "physical cores (SMT siblings)"):
        table.add_column(col, justify="right" if col == "cores" else "left")
    sockets: dict[int, list[dict[str, Any]]] = {}
    for core in topo.get("cores", []):
        sockets.setdefault(core["socket"], []).append(core)
    for socket, cores in sorted(sockets.items()):
        cpus = sorted(c for core in cores for c in core["cpus"])
        socket_nodes = sorted({node_of[c] for c in cpus if c in node_of})
        groups = " ".join("/".join(f"{c}{'*' if c in isolated else ''}" for c in core["cpus"])
                          for core in cores)
        table.add_row(str(socket), cpu_list(socket_nodes) if socket_nodes else "unknown",
                      str(len(cores)), cpu_list(cpus), groups)
    if isolated:
        table.caption = "* isolated (isolcpus): the scheduler puts nothing there unless pinned"
    return Group(table, summary)


def numa_table(m: dict[str, Any]) -> Table:
    table = Table(title="NUMA nodes", title_justify="left")  # memory: node<N>/meminfo
    for col in ("node", "CPUs", "MemTotal", "MemFree"):
        table.add_column(col, justify="left" if col in ("node", "CPUs") else "right")
    nodes = m.get("topology", {}).get("numa", [])
    for n in nodes:
        table.add_row(str(n["node"]), cpu_list(n["cpus"]),
                      _unknown(n["memory_total_gib"], ".1f") + " GiB",
                      _unknown(n["memory_free_gib"], ".1f") + " GiB")
    if not nodes:
        table.add_row("unknown", "no /sys/devices/system/node here", "—", "—")
    return table


def peak_table(m: dict[str, Any]) -> Group:
    p = m.get("peak", {})
    table = Table(title=f"Peak (theoretical) = {p.get('formula')}", title_justify="left")
    for col in ("precision", "FLOP/cycle/core", "basis", "cores x GHz", "GFLOP/s per core",
                "peak GFLOP/s"):
        table.add_column(col, justify="left" if col in ("precision", "basis") else "right")
    for precision in ("fp32", "bf16"):
        fig = p.get(precision, {})
        table.add_row(precision, str(fig.get("flop_per_cycle") or "—"), str(fig.get("basis")),
                      f"{_unknown(p.get('cores'))} x {_unknown(p.get('ghz'), '.2f')}",
                      _num(fig.get("gflops_per_core")), _num(fig.get("gflops")))
    notes = []
    if p.get("fma_units_basis"):
        notes.append(f"FMA units per core ({p.get('fma_units')}): not readable from /sys or "
                     f"cpuid; {p['fma_units_basis']}")
    notes.append(f"frequency: {p.get('frequency_source') or 'unknown'}; {p.get('caveat')}")
    return Group(table, *(Text(n, style="dim") for n in notes))


def backends_table(stacks: list[dict[str, Any]]) -> Table:
    table = Table(title="Backends installed", title_justify="left")
    table.add_column("stack", no_wrap=True)
    for col in ("backends", "versions", "interpreter", "status"):
        table.add_column(col, overflow="fold")
    for s in stacks:
        status = (Text("installed", style="green") if s["status"] == "installed"
                  else Text(f"missing: {s.get('reason')}", style="yellow"))
        table.add_row(s["stack"], ", ".join(s["backends"]),
                      ", ".join(f"{k} {v}" for k, v in s["packages"].items()) or "—",
                      s["python"], status)
    return table


_LEVEL_STYLE = {"native": "green", "emulated": "yellow", "unavailable": "red", "unknown": "yellow"}


def support_table(support: dict[str, Any]) -> Table:
    """What each backend's precision is on this CPU (`bench.backends.support`)."""
    table = Table(title=f"What each backend can run on this CPU: {support['cpu_class']}",
                  title_justify="left",
                  caption="native: measured; emulated: skipped by suites (fp32 arithmetic, no "
                          "hardware of that precision); unavailable: always skipped",
                  caption_justify="left")
    for col in ("backend", "precision", "on this CPU", "instructions", "what runs", "suite"):
        table.add_column(col, overflow="fold", no_wrap=col == "backend")
    for r in support["backends"]:
        table.add_row(r["backend"], r["precision"],
                      Text(r["level"], style=_LEVEL_STYLE.get(r["level"], "")), r["isa"],
                      r["how"], r["suite"])
    return table


def energy_table(m: dict[str, Any]) -> Table | Text:
    e = m.get("energy", {})
    if e.get("status") != "available":
        return Text(f"Energy (RAPL): unavailable: {e.get('reason')}; runs record "
                    f"energy as unavailable", style="yellow")
    table = Table(title="Energy (RAPL package domains)", title_justify="left",
                  caption="each run records the joules counted while its worker ran",
                  caption_justify="left")
    for col in ("domain", "name", "counter", "wraps at"):
        table.add_column(col, justify="left" if col in ("domain", "name") else "right")
    for d in e["domains"]:
        table.add_row(d["zone"], d["name"], f"{d['energy_j']:,.1f} J", f"{d['wraps_at_j']:,.0f} J")
    return table


def render(facts: dict[str, Any]) -> Group:
    m = facts["machine"]
    return Group(cpu_table(m), topology_table(m), numa_table(m), peak_table(m),
                 backends_table(facts["software"].get("backends", [])),
                 *([support_table(facts["support"])] if facts.get("support") else []),
                 energy_table(m))
