"""Backends: the registry of every software stack (`names`, `get`), each a `Backend`
(`bench.backends.base`) declared in its own module with what it can run on each CPU class
(`bench.backends.support`)."""

from __future__ import annotations

from bench.backends.base import (
    Backend,
    Calibration,
    Embed,
    onednn_bf16_problem,
    policy_problem,
)
from bench.backends.support import EMULATED, UNAVAILABLE

__all__ = ["Backend", "Calibration", "Embed", "get", "names",
           "onednn_bf16_problem", "policy_problem", "support_rows"]


def support_rows(isa: dict[str, bool]) -> list[dict[str, str]]:
    """Every backend's precision on a CPU with these ISA flags, as `tlbench machine` shows it:
    native, emulated or unavailable, on which instructions, and whether a suite runs it."""
    rows = []
    for name in names():
        backend = get(name)
        got = backend.support(isa)
        rows.append({"backend": name, "precision": backend.precision, "level": got.level,
                     "isa": got.isa, "how": got.how,
                     "suite": "skipped" if got.level in (EMULATED, UNAVAILABLE) else "runs"})
    return rows


def names() -> tuple[str, ...]:
    return tuple(_registry())


def get(name: str) -> Backend:
    return _registry()[name]


def _registry() -> dict[str, Backend]:
    from bench.backends.itex import ItexBackend
    from bench.backends.keras3 import JaxBackend, TorchBackend
    from bench.backends.openvino import OpenVinoBackend
    from bench.backends.tensorflow import TensorFlowBackend

    backends: list[Backend] = [
        _paper(TensorFlowBackend("tf-stock", onednn=False)),
        _paper(TensorFlowBackend("tf-onednn", onednn=True)),
        TensorFlowBackend("tf-onednn-bf16", onednn=True, precision="bf16"),
        TensorFlowBackend("tf-xla", onednn=True, xla=True),
        _paper(ItexBackend("itex")),
        ItexBackend("itex-bf16", precision="bf16"),
        _paper(OpenVinoBackend("openvino")),
        OpenVinoBackend("openvino-bf16", precision="bf16"),
        OpenVinoBackend("openvino-int8", precision="int8"),
        TorchBackend("torch"),
        TorchBackend("torch-compile", compiled=True),
        TorchBackend("torch-bf16", precision="bf16"),
        JaxBackend("jax"),
        JaxBackend("jax-classic", classic=True),
    ]
    return {b.name: b for b in backends}


def _paper(backend: Backend) -> Backend:
    backend.paper = True
    return backend
