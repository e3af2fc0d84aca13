"""What `tlbench tune` may change, declared by each backend: knob domains from fixture
topologies (1 socket of 2 cores; 2 sockets of 2 cores with SMT), the suite's values first."""

from __future__ import annotations

import pytest

from bench import backends, knobs
from bench.pinning import read_topology
from bench.plan import plan
from bench.suite import SuiteError, parse

from .conftest import fake_sysfs


@pytest.fixture
def small(tmp_path):
    return read_topology(fake_sysfs(tmp_path / "small", sockets=1, cores=2, threads=1),
                         allowed={0, 1})


@pytest.fixture
def two_sockets(tmp_path):
    return read_topology(fake_sysfs(tmp_path / "two", sockets=2, cores=2, threads=2),
                         allowed=set(range(8)))


def _knobs(backend: str, scenario: str, topology, suite: str = "") -> dict[str, knobs.Knob]:
    run = next(r for r in plan(parse(f'[suite]\nbackends = ["{backend}"]\nscenarios = '
                                     f'["{scenario}"]\n' + suite)))
    found = backends.get(backend).knobs(run.scenario, run.params, run.backend_params, "all",
                                        topology)
    return {k.name: k for k in found}


def test_placements_come_from_the_topology_the_suite_s_first(small, two_sockets) -> None:
    assert knobs.placements(small, "all", instances=False) == ("all", "cores:0")
    assert knobs.placements(small, "all", instances=True) == ("all", "cores:0", "instances:2")
    assert knobs.placements(two_sockets, "all", instances=True) == (
        "all", "socket:0", "socket:1", "cores:0", "instances:2", "instances:4")
    assert knobs.placements(two_sockets, "cores:1", instances=False)[0] == "cores:1"


def test_every_backend_offers_placement_batch_and_allocator(small) -> None:
    found = _knobs("torch", "inference", small, "[inference]\nbatch_size = 32\n")
    assert list(found)[:3] == ["placement", "inference.batch_size", "allocator"]
    assert found["inference.batch_size"].values == (32, 1, 2, 4, 8, 16, 64)
    assert found["inference.batch_size"].key == "inference.batch_size"
    training = _knobs("tf-stock", "full_training", small,
                      "[full_training]\nbatch_size = 96\nmicro_batch = 16\n")
    # a micro-batch must divide the global batch: 64 does not divide 96
    assert training["full_training.micro_batch"].values == (16, 4, 8, 32)
    assert training["placement"].values == ("all", "cores:0")  # no instances for training


def test_openvino_adds_its_queue_s_knobs_and_torch_its_openmp_wait(small, two_sockets) -> None:
    found = _knobs("openvino", "inference", two_sockets,
                   "[openvino]\nhint = \"latency\"\nstreams = 2\n")
    assert found["openvino.hint"].values == ("latency", "throughput", "none")
    assert found["openvino.streams"].values == (2, 0, 1, 3, 4)  # up to the 4 physical cores
    assert found["openvino.requests"].values == (0, *range(1, 9))
    assert "openvino.hint" not in _knobs("openvino", "full_training", small)  # no queue there
    # OpenVINO's workers abort with another allocator preloaded: glibc's alone, and why
    assert found["allocator"].values == ("glibc",) and "aborts" in found["allocator"].absent
    torch = _knobs("torch", "inference", small)
    wait = torch["omp_wait_policy"]
    assert wait.values == ("default", "passive", "active")
    assert wait.env("default") == {} and wait.env("passive") == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert "omp_wait_policy" not in _knobs("tf-onednn", "inference", small)


def test_tensorflow_adds_its_inter_op_pool_and_itex_intel_openmp_s_blocktime(small,
                                                                            two_sockets) -> None:
    tf = _knobs("tf-onednn", "inference", two_sockets)
    inter = tf["inter_op_threads"]
    assert inter.values == (1, 2, 4)  # the harness's 1, then powers of two to the 4 cores
    assert inter.env(1) == {} and inter.env(4) == {"TF_NUM_INTEROP_THREADS": "4"}
    assert _knobs("tf-stock", "full_training", small)["inter_op_threads"].values == (1, 2)
    assert "kmp_blocktime" not in tf and "inter_op_threads" not in _knobs("openvino",
                                                                           "inference", small)
    itex = _knobs("itex", "transfer", small)
    assert itex["kmp_blocktime"].values == ("default", "0", "200")
    assert itex["kmp_blocktime"].env("0") == {"KMP_BLOCKTIME": "0"}
    assert "inter_op_threads" in itex


def test_the_allocator_is_offered_only_where_its_library_is(tmp_path, monkeypatch) -> None:
    jemalloc = tmp_path / "libjemalloc.so.2"
    monkeypatch.setattr(knobs, "ALLOCATORS", {"jemalloc": str(jemalloc),
                                              "tcmalloc": str(tmp_path / "absent.so")})
    none = knobs.allocator()
    assert none.values == ("glibc",) and "apt-get install libjemalloc2" in none.absent
    jemalloc.write_bytes(b"")
    found = knobs.allocator()
    assert found.values == ("glibc", "jemalloc") and not found.absent
    assert found.env("glibc") == {} and found.env("jemalloc") == {"LD_PRELOAD": str(jemalloc)}


def test_a_value_not_offered_is_refused_naming_the_domain() -> None:
    knob = knobs.Knob("inference.batch_size", (32, 1, 2), knobs.SECTION, "inference.batch_size",
                      "params.batch_size")
    knob.check(2)
    with pytest.raises(ValueError, match=r"inference.batch_size = 3 is not offered here; its "
                                         r"values on this machine: 32, 1, 2"):
        knob.check(3)
    with pytest.raises(ValueError, match="a value twice"):
        knobs.Knob("x", (1, 1), knobs.SECTION, "x", "x")


def test_torch_compile_offers_its_mode_on_cpu_the_suite_s_first(small) -> None:
    mode = _knobs("torch-compile", "inference", small)["torch_compile.mode"]
    # reduce-overhead and max-autotune add only CUDA graphs to these two: nothing on a CPU
    assert mode.values == ("default", "max-autotune-no-cudagraphs")
    assert (mode.how, mode.key) == (knobs.SECTION, "torch_compile.mode")
    assert mode.obtained == "runtime.torch_compile_mode"
    given = _knobs("torch-compile", "full_training", small,
                   '[torch_compile]\nmode = "reduce-overhead"\n')["torch_compile.mode"]
    assert given.values == ("reduce-overhead", "default", "max-autotune-no-cudagraphs")
    assert "torch_compile.mode" not in _knobs("torch", "inference", small)
    with pytest.raises(SuiteError, match=r"torch_compile.mode"):
        parse('[torch_compile]\nmode = "fastest"\n')
