"""Suite → ordered runs with stable ids, and each run → every process it starts (`expand`).
Pure: no I/O, no processes.

Runs are ordered scenario by scenario, each scenario's backends back to back, so the figures a
reader compares (stock vs oneDNN on one scenario) are measured minutes apart on a noisy machine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from bench import backends, scenarios
from bench.pinning import Placement, Topology, divide
from bench.suite import Suite

T = TypeVar("T")


@dataclass(frozen=True)
class Run:
    run_id: str  # stable across suite runs: compare pairs runs by it
    backend: str
    scenario: str
    params: dict[str, Any]
    model: dict[str, Any]
    data: dict[str, Any]
    backend_params: dict[str, Any] = dataclasses.field(default_factory=dict)  # [openvino]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def run_id(scenario: str, backend: str) -> str:
    return f"{scenario}/{backend}"


def scenario_of(run_id: str) -> str:
    return run_id.split("/", 1)[0]


def plan(suite: Suite) -> list[Run]:
    """Every run of the suite, in the order they are measured: the paper's stacks first, every
    scenario of theirs (so the first report already holds Figure 3 for them), then the others;
    within each, scenario by scenario in the suite's order."""
    model = dataclasses.asdict(suite.model)
    data = dataclasses.asdict(suite.data)

    def settings(backend: str) -> dict[str, Any]:  # the suite section the backend declares
        section = backends.get(backend).settings
        return dataclasses.asdict(suite.section(section)) if section else {}

    return [
        Run(run_id=run_id(scenario, backend), backend=backend, scenario=scenario,
            params=dataclasses.asdict(suite.section(scenario)), model=model, data=data,
            backend_params=settings(backend))
        for first in (True, False)
        for scenario in suite.scenarios
        for backend in suite.backends if backends.get(backend).paper == first
    ]


def interleaved(runs: list[Run], repeats: int,
                sides: Sequence[T] = ("",)) -> list[tuple[int, Run, T]]:
    """(round, run, side) in the order they are measured: round 1 of every run, then round 2,
    ... (as asv's --interleave-rounds): never a run's repeats in a row, so the drift of the
    machine falls on every run alike. With two sides (an A/B job) a run's two processes of a
    round are measured back to back, A then B in odd rounds and B then A in even ones (as asv
    continuous): each round's pair ran under one machine state (bench.paired), and neither side
    is always the one that runs second."""
    return [(k, run, side) for k in range(1, repeats + 1) for run in runs
            for side in (sides if k % 2 else sides[::-1])]


@dataclass(frozen=True)
class Process:
    """One worker process of a run: a stable id, its role, its parameters and its cores."""

    process_id: str  # the run id; "#i" one of side-by-side processes; "@..." a reference
    role: str  # "run", "instance", "worker", "alone", "one_worker_all_cores"
    params: dict[str, Any]
    placement: Placement
    task_index: int | None = None  # a data-parallel worker's index in the cluster


@dataclass(frozen=True)
class RunPlan:
    """Everything one run starts: processes side by side (`group`), then each reference alone."""

    run: Run
    placement: Placement
    kind: str  # "single", "instances", "workers"
    group: tuple[Process, ...] = ()
    references: tuple[Process, ...] = ()
    workers: int = 1  # data-parallel workers in the whole cluster
    cluster: tuple[str, ...] | None = None  # fixed host:port list (a fleet); None: localhost
    skip_reason: str | None = None
    note: str | None = None


def expand(run: Run, placement: Placement, topology: Topology,
           skip_reason: str | None = None, cluster: tuple[str, ...] | None = None,
           task_index: int = 0) -> RunPlan:
    """A planned run → its processes, each with its own id, parameters and cores.

    - inference with `instances:K`: K processes side by side, one per core group;
    - full training with `workers = N`: N data-parallel processes (one per core group; on a
      fleet, only this host's), then the references its scaling is measured against, each
      alone on the same cores: one worker on one worker's cores with one worker's share of the
      batch, and (on one host) one worker on all the placement's cores with the global batch;
    - anything else: one process on the whole placement.
    """
    if skip_reason:
        return RunPlan(run, placement, "single", skip_reason=skip_reason)
    declared = scenarios.get(run.scenario)
    workers = run.params.get("workers", 1) if declared.data_parallel else 1
    if workers > 1:
        parts = ([(task_index, placement)] if cluster
                 else list(enumerate(divide(placement, workers, topology))))
        group = tuple(Process(f"{run.run_id}#{i}", "worker", run.params, part, i)
                      for i, part in parts)
        # references time whole updates over a window, whatever the suite's measure
        reference = {**run.params, "workers": 1, "measure": "projected", "target_accuracy": 0.0}
        refs = [Process(f"{run.run_id}@alone", "alone",
                        {**reference, "batch_size": run.params["batch_size"] // workers},
                        parts[0][1])]
        if not cluster:
            refs.append(Process(f"{run.run_id}@1worker", "one_worker_all_cores", reference,
                                placement))
        return RunPlan(run, placement, "workers", group, tuple(refs), workers, cluster)
    if declared.instances and placement.instances > 1:
        group = tuple(Process(f"{run.run_id}#{i}", "instance", run.params, part)
                      for i, part in enumerate(placement.split()))
        return RunPlan(run, placement, "instances", group)
    side_by_side = " and ".join(n for n in scenarios.names() if scenarios.get(n).instances)
    note = (f"instances apply to {side_by_side}; this run used every core of the placement in "
            f"one worker") if placement.instances > 1 else None
    return RunPlan(run, placement, "single", (Process(run.run_id, "run", run.params, placement),),
                   note=note)
