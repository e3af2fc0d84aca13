"""Scenarios: the same FaceNet model trained in full, transferred, fine-tuned and served — the
registry (`names`, `get`).

Each scenario is a package: its `__init__` declares it (`SCENARIO`, a `bench.scenarios.base.
Scenario`: the spec of its suite section, its samples and figures, its headline), and its `run`
module is what the worker runs in the runtime. The declarations import no runtime; the suite,
the contract's figures, the planner and the reports read them from here. A new scenario is its
package and one line below.
"""

from __future__ import annotations

from bench.scenarios import fine_tune, full_training, inference, serving, transfer
from bench.scenarios.base import Scenario

# in the paper's order: the baseline, the transfer it is compared with, then past the paper
_REGISTRY: dict[str, Scenario] = {s.SCENARIO.name: s.SCENARIO for s in
                                  (full_training, transfer, fine_tune, inference, serving)}


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def get(name: str) -> Scenario:
    return _REGISTRY[name]
