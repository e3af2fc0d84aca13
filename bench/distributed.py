"""Data-parallel training: the cluster, and each engine's way into it (the scaling figures are
`bench.record`'s).

Engines: TensorFlow's MultiWorkerMirroredStrategy (TF_CONFIG), PyTorch's DistributedDataParallel
over Gloo (torchrun's variables: MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE), JAX's
multi-process runtime with CPU collectives over Gloo (JAX_COORDINATOR_ADDRESS, JAX_PROCESS_ID,
JAX_NUM_PROCESSES).

On one machine the launcher starts `workers` processes side by side, each pinned to its own core
group, with a cluster of free localhost ports. On a fleet, every host runs
`tlbench run SUITE --cluster cluster.json --task-index I`: the cluster file lists the same
`host:port` addresses on every host, in the same order, and each host starts only its own worker.
MWMS serves on every worker's port; DDP's rendezvous (its TCP store) and JAX's coordinator are
task 0's `host:port`, and Gloo then connects the workers on ports of its own (DDP's through the
interface that reaches task 0).
Each worker trains on its own shard of the data; gradients are all-reduced once per update, so
the update equals the global batch's (BatchNorm statistics stay per micro-batch). A worker that
cannot reach its peers within the suite's `join_timeout_s` fails, naming them.

Parent side: nothing here imports a runtime, except `strategy()`, `torch_process_group()` and
`jax_join()`, called in the worker.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ClusterError(ValueError):
    """A cluster file or task index that cannot be used; the message names the fix."""


JOIN_TIMEOUT_VAR = "TLBENCH_JOIN_TIMEOUT_S"  # set by the launcher from the suite's join_timeout_s
# A data-parallel worker's progress phases around its engine's join (its runtime's import, then
# its first collective): the launcher stops a worker that began joining and has not joined
# within the join timeout plus JOIN_MARGIN_S (the import's share) — a bound that holds whatever
# the engine does (MWMS waits for ever, JAX aborts the process), where an engine's own timeout
# (torch's) names the cause first.
JOINING, JOINED = "join the cluster", "joined the cluster"
JOIN_MARGIN_S = 30.0

_CLUSTER_HOW = ('write {"worker": ["host1:12345", "host2:12345"]}: the same file on every '
                "host, one host:port per worker, task 0 (the chief) first")


@dataclass(frozen=True)
class Cluster:
    """Where the workers of one distributed run listen, and which of them is this process's."""

    workers: tuple[str, ...]  # host:port, in task order
    task_index: int = 0

    def tf_config(self, index: int) -> str:
        return json.dumps({"cluster": {"worker": list(self.workers)},
                           "task": {"type": "worker", "index": index}})

    def torchrun_environment(self, index: int) -> dict[str, str]:
        """What `torchrun` sets for worker `index`: task 0's host:port is the rendezvous."""
        host, _, port = self.workers[0].rpartition(":")
        return {"MASTER_ADDR": host, "MASTER_PORT": port, "RANK": str(index),
                "WORLD_SIZE": str(len(self.workers))}

    def jax_environment(self, index: int) -> dict[str, str]:
        """jax.distributed's coordinator (task 0's host:port; JAX reads this variable itself),
        this process's id and the count, for `jax_join()`."""
        return {"JAX_COORDINATOR_ADDRESS": self.workers[0], "JAX_PROCESS_ID": str(index),
                "JAX_NUM_PROCESSES": str(len(self.workers))}


def free_ports(n: int) -> list[int]:
    """n distinct TCP ports free on localhost now (held open together so none repeats)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in socks]


def local_cluster(n: int) -> Cluster:
    return Cluster(tuple(f"localhost:{p}" for p in free_ports(n)))


def load_cluster(path: str | Path, task_index: int) -> Cluster:
    """Read a cluster file (JSON, {"worker": ["host:port", ...]}) and check the task index."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ClusterError(f"{p}: no such cluster file; {_CLUSTER_HOW}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ClusterError(f"{p}: not a readable JSON cluster file ({exc}); "
                           f"{_CLUSTER_HOW}") from None
    workers = doc.get("worker") if isinstance(doc, dict) else None
    if (not isinstance(workers, list) or len(workers) < 2
            or not all(isinstance(w, str) and _is_address(w) for w in workers)):
        raise ClusterError(f"{p}: needs a \"worker\" list of at least two host:port strings; "
                           f"{_CLUSTER_HOW}")
    if len(set(workers)) != len(workers):
        raise ClusterError(f"{p}: a worker address is listed twice: {workers}")
    extra = sorted(set(doc) - {"worker"})
    if extra:
        raise ClusterError(f"{p}: unknown key(s) {extra}; only \"worker\" is read "
                           f"(every worker is a peer; task 0 is the chief)")
    if not 0 <= task_index < len(workers):
        raise ClusterError(f"--task-index {task_index}: {p} lists {len(workers)} workers; give "
                           f"this host's position in it, 0 to {len(workers) - 1}")
    _check_port_free(workers[task_index], task_index, p)
    return Cluster(tuple(workers), task_index)


