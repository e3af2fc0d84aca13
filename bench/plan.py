"""Suite → ordered runs with stable ids. Pure: no I/O, no processes.

Runs are ordered scenario by scenario, each scenario's backends back to back, so the figures a
reader compares (stock vs oneDNN on one scenario) are measured minutes apart on a noisy machine.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from bench.suite import Suite


@dataclass(frozen=True)
class Run:
    run_id: str  # stable across suite runs: compare pairs runs by it
    backend: str
    scenario: str
    params: dict[str, Any]
    model: dict[str, Any]
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def run_id(scenario: str, backend: str) -> str:
    return f"{scenario}/{backend}"


def plan(suite: Suite) -> list[Run]:
    model = dataclasses.asdict(suite.model)
    data = dataclasses.asdict(suite.data)
    return [
        Run(run_id=run_id(scenario, backend), backend=backend, scenario=scenario,
            params=dataclasses.asdict(suite.scenario_spec(scenario)), model=model, data=data)
        for scenario in suite.scenarios
        for backend in suite.backends
    ]
