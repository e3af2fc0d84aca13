"""Data-parallel training on tf.distribute.MultiWorkerMirroredStrategy: the cluster and TF_CONFIG
(the scaling figures are `bench.record`'s).

On one machine the launcher starts `workers` processes side by side, each pinned to its own core
group, with a TF_CONFIG naming free localhost ports. On a fleet, every host runs
`tlbench run SUITE --cluster cluster.json --task-index I`: the cluster file lists the same
`host:port` addresses on every host, in the same order, and each host starts only its own worker.
Each worker trains on its own shard of the data; gradients are all-reduced once per update, so
the update equals the global batch's (BatchNorm statistics stay per micro-batch).

Parent side only: nothing here imports TensorFlow, except `strategy()`, called in the worker.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ClusterError(ValueError):
    """A cluster file or task index that cannot be used; the message names the fix."""


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
    return Cluster(tuple(workers), task_index)


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
    found = tf.distribute.MultiWorkerMirroredStrategy()
    return found, int(task["task"]["index"]), len(task["cluster"]["worker"])
