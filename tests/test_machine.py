"""Machine facts from a recorded /sys and /proc/cpuinfo of a 2-socket Xeon with SMT, and from
the bare trees of VMs and containers (tests/fixtures/sysfs-2s-smt)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench import backends, machine
from bench.cli import main
from bench.pinning import read_cpu_list, read_topology
from bench.report.machine import cpu_list

FIXTURE = Path(__file__).parent / "fixtures/sysfs-2s-smt"
SYS, CPUINFO = FIXTURE / "sys", FIXTURE / "proc/cpuinfo"
ALL = set(range(16))


@pytest.fixture
def sys_copy(tmp_path: Path) -> Path:
    """A writable copy of the recorded tree, for tests that take files away."""
    return Path(shutil.copytree(SYS, tmp_path / "sys"))


def test_recorded_two_socket_tree_has_sixteen_cpus_on_eight_cores() -> None:
    topo = read_topology(SYS, allowed=ALL)
    assert topo.describe() == {"logical_cpus": 16, "physical_cores": 8, "sockets": 2,
                               "numa_nodes": 2, "smt": True}
    assert [c.id for c in topo.physical()] == list(range(8))


def test_smt_siblings_come_from_thread_siblings_list() -> None:
    cores = read_topology(SYS, allowed=ALL).cores()
    assert cores[0] == {"socket": 0, "core": 0, "cpus": [0, 8]}
    assert cores[-1] == {"socket": 1, "core": 5, "cpus": [7, 15]}  # core ids have gaps
    assert [c["core"] for c in cores if c["socket"] == 0] == [0, 1, 4, 5]


def test_siblings_outside_the_affinity_are_still_named() -> None:
    cores = read_topology(SYS, allowed={0, 1}).cores()
    assert [c["cpus"] for c in cores] == [[0, 8], [1, 9]]


def test_isolated_cpus_are_read_and_missing_file_means_unknown(tmp_path: Path) -> None:
    assert read_cpu_list(SYS, "isolated") == [7, 15]
    assert read_cpu_list(tmp_path, "isolated") is None


def test_numa_nodes_carry_their_cpus_and_memory() -> None:
    nodes = machine.numa_nodes(SYS)
    assert [n["cpus"] for n in nodes] == [[0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]]
    assert [n["memory_total_gib"] for n in nodes] == [125.4, 126.0]
    assert nodes[1]["memory_free_gib"] == 122.1


def test_node_without_meminfo_has_unknown_memory(sys_copy: Path) -> None:
    (sys_copy / "devices/system/node/node1/meminfo").unlink()
    assert machine.numa_nodes(sys_copy)[1]["memory_total_gib"] is None


def test_cpuinfo_excerpt_names_the_model_and_amx() -> None:
    info = machine.cpuinfo(CPUINFO)
    assert info["model name"] == "Intel(R) Xeon(R) Gold 6434"
    assert {"amx_tile", "amx_bf16", "amx_int8", "avx512_bf16"} <= set(info["flags"].split())
    assert machine.cpuid(info) == {"vendor": "GenuineIntel", "family": 6, "model": 143,
                                   "stepping": 8, "codename": "Sapphire Rapids"}


def test_family_6_model_85_is_told_apart_by_stepping() -> None:
    def codename(stepping: str) -> str:
        return machine.cpuid({"cpu family": "6", "model": "85", "stepping": stepping})["codename"]

    assert [codename(s) for s in ("4", "7", "11")] == ["Skylake-SP", "Cascade Lake",
                                                      "Cooper Lake"]


def test_base_frequency_prefers_cpufreq_base_frequency() -> None:
    freq = machine.base_frequency(SYS, machine.cpuinfo(CPUINFO))
    assert (freq["ghz"], freq["source"]) == (3.7, "cpufreq base_frequency")
    assert freq["found"]["cpufreq cpuinfo_max_freq (may be the turbo maximum)"] == 4.1


def test_base_frequency_falls_back_to_the_model_name_then_max_freq(sys_copy: Path) -> None:
    (sys_copy / "devices/system/cpu/cpu0/cpufreq/base_frequency").unlink()
    named = {"model name": "Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz"}
    assert machine.base_frequency(sys_copy, named)["source"] == "cpuinfo model name"
    freq = machine.base_frequency(sys_copy, {"model name": "Intel(R) Xeon(R) Gold 6434"})
    assert (freq["ghz"], freq["source"]) == (4.1, "cpufreq cpuinfo_max_freq (may be the turbo "
                                                  "maximum)")


def test_base_frequency_is_unknown_when_nothing_says_it(tmp_path: Path) -> None:
    assert machine.base_frequency(tmp_path, {}) == {"ghz": None, "source": None, "found": {}}


@pytest.mark.parametrize(("model", "units"), [
    ("Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz", 2),
    ("Intel(R) Xeon(R) Platinum 8380 CPU @ 2.30GHz", 2),
    ("Intel(R) Xeon(R) Gold 5118 CPU @ 2.30GHz", 1),
    ("Intel(R) Xeon(R) Gold 5122 CPU @ 3.60GHz", 2),
    ("Intel(R) Xeon(R) Silver 4114 CPU @ 2.20GHz", 1),
    ("Intel(R) Xeon(R) Gold 5318Y CPU @ 2.10GHz", 2),
    ("Intel(R) Xeon(R) Gold 6434", 2),
])
def test_fma_units_follow_the_xeon_model_name(model: str, units: int) -> None:
    assert machine.fma_units(model)[0] == units


def test_fma_units_of_an_anonymous_vm_cpu_are_an_assumption_said_so() -> None:
    units, why = machine.fma_units("Intel(R) Xeon(R) Processor @ 2.50GHz")
    assert units == 2 and "assumed" in why


@pytest.mark.parametrize(("flags", "fma", "fp32", "bf16"), [
    ({"avx512f", "avx2", "fma", "avx512_bf16", "amx_bf16"}, 2, 64, 1024),
    ({"avx512f", "avx2", "fma", "avx512_bf16"}, 2, 64, 128),
    ({"avx512f", "avx2", "fma"}, 1, 32, None),
    ({"avx2", "fma"}, 2, 32, None),
    ({"avx"}, 2, 16, None),
    (set(), 2, None, None),
])
def test_flop_per_cycle_per_isa(flags: set[str], fma: int, fp32: int | None,
                                bf16: int | None) -> None:
    table = machine.flop_per_cycle(flags, fma)
    assert (table["fp32"][0], table["bf16"][0]) == (fp32, bf16)
    assert table["fp32"][1] and table["bf16"][1]  # every figure states its basis


def test_peak_of_the_recorded_box_is_cores_times_ghz_times_flop_per_cycle() -> None:
    facts = machine.describe(SYS, CPUINFO, allowed=ALL)
    p = facts["peak"]
    assert (p["cores"], p["ghz"], p["fma_units"]) == (8, 3.7, 2)
    assert p["fp32"]["gflops"] == pytest.approx(8 * 3.7 * 64)
    assert p["bf16"]["gflops"] == pytest.approx(8 * 3.7 * 1024)
    assert "AMX-BF16" in p["bf16"]["basis"] and "FMA" in p["fp32"]["basis"]


def test_peak_is_unknown_without_a_frequency() -> None:
    p = machine.peak(2, {"ghz": None, "source": None}, {"avx512f"}, "")
    assert p["fp32"]["flop_per_cycle"] == 64 and p["fp32"]["gflops"] is None


def test_describe_keeps_the_flat_keys_and_adds_the_whole_machine() -> None:
    facts = machine.describe(SYS, CPUINFO, allowed={0, 1})
    assert facts["physical_cores"] == 2 and facts["sockets"] == 1  # what this process may use
    assert facts["isa"]["amx_bf16"] and facts["cpu_model"] == "Intel(R) Xeon(R) Gold 6434"
    topo = facts["topology"]
    assert (topo["physical_cores"], topo["sockets"], topo["numa_nodes"]) == (8, 2, 2)
    assert topo["isolated_cpus"] == [7, 15] and len(topo["cores"]) == 8
    assert facts["peak"]["cores"] == 8
    assert [d["name"] for d in facts["energy"]["domains"]] == ["package-0", "package-1"]
    json.dumps(facts)  # goes into the result file as is


def test_describe_survives_a_bare_container_tree(tmp_path: Path) -> None:
    missing = tmp_path / "no-cpuinfo"
    facts = machine.describe(tmp_path, missing, allowed={0, 1})
    assert facts["topology"]["numa"] == [] and facts["topology"]["isolated_cpus"] is None
    assert facts["base_frequency"]["ghz"] is None and facts["peak"]["fp32"]["gflops"] is None
    assert facts["cpuid"]["family"] is None
    assert facts["energy"]["status"] == "unavailable"


def test_every_backend_belongs_to_one_stack() -> None:
    listed = [name for _, names, *_ in machine.STACKS for name in names]
    assert sorted(listed) == sorted(backends.names())


def test_itex_versions_are_read_from_its_dist_info_without_starting_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    venv = tmp_path / "venv-itex"
    site = venv / "lib/python3.11/site-packages"
    for name, version in (("intel_extension_for_tensorflow", "2.15.0.0"),
                          ("tensorflow", "2.15.1")):
        info = site / f"{name}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\n"
                                       f"Version: {version}\n")
    (venv / "bin").mkdir()
    (venv / "bin/python").write_text("#!/bin/false\n")  # never run
    monkeypatch.setenv("TLBENCH_ITEX_PYTHON", str(venv / "bin/python"))
    itex = next(s for s in machine.backend_stacks() if s["stack"] == "ITEX")
    assert itex["status"] == "installed"
    assert itex["packages"] == {"intel-extension-for-tensorflow": "2.15.0.0",
                                "tensorflow": "2.15.1"}


def test_missing_itex_environment_names_make_itex(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TLBENCH_ITEX_PYTHON", str(tmp_path / "nowhere/bin/python"))
    itex = next(s for s in machine.backend_stacks() if s["stack"] == "ITEX")
    assert itex["status"] == "missing" and "make itex" in itex["reason"]


def test_cpu_lists_are_written_as_the_kernel_writes_them() -> None:
    assert cpu_list([0, 1, 2, 3, 8, 10, 11]) == "0-3,8,10-11"
    assert (cpu_list([]), cpu_list(None)) == ("none", "unknown")


def test_machine_command_prints_tables_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["machine", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert {"peak", "topology", "energy", "base_frequency"} <= set(facts["machine"])
    assert {s["stack"] for s in facts["software"]["backends"]} == {
        "TensorFlow", "ITEX", "OpenVINO", "PyTorch", "JAX"}
    assert main(["machine"]) == 0
    out = capsys.readouterr().out
    for heading in ("CPU", "Topology", "NUMA nodes", "Peak (theoretical)", "Backends installed",
                    "Energy (RAPL"):
        assert heading in out


# --- a machine identity that tells machines apart; a peak on every machine ---------------------

REFERENCE = Path(__file__).resolve().parents[2] / "shared/reference-results"


def _machine_of(name: str) -> dict:
    import json

    path = (Path(__file__).parent / "fixtures" / name if not name.startswith("epyc")
            else REFERENCE / name)
    if not path.is_file():
        pytest.skip(f"{path} is not beside the repository")
    return json.loads(path.read_text())["machine"]


def test_the_hardware_id_tells_apart_machines_of_one_host_name() -> None:
    clx = [_machine_of(n) for n in ("default_vm.json", "quick_vm.json", "mixed_vm.json")]
    spr = _machine_of("contract_vm.json")
    epyc = _machine_of("epyc-zen5-2vcpu_20261202T055054Z_quick.json")
    assert {m["hostname"] for m in (*clx, spr, epyc)} == {"vm"}
    ids = {machine.hardware_id(m) for m in clx}
    assert len(ids) == 1 and next(iter(ids)).startswith("intel-xeon-2.50ghz-1s2c-")
    assert len({next(iter(ids)), machine.hardware_id(spr), machine.hardware_id(epyc)}) == 3
    assert machine.hardware_id(epyc).startswith("amd-epyc-1s2c-")


def test_the_results_folder_is_the_hardware_id_unless_the_user_names_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    facts = machine.describe(SYS, CPUINFO)
    assert facts["id"] == facts["hardware_id"] == machine.hardware_id(facts)
    monkeypatch.setenv("TLBENCH_MACHINE_ID", "lab box/7")
    assert machine.machine_id(facts) == "lab-box-7"


def test_a_vm_without_cpufreq_or_a_clock_in_its_name_takes_cpu_mhz_labelled(
        tmp_path: Path) -> None:
    freq = machine.base_frequency(tmp_path, {"model name": "AMD EPYC", "cpu MHz": "2596.000"})
    assert freq["ghz"] == 2.596 and freq["source"] == machine.CPU_MHZ_SOURCE
    assert "a floor" in freq["source"]


def test_the_epyc_reference_gets_a_peak_and_its_fast_bf16_run_is_shown_above_it() -> None:
    """The reference VM says only "AMD EPYC" and 2596 MHz: Zen 5 (family 26), 2 full-width
    AVX-512 FMA units assumed; its OpenVINO bf16 extraction then ran above the stated peak."""
    from bench import efficiency, record
    from bench.results import load

    epyc = _machine_of("epyc-zen5-2vcpu_20261202T055705Z_default.json")
    units, why = machine.fma_units(epyc["cpu_model"], epyc["cpuid"])
    assert units == 2 and "family 26" in why and "assumed" in why
    flags = {k for k, v in epyc["isa"].items() if v} | {"fma"}
    freq = machine.base_frequency(Path("/nonexistent"), {"cpu MHz": "2596.000"})
    peak = machine.peak(2, freq, flags, epyc["cpu_model"], epyc["cpuid"])
    assert peak["bf16"]["gflops"] == pytest.approx(2 * 2.596 * 128)  # 665 GFLOP/s
    doc = load(REFERENCE / "epyc-zen5-2vcpu_20261202T055705Z_default.json")
    run = next(r for r in doc["runs"] if r["run_id"] == "transfer/openvino-bf16")
    run["peak"] = efficiency.run_peak("bf16", peak, cores=2)
    share = record.figures(run)["fraction of peak"]
    assert share.value > 1 and share.note.startswith("above 100% of the stated peak")
    from bench.report.console import share_of_peak

    assert share_of_peak(share.value).endswith("(above the stated peak)")


STAT_TEXT = """cpu  300 0 100 1000 0 0 0 90 0 0
cpu0 100 0 50 500 0 0 0 50 0 0
cpu1 200 0 50 500 0 0 0 40 0 0
intr 12345
"""


def test_steal_is_the_share_of_the_runs_cpus_ticks_the_hypervisor_took(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text(STAT_TEXT)
    before = machine.cpu_ticks((0,), stat)
    assert before == (50, 700, 150) and machine.cpu_ticks((0, 1), stat) == (90, 1490, 400)
    stat.write_text(STAT_TEXT.replace("cpu0 100 0 50 500 0 0 0 50", "cpu0 160 0 50 500 0 0 0 90"))
    stolen = machine.steal(before, machine.cpu_ticks((0,), stat))
    assert stolen["share"] == pytest.approx(40 / 100) and "steal" in stolen["source"]
    assert machine.steal(before, before) is None  # no time passed: no share


def test_no_steal_column_or_no_stat_file_means_unknown_steal(tmp_path: Path) -> None:
    old = tmp_path / "stat"
    old.write_text("cpu0 100 0 50 500 0 0 0\n")  # a kernel before steal accounting
    assert machine.cpu_ticks((0,), old) is None
    assert machine.cpu_ticks((0,), tmp_path / "absent") is None
    assert machine.cpu_ticks((7,), old) is None  # a CPU the file does not list
    assert machine.steal(None, machine.Ticks(1, 2, 1)) is None
    assert machine.foreign_load(None, machine.Ticks(1, 2, 1), 0.0) is None


def test_foreign_load_is_the_cpus_busy_time_less_the_workers_own(tmp_path: Path,
                                                                 monkeypatch) -> None:
    monkeypatch.setattr(machine.os, "sysconf", lambda name: 100)  # USER_HZ
    before = machine.Ticks(steal=0, total=1000, busy=300)
    after = machine.Ticks(steal=0, total=1400, busy=600)  # 4 s of CPU time, 3 s of it busy
    load = machine.foreign_load(before, after, own_s=1.0)
    assert load["share"] == pytest.approx(2.0 / 4.0) and "other processes" in load["source"]
    assert machine.foreign_load(before, after, own_s=3.5)["share"] == 0.0, "never below 0"
    assert machine.foreign_load(before, before, 0.0) is None  # no time passed: no share


def test_a_process_trees_cpu_time_counts_its_live_children() -> None:
    import subprocess
    import sys
    import time

    before = machine.tree_cpu_seconds()
    child = subprocess.Popen([sys.executable, "-c", "import time\nend = time.process_time() + "
                              "0.3\nwhile time.process_time() < end: pass\ntime.sleep(30)"])
    try:
        deadline = time.monotonic() + 20
        while machine.tree_cpu_seconds() - before < 0.3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert machine.tree_cpu_seconds() - before >= 0.3, "the child's CPU time is counted"
    finally:
        child.kill()
        child.wait()
