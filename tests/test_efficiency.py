"""Efficiency figures of a run: share of the CPU's peak, and RAPL energy (on trees in tmp)."""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path

import pytest

from bench import efficiency
from bench.efficiency import EnergyMeter, RaplUnavailable, delta_uj, read_rapl
from bench.launcher import Launcher, Limits
from bench.pinning import read_topology, resolve
from bench.plan import Run, expand

from .conftest import fake_sysfs

FIXTURE_POWERCAP = Path(__file__).parent / "fixtures/sysfs-2s-smt/sys/class/powercap"
MAX_UJ = 262_143_328_850
PEAK = {"ghz": 2.5, "frequency_source": "cpuinfo model name",
        "fp32": {"flop_per_cycle": 64, "basis": "AVX-512", "gflops_per_core": 160.0,
                 "gflops": 320.0},
        "bf16": {"flop_per_cycle": None, "basis": "no native bf16", "gflops_per_core": None,
                 "gflops": None}}


def powercap(root: Path, packages: dict[int, int], max_uj: int = MAX_UJ) -> Path:
    """A /sys/class/powercap with one RAPL package domain per entry (energy in µJ)."""
    for pkg, uj in packages.items():
        zone = root / f"intel-rapl:{pkg}"
        zone.mkdir(parents=True, exist_ok=True)
        (zone / "name").write_text(f"package-{pkg}\n")
        (zone / "energy_uj").write_text(f"{uj}\n")
        (zone / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return root


def test_the_peak_a_run_is_measured_against_is_that_of_the_cores_it_had() -> None:
    peak = efficiency.run_peak("fp32", PEAK, cores=1)
    assert peak["gflops"] == 160.0 and peak["machine_peak_gflops"] == 320.0
    assert "1 core(s) x 2.5 GHz" in peak["basis"]


def test_there_is_no_peak_without_one_for_the_precision() -> None:
    assert efficiency.run_peak("bf16", PEAK, cores=2) == {"precision": "bf16",
                                                          "reason": "no native bf16"}


def test_fraction_of_peak_is_the_run_s_gflops_over_its_cores_peak() -> None:
    from bench import record
    from bench.results import load

    doc = load(Path(__file__).parent / "fixtures/quick_vm.json")
    run = next(r for r in doc["runs"] if r["run_id"] == "inference/tf-stock")
    run["peak"] = efficiency.run_peak("fp32", PEAK, cores=1)
    figs = record.figures(run)
    assert figs["fraction of peak"].value == pytest.approx(figs["infer GFLOP/s"].value / 160.0)
    run["peak"] = efficiency.run_peak("bf16", PEAK, cores=1)
    assert record.figures(run)["fraction of peak"].value is None


def test_smt_siblings_count_as_one_core(tmp_path: Path) -> None:
    topo = read_topology(fake_sysfs(tmp_path), allowed=set(range(8)))
    assert efficiency.cores_used(topo, (0, 4)) == 1  # cpu0 and cpu4 share a core
    assert efficiency.cores_used(topo, (0, 1, 2, 3)) == 4


def test_only_package_domains_are_read() -> None:
    counters = read_rapl(FIXTURE_POWERCAP)  # has dram subdomains and an MMIO copy of package 0
    assert [(c.zone, c.name) for c in counters] == [("intel-rapl:0", "package-0"),
                                                    ("intel-rapl:1", "package-1")]


def test_counter_difference_handles_wrap_around() -> None:
    assert delta_uj(100, 250, MAX_UJ) == 150
    assert delta_uj(MAX_UJ - 1_000_000, 2_000_000, MAX_UJ) == 3_000_000


def test_meter_adds_the_energy_of_every_package(tmp_path: Path) -> None:
    root = powercap(tmp_path, {0: 1_000_000, 1: 5_000_000})
    with EnergyMeter(root, interval_s=3600) as meter:
        powercap(root, {0: 11_000_000, 1: 7_500_000})
    energy = meter.result()
    assert energy["joules"] == pytest.approx(12.5) and energy["source"] == "RAPL"
    assert [(d["name"], d["joules"]) for d in energy["domains"]] == [("package-0", 10.0),
                                                                      ("package-1", 2.5)]


def test_meter_counts_across_wraps_between_samples(tmp_path: Path) -> None:
    root = powercap(tmp_path, {0: MAX_UJ - 1_000_000})
    with EnergyMeter(root, interval_s=3600) as meter:
        powercap(root, {0: 4_000_000})  # wrapped once: 5 J
        meter.sample()  # as the sampling thread does
        powercap(root, {0: 2_000_000})  # wrapped again: MAX - 4 J + 2 J
    energy = meter.result()
    assert energy["joules"] == pytest.approx(5 + (MAX_UJ - 2_000_000) / 1e6)
    assert energy["domains"][0]["wraps"] == 2


def test_meter_samples_in_the_background(tmp_path: Path) -> None:
    root = powercap(tmp_path, {0: 0})
    with EnergyMeter(root, interval_s=0.01) as meter:
        for _ in range(1000):  # up to ~10 s on a loaded box; usually a few ms
            if meter.samples >= 3:
                break
            time.sleep(0.01)
    assert meter.result()["samples"] >= 4  # first, at least two in between, last


def test_energy_is_unavailable_where_there_is_no_rapl(tmp_path: Path) -> None:
    with EnergyMeter(tmp_path, interval_s=3600) as meter:
        pass
    energy = meter.result()
    assert energy["status"] == "unavailable" and "no RAPL package domain" in energy["reason"]


def test_root_only_counters_are_unavailable_with_the_fix(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    root = powercap(tmp_path, {0: 1})
    real = Path.read_text

    def read_text(self: Path, *args, **kwargs) -> str:
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    with pytest.raises(RaplUnavailable, match=r"root only.*chmod"):
        read_rapl(root)


FAKE_WORKER = """\
import json, sys
from pathlib import Path
# argv: -m bench.worker TASK OUT (the launcher's command line); burn 7 J on package 0
energy = Path({energy!r})
energy.write_text(str(int(energy.read_text()) + 7_000_000))
Path(sys.argv[-1]).write_text(json.dumps({{"status": "ok"}}))
"""


def test_launcher_records_the_energy_of_a_worker(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = powercap(tmp_path / "powercap", {0: 1_000_000})
    script = tmp_path / "fake-python"
    script.write_text(f"#!{sys.executable}\n"
                      + FAKE_WORKER.format(energy=str(root / "intel-rapl:0/energy_uj")))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(efficiency, "POWERCAP", root)
    topology = read_topology()
    placement = resolve(f"cores:{min(os.sched_getaffinity(0))}", topology)
    run = Run(run_id="inference/tf-onednn", backend="tf-onednn", scenario="inference",
              params={}, model={}, data={})
    record = Launcher(topology, tmp_path / "logs", python=str(script)).run(
        expand(run, placement, topology), Limits(timeout_s=60))
    assert record["status"] == "ok", record.get("error")
    assert record["energy"]["joules"] == pytest.approx(7.0)
    json.dumps(record)


def test_console_tables_show_the_share_of_peak_and_a_dash_without_it() -> None:
    from rich.console import Console

    from bench import record
    from bench.report.console import scenario_tables
    from bench.results import load

    doc = load(Path(__file__).parent / "fixtures/quick_vm.json")
    ok = [r for r in doc["runs"] if r["status"] == "ok"]
    ok[0]["peak"] = {"gflops": 2 * record.figures(ok[0])["train GFLOP/s"].value}  # 50.0%
    console = Console(width=200, record=True)
    for table in scenario_tables(doc):
        console.print(table)
    text = console.export_text()
    assert "% peak" in text and "50.0%" in text and "—" in text
