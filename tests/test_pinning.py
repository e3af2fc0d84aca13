from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from bench.pinning import (
    PlacementError,
    _parse_list,
    divide,
    pin_self,
    read_topology,
    resolve,
)

from .conftest import fake_sysfs


@pytest.fixture
def xeon_2s(tmp_path: Path):
    """2 sockets x 2 cores x 2 threads, as a 2-socket Xeon with SMT numbers its CPUs."""
    return read_topology(fake_sysfs(tmp_path), allowed=set(range(8)))


def test_kernel_cpu_lists_are_parsed() -> None:
    assert _parse_list("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]


def test_topology_of_a_two_socket_box_with_smt(xeon_2s) -> None:
    assert xeon_2s.describe() == {"logical_cpus": 8, "physical_cores": 4, "sockets": 2,
                                  "numa_nodes": 2, "smt": True}
    assert [c.id for c in xeon_2s.physical()] == [0, 1, 2, 3]


def test_all_takes_physical_cores_only_unless_logical_asked(xeon_2s) -> None:
    assert resolve("all", xeon_2s).cpus == (0, 1, 2, 3)
    assert resolve("all", xeon_2s, use_logical_cores=True).cpus == tuple(range(8))


def test_socket_placement_stays_on_its_socket_and_node(xeon_2s) -> None:
    p = resolve("socket:1", xeon_2s)
    assert p.cpus == (2, 3) and p.nodes == (1,) and p.threads == 2


def test_core_list_is_taken_as_written(xeon_2s) -> None:
    assert resolve("cores:0,4", xeon_2s).cpus == (0, 4)


@pytest.mark.parametrize(("asked", "fix"), [
    ("socket:3", "socket(s) [0, 1]"),
    ("cores:99", "usable CPUs are [0, 1, 2, 3, 4, 5, 6, 7]"),
    ("cores:x", "write cores:0,1"),
    ("sockets", "write 'all', 'socket:N', 'cores:LIST' or 'instances:K'"),
    ("instances:3", "4 physical cores cannot be split into 3 equal groups"),
    ("instances:x", "write instances:K"),
])
def test_impossible_placements_name_the_fix(xeon_2s, asked: str, fix: str) -> None:
    with pytest.raises(PlacementError, match=r"placement .*" + re.escape(fix)):
        resolve(asked, xeon_2s)


def test_placement_environment_sets_tf_pool_and_openmp_threads(xeon_2s) -> None:
    env = resolve("socket:0", xeon_2s).environment()
    assert env["TF_NUM_INTRAOP_THREADS"] == env["OMP_NUM_THREADS"] == "2"
    assert env["TF_NUM_INTEROP_THREADS"] == "1"
    assert env["KMP_AFFINITY"] == "granularity=fine,compact,1,0"


def test_numactl_binds_only_on_multi_node_machines(xeon_2s, tmp_path: Path) -> None:
    single = read_topology(fake_sysfs(tmp_path / "one", sockets=1), allowed={0, 1, 2, 3})
    assert resolve("all", single).command_prefix(single) == []
    prefix = resolve("socket:1", xeon_2s).command_prefix(xeon_2s)
    if prefix:  # numactl installed
        assert prefix[1:] == ["--cpunodebind=1", "--membind=1"]


def test_missing_sysfs_files_fall_back_to_the_affinity(tmp_path: Path) -> None:
    topo = read_topology(tmp_path, allowed={0, 1})
    assert [c.id for c in topo.cpus] == [0, 1] and topo.sockets == (0,)


def test_pin_self_reads_back_the_affinity_obtained() -> None:
    before = sorted(os.sched_getaffinity(0))
    try:
        assert pin_self((before[0],)) == [before[0]]
    finally:
        os.sched_setaffinity(0, before)


def test_instances_split_physical_cores_socket_by_socket(xeon_2s) -> None:
    p = resolve("instances:2", xeon_2s)
    assert p.instances == 2 and p.cpus == (0, 1, 2, 3)
    first, second = p.split()
    assert (first.cpus, first.nodes) == ((0, 1), (0,))
    assert (second.cpus, second.nodes) == ((2, 3), (1,))
    assert first.environment()["TF_NUM_INTRAOP_THREADS"] == "2"
    assert [q.cpus for q in resolve("instances:4", xeon_2s).split()] == [(0,), (1,), (2,), (3,)]
    assert p.describe()["instances"] == [[0, 1], [2, 3]]


def test_instances_with_logical_cores_keep_each_cores_siblings_together(xeon_2s) -> None:
    first, second = resolve("instances:2", xeon_2s, use_logical_cores=True).split()
    assert first.cpus == (0, 1, 4, 5) and second.cpus == (2, 3, 6, 7)


def test_a_plain_placement_is_its_own_single_instance(xeon_2s) -> None:
    p = resolve("socket:0", xeon_2s)
    assert p.instances == 1 and p.split() == [p]


def test_workers_divide_a_placement_into_core_groups_socket_by_socket(xeon_2s) -> None:
    first, second = divide(resolve("all", xeon_2s), 2, xeon_2s)
    assert (first.cpus, first.nodes) == ((0, 1), (0,))  # one worker per socket and node
    assert (second.cpus, second.nodes) == ((2, 3), (1,))
    smt = divide(resolve("all", xeon_2s, use_logical_cores=True), 2, xeon_2s)
    assert [p.cpus for p in smt] == [(0, 1, 4, 5), (2, 3, 6, 7)]  # siblings stay together
    assert [p.cpus for p in divide(resolve("socket:1", xeon_2s), 2, xeon_2s)] == [(2,), (3,)]
    with pytest.raises(PlacementError, match="3 physical cores cannot be split into 2 equal"):
        divide(resolve("cores:0,1,2", xeon_2s), 2, xeon_2s)
