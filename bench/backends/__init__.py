"""Backends: one small interface that every software stack implements.

The parent process only reads `environment()` (the variables a runtime reads at import); all else
runs in the worker, after pinning. A backend that cannot run a scenario says why (`skip_reason`),
and the run is recorded as skipped with that reason, never dropped.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np


class Backend(ABC):
    name: str
    precision: str

    @abstractmethod
    def environment(self) -> dict[str, str]:
        """Variables the runtime reads when it is imported; set by the parent for the worker."""

    @abstractmethod
    def start(self, threads: int) -> dict[str, Any]:
        """Import and configure the runtime in the worker; return what was obtained."""

    @abstractmethod
    def predictor(self, model: Any, batch_size: int) -> Callable[[np.ndarray], np.ndarray]:
        """A function running the model's forward pass on one batch, returning numpy."""

    def skip_reason(self, scenario: str) -> str | None:
        """Why this backend cannot run `scenario` on this machine, or None when it can."""
        return None


def get(name: str) -> Backend:
    from bench.backends.tensorflow import TensorFlowBackend

    registry: dict[str, Backend] = {
        "tf-stock": TensorFlowBackend("tf-stock", onednn=False),
        "tf-onednn": TensorFlowBackend("tf-onednn", onednn=True),
    }
    return registry[name]
