"""Scenarios: the same FaceNet model trained in full, transferred, and served."""

from __future__ import annotations

from typing import Any

from bench.backends.base import Backend
from bench.scenarios.common import Progress


def run(run: dict[str, Any], backend: Backend, progress: Progress) -> dict[str, Any]:
    """Run one planned run's scenario in this (worker) process and return its figures."""
    from bench.scenarios import fine_tune, full_training, inference, transfer

    modules = {"full_training": full_training, "transfer": transfer, "fine_tune": fine_tune,
               "inference": inference}
    return modules[run["scenario"]].run(run, backend, progress)
