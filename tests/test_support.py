"""What each backend can run on each CPU class, decided before any worker starts; what a run
obtained checked against what it asked. Every class is tested on every machine: the ISA flags of
the four classes are faked for the planner, and recorded results of each class are read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from bench import backends, cli, machine, summary
from bench.backends import support
from bench.backends.support import EMULATED, NATIVE, UNAVAILABLE, UNKNOWN
from bench.report import console as console_report
from bench.report import machine as machine_report
from bench.worker import onednn_summary

from .conftest import only_result, write_suite

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCE = Path(__file__).resolve().parents[2] / "shared/reference-results"
ZEN3 = REFERENCE / "epyc-zen3-2vcpu_20261206T205716Z_default.json"

# /proc/cpuinfo flags of one CPU of each class (the ones the tool reads), as seen on the VMs
CPUS = {
    "Zen 3 (AVX2)": {"avx", "avx2", "fma"},
    "Cascade Lake (AVX-512, VNNI)": {"avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni"},
    "Skylake-SP (AVX-512, no VNNI)": {"avx", "avx2", "fma", "avx512f", "avx512bw"},
    "Zen 4 (AVX512_BF16)": {"avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16"},
    "Sapphire Rapids (AMX)": {"avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16",
                              "amx_tile", "amx_bf16", "amx_int8"},
}


def _isa(flags: set[str]) -> dict[str, bool]:
    return {f: f in flags for f in machine.ISA_FLAGS}


BF16 = ("tf-onednn-bf16", "itex-bf16", "openvino-bf16", "torch-bf16")
# what each bf16 backend is on each class, and the int8 backend's instructions
EXPECTED = {
    "Zen 3 (AVX2)": ({"tf-onednn-bf16": UNAVAILABLE, "itex-bf16": UNAVAILABLE,
                      "openvino-bf16": UNAVAILABLE, "torch-bf16": EMULATED}, "AVX2, no VNNI"),
    "Skylake-SP (AVX-512, no VNNI)": (dict.fromkeys(BF16, EMULATED), "AVX-512, no VNNI"),
    "Cascade Lake (AVX-512, VNNI)": (dict.fromkeys(BF16, EMULATED), "AVX-512 VNNI"),
    "Zen 4 (AVX512_BF16)": (dict.fromkeys(BF16, NATIVE), "AVX-512 VNNI"),
    "Sapphire Rapids (AMX)": (dict.fromkeys(BF16, NATIVE), "AMX-INT8"),
}


@pytest.fixture(autouse=True)
def _itex_present(monkeypatch) -> None:
    monkeypatch.setenv("TLBENCH_ITEX_PYTHON", "/bin/sh")  # any existing interpreter path


@pytest.mark.parametrize("cpu", list(CPUS))
def test_each_class_gets_its_declared_support_and_the_planner_follows_it(cpu: str) -> None:
    isa = _isa(CPUS[cpu])
    bf16, int8_isa = EXPECTED[cpu]
    for name in backends.names():
        got = backends.get(name).support(isa)
        want = bf16.get(name, NATIVE)
        assert got.level == want, (name, got)
        default = backends.get(name).skip_reason("inference", isa)
        forced = backends.get(name).skip_reason("inference", isa, emulated=True)
        if want == NATIVE:
            assert default is None and forced is None, (name, default)
        elif want == EMULATED:
            assert "no native bf16" in default and "measures no bf16 hardware" in default
            assert forced is None, "tests may run what this CPU emulates"
        else:
            assert default == forced and "cannot run bf16 on this CPU" in default
            assert got.how in default and "AVX512_BF16 or AMX" in default
    assert backends.get("openvino-int8").support(isa).isa == int8_isa


def test_no_isa_flags_means_unknown_and_the_run_goes_ahead_to_be_checked() -> None:
    got = backends.get("openvino-bf16").support({})
    assert got.level == UNKNOWN and backends.get("openvino-bf16").skip_reason("inference", {}) \
        is None


@pytest.mark.parametrize(("fixture", "cpu_class"), [
    (FIXTURES / "contract_vm.json", "amx"), (FIXTURES / "default_vm.json", "avx512"),
    (REFERENCE / "epyc-zen5-2vcpu_20261202T055705Z_default.json", "avx512_bf16"),
    (ZEN3, "avx2")])
def test_recorded_machines_of_each_class_are_classed_from_their_flags(fixture: Path,
                                                                     cpu_class: str) -> None:
    if not fixture.is_file():
        pytest.skip(f"{fixture} is not here (shared/ lies beside the clone)")
    assert support.cpu_class(json.loads(fixture.read_text())["machine"]["isa"]) == cpu_class


def _fake_cpu(monkeypatch, flags: set[str]) -> None:
    """The tool's read of /proc/cpuinfo answers these flags (the rest of the machine is real)."""
    real = machine.cpuinfo

    def fake(path=machine.CPUINFO):
        fields = real(path)
        return {**fields, "flags": " ".join(sorted(flags))}

    monkeypatch.setattr(machine, "cpuinfo", fake)