def _check_port_free(address: str, task_index: int, path: Path) -> None:
    """This host's worker listens on its address's port (MWMS's server; DDP's store and JAX's
    coordinator on task 0): taken by another process, no engine says so plainly."""
    port = int(address.rpartition(":")[2])
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("", port))
        except OSError as exc:
            raise ClusterError(f"{path}: port {port} of this host's address {address} (task "
                               f"{task_index}) is taken on this host ({exc.strerror}): give "
                               f"task {task_index} a free port in the cluster file, the same "
                               f"file on every host") from None


def _is_address(text: str) -> bool:
    host, _, port = text.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


def strategy() -> tuple[Any, int, int]:
    """In the worker, before any TensorFlow op: (strategy, this worker's index, workers).

    MultiWorkerMirroredStrategy when the launcher set TF_CONFIG, else TensorFlow's default
    (single-process) strategy, so one code path serves both.
    """
    import tensorflow as tf

    config = os.environ.get("TF_CONFIG")
    if not config:
        return tf.distribute.get_strategy(), 0, 1
    task = json.loads(config)
    # its collectives (the all-reduces too) fail past the join timeout, not wait for ever
    found = tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=tf.distribute.experimental.CommunicationOptions(
            timeout_seconds=join_timeout().total_seconds()))
    # MWMS connects at its first collective: one now, so that joining ends here
    found.reduce(tf.distribute.ReduceOp.SUM, found.run(lambda: tf.constant(1.0)), axis=None)
    return found, int(task["task"]["index"]), len(task["cluster"]["worker"])


def join_timeout() -> dt.timedelta:
    """How long a worker waits for its peers (the suite's join_timeout_s, passed by the
    launcher)."""
    return dt.timedelta(seconds=float(os.environ.get(JOIN_TIMEOUT_VAR, "120")))


def interface_to(host: str) -> str:
    """The name of this machine's network interface that holds the address it reaches `host`
    from (Gloo binds its connections to one; by default it picks the address of the machine's
    hostname, which need not be on the network the cluster's hosts share)."""
    import psutil

    try:
        target = socket.getaddrinfo(host, None, socket.AF_INET)[0][4][0]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((target, 9))  # UDP: no packet is sent, the route is chosen
            local = probe.getsockname()[0]
    except OSError as exc:
        raise ClusterError(f"cannot reach task 0's host {host!r} from here ({exc}): check the "
                           f"cluster file's first address and this host's network") from None
    for name, addresses in psutil.net_if_addrs().items():
        if any(a.family == socket.AF_INET and a.address == local for a in addresses):
            return name
    raise ClusterError(f"no network interface holds {local}, the address this host reaches "
                       f"{host} from")


def torch_process_group() -> tuple[Any, int, int]:
    """In the worker, before the model is built: (torch.distributed, this worker's rank,
    workers) joined over Gloo when the launcher set torchrun's variables, else (None, 0, 1)."""
    if "WORLD_SIZE" not in os.environ:
        return None, 0, 1
    import torch.distributed as dist

    os.environ.setdefault("GLOO_SOCKET_IFNAME", interface_to(os.environ["MASTER_ADDR"]))
    try:
        dist.init_process_group("gloo", timeout=join_timeout())
    except Exception as exc:  # torch raises DistStoreError, RuntimeError, ... all of one cause
        raise _cannot_join(f"worker {os.environ['RANK']} of {os.environ['WORLD_SIZE']}",
                           f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}",
                           exc) from None
    return dist, dist.get_rank(), dist.get_world_size()


def _cannot_join(who: str, where: str, exc: BaseException) -> ClusterError:
    return ClusterError(
        f"{who} could not join the cluster at {where} within "
        f"{join_timeout().total_seconds():g} s: {exc}. Check that every host of the cluster file "
        f"started, that task 0's port is free on its host, and that the hosts reach each other "
        f"(raise join_timeout_s for slow starts)")


@functools.cache
def jax_join() -> tuple[int, int]:
    """In the worker, before JAX's first computation (once): join the cluster the launcher named
    (jax.distributed, CPU collectives over Gloo); (this process's index, processes), (0, 1)
    without a cluster."""
    if "JAX_NUM_PROCESSES" not in os.environ:
        return 0, 1
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    count, index = int(os.environ["JAX_NUM_PROCESSES"]), int(os.environ["JAX_PROCESS_ID"])
    try:
        # JAX aborts the process at its own timeout: the launcher's, shorter, reports first
        jax.distributed.initialize(num_processes=count, process_id=index,
                                   initialization_timeout=int(join_timeout().total_seconds()
                                                              + 2 * JOIN_MARGIN_S))
    except Exception as exc:  # XlaRuntimeError (DEADLINE_EXCEEDED, UNAVAILABLE), ...
        raise _cannot_join(f"process {index} of {count}", os.environ["JAX_COORDINATOR_ADDRESS"],
                           exc) from None
    return jax.process_index(), jax.process_count()