@pytest.mark.parametrize(("cpu", "words"), [
    ("Zen 3 (AVX2)", "cannot run bf16 on this CPU"),
    ("Cascade Lake (AVX-512, VNNI)", "which measures no bf16 hardware")])
def test_tlbench_run_skips_bf16_below_native_with_the_reason_and_starts_no_worker(
        tmp_path: Path, monkeypatch, cpu: str, words: str) -> None:
    _fake_cpu(monkeypatch, CPUS[cpu])
    suite = write_suite(tmp_path, backends=("tf-onednn-bf16", "itex-bf16", "openvino-bf16"),
                        scenarios=("inference",))
    out = tmp_path / "results"
    assert cli.main(["run", str(suite), "--out", str(out)]) == 0
    doc = only_result(out)
    assert {r["status"] for r in doc["runs"]} == {"skipped"}
    assert all(words in r["reason"] for r in doc["runs"]), [r["reason"] for r in doc["runs"]]
    assert not list(out.glob("*/*.logs/*.log")), "no worker was started"


def test_tlbench_machine_prints_what_each_backend_can_run_on_this_cpu(monkeypatch,
                                                                      capsys) -> None:
    _fake_cpu(monkeypatch, CPUS["Zen 3 (AVX2)"])
    assert cli.main(["machine", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["support"]["cpu_class"] == support.CLASSES["avx2"]
    rows = {r["backend"]: r for r in facts["support"]["backends"]}
    assert rows.keys() == set(backends.names())
    assert rows["itex-bf16"]["level"] == UNAVAILABLE and rows["itex-bf16"]["suite"] == "skipped"
    assert rows["openvino-int8"] == {**rows["openvino-int8"], "level": NATIVE,
                                     "isa": "AVX2, no VNNI", "suite": "runs"}
    console = Console(width=200, record=True)
    console.print(machine_report.support_table(facts["support"]))
    text = console.export_text()
    assert "AVX2 without AVX-512" in text and "SIGABRT" in text and "emulated" in text


def test_the_zen3_reference_report_shows_bf16_skipped_and_int8_labelled_avx2() -> None:
    if not ZEN3.is_file():
        pytest.skip(f"{ZEN3} is not here (shared/ lies beside the clone)")
    doc = json.loads(ZEN3.read_text())
    bf16 = [r for r in doc["runs"] if r["backend"] in BF16]
    assert bf16 and all(r["status"] == "skipped" and "bf16" in r["reason"] for r in bf16)
    [row] = [r for r in summary.precision_rows(doc) if r["backend"] == "openvino-int8"]
    assert row["isa"] == "AVX2, no VNNI" and row["speed"]
    kernels = [r for r in summary.kernel_rows(doc) if r["run_id"].endswith("openvino-int8")]
    assert kernels and {r["isa"] for r in kernels} == {"AVX2, no VNNI"}
    assert all(any("avx2" in k for k in r["top"]) for r in kernels), "its kernels are AVX2's"
    console = Console(width=250, record=True)
    console_report.show(doc, console)
    text = console.export_text()
    assert "AVX2, no VNNI" in text and "skipped: " in text and "no native bf16" in text


# ---- what a run obtained, against what it asked ----------------------------------------------

def test_onednn_summary_counts_compute_primitives_by_source_type() -> None:
    lines = [
        "onednn_verbose,v1,primitive,create:cache_miss,cpu,convolution,brg_conv_fwd:avx2,"
        "forward_inference,src:f32::blocked:acdb::f0 wei:f32::blocked:Acdb8a::f0,,alg,mb1\n",
        "onednn_verbose,v1,primitive,create:cache_miss,cpu,reorder,jit:uni,undef,"
        "src:bf16::blocked:abcd::f0 dst:f32::blocked:acdb::f0,,,1x3\n",
        "onednn_verbose,primitive,create:cache_miss,cpu,inner_product,brgemm:avx512_core_amx,"
        "forward_inference,src_bf16::blocked:ab::f0 wei_bf16::blocked:AB16b::f0,,,mb2\n",
    ]
    assert onednn_summary(lines)["data_types"] == {"f32": 1, "bf16": 1}, "reorders only convert"


def test_a_bf16_onednn_run_without_bf16_primitives_is_a_problem() -> None:
    tf_bf16, itex_bf16 = backends.get("tf-onednn-bf16"), backends.get("itex-bf16")
    runtime = {"precision_policy": "mixed_bfloat16"}
    good = {"runtime": runtime, "onednn": {"data_types": {"bf16": 50, "f32": 3}}}
    assert tf_bf16.obtained_problem(good) is None and itex_bf16.obtained_problem(good) is None
    eigen = {"runtime": runtime, "onednn": {"data_types": {"f32": 3}}}
    assert "no bf16 primitive (by source type: f32 ×3)" in tf_bf16.obtained_problem(eigen)
    silent = {"runtime": runtime}
    assert "no ONEDNN_VERBOSE lines" in itex_bf16.obtained_problem(silent)
    policy = {"runtime": {"precision_policy": "float32"}, **{"onednn": good["onednn"]}}
    assert "obtained float32" in tf_bf16.obtained_problem(policy)
    assert "obtained float32" in backends.get("torch-bf16").obtained_problem(policy)
    assert backends.get("tf-onednn").obtained_problem(eigen) is None, "fp32 asks nothing more"


def test_openvino_bf16_read_back_as_f32_or_int8_run_in_f32_is_a_problem() -> None:
    ov_bf16, ov8 = backends.get("openvino-bf16"), backends.get("openvino-int8")
    compiled = {"hint": "LATENCY", "streams": 1}
    got = {"runtime": {"obtained": {"ir": "x.xml", "latency_bs1": {**compiled,
                                                                    "precision": "f32"}}}}
    assert ov_bf16.obtained_problem(got) == ("asked OpenVINO for inference precision bf16, "
                                             "obtained latency_bs1: f32")
    bf16 = {"runtime": {"obtained": {"latency_bs1": {**compiled, "precision": "bf16"}}},
            "kernels": {"asked": "bf16", "precision_s": {"bf16": 0.9, "f32": 0.1}}}
    assert ov_bf16.obtained_problem(bf16) is None
    int8 = {"runtime": {"obtained": {"f32_ir": "x.xml", "calibration": {"ir": "x.int8.xml"},
                                     "latency_bs1": {**compiled, "precision": "f32"}}},
            "kernels": {"asked": "int8", "precision_s": {"u8": 0.9, "f32": 0.1}}}
    assert ov8.obtained_problem(int8) is None
    int8["kernels"]["precision_s"] = {"u8": 0.1, "f32": 0.9}
    assert ov8.obtained_problem(int8).startswith("asked for int8 but spent 10% of its profiled")
