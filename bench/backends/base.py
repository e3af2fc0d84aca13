"""The interface every software stack implements (`Backend`), and what backends share.

The parent process reads only `environment()`, `python`, `support()` and `skip_reason()` (no
runtime is imported there); everything else runs in the worker, after pinning:
`start` (import and configure the runtime) → `load` (the Keras model in the runtime's form) →
`predictor` / `throughput` / `extractor`. A backend that cannot run a scenario here says why,
and the run is recorded as skipped with that reason, never dropped.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import knobs as knobs_mod
from bench import loadgen, scenarios
from bench.backends import support as isa_support
from bench.backends.support import EMULATED, UNAVAILABLE, Support
from bench.data.lfw import pad_batch
from bench.data.synthetic import default_cache_dir
from bench.measure import time_calls
from bench.pinning import Topology
from bench.record import Series

# extraction: (batches, how many) -> each batch's outputs in order, their series, how they ran
Embed = Callable[[Iterator[np.ndarray], int], tuple[list[np.ndarray], Series, dict[str, Any]]]


@dataclass(frozen=True)
class Calibration:
    """What a quantising backend calibrates on: images of the training split only (decoded,
    standardised, in a seeded order), and the suite's quantisation settings."""

    images: np.ndarray  # [n, H, W, 3] float32
    asked: int  # the suite's calibration_images (more than the split has: all of it)
    preset: str
    fast_bias_correction: bool


def compile_cache_dir(runtime: str) -> Path:
    """Where a runtime keeps the code it compiled, across worker processes and suites: in the
    tlbench cache (`$TLBENCH_CACHE`, else ~/.cache/tlbench), so that removing that folder makes
    the next run cold."""
    return default_cache_dir() / "compile" / runtime


def cache_facts(runtime: str, variable: str, hits: int, misses: int) -> dict[str, Any]:
    """What a run records of its compiled code (`Backend.compile_cache`): the runtime, the
    folder its cache variable named, the hits and misses, and cached / cold / partly cached."""
    state = "cached" if hits and not misses else "cold" if not hits else "partly cached"
    return {"runtime": runtime, "dir": os.environ.get(variable), "hits": hits,
            "misses": misses, "state": state}


def importable(python: str, module: str) -> bool:
    """Whether `python` (this interpreter, or another environment's) can import `module`."""
    if python == sys.executable:
        return importlib.util.find_spec(module) is not None
    return _imports_elsewhere(python, module)


@functools.cache  # a second interpreter's start: once per module a parent process asks about
def _imports_elsewhere(python: str, module: str) -> bool:
    try:
        return subprocess.run([python, "-c", f"import {module}"], capture_output=True,
                              timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class Backend(ABC):
    name: str
    precision: str  # "fp32", "bf16" or "int8"
    trains: bool = True
    calibrates: bool = False  # load() needs a Calibration (post-training quantisation)
    bf16_support: isa_support.Table | None = None  # what its bf16 does on each CPU class
    settings: str | None = None  # the suite section of its settings (`configure`), if any
    config: type | None = None  # that section's class: a frozen dataclass with `check(where)`
    # one of the stacks the mission measures the paper's claim on (stock TensorFlow, oneDNN,
    # ITEX, OpenVINO, fp32): a suite runs them first, so that its first report has Figure 3
    paper: bool = False

    def support(self, isa: dict[str, bool]) -> Support:
        """What this backend's precision is on a CPU with these ISA flags (`backends.support`)."""
        tables = {"fp32": isa_support.FP32, "int8": isa_support.INT8, "bf16": self.bf16_support}
        table = tables[self.precision]
        if table is None:
            raise NotImplementedError(f"{self.name}: no bf16 support table declared")
        return isa_support.on(table, isa)

    @property
    def python(self) -> str:
        """The interpreter that runs this backend's workers."""
        return sys.executable

    def environment(self) -> dict[str, str]:
        """Variables the runtime reads when it is imported; set by the parent for the worker."""
        return {}

    def compile_cache(self) -> dict[str, Any] | None:
        """After the scenario, in the worker: whether the runtime's compiled code came from its
        persistent cache (`state`: "cached", "cold" or "partly cached", with the counts); None
        for a runtime that keeps no such cache."""
        return None

    def skip_reason(self, scenario: str, isa: dict[str, bool],
                    emulated: bool = False) -> str | None:
        """Why this backend cannot run `scenario` on this machine, or None when it can.
        `emulated`: run a precision this CPU only emulates (tests of what it computes)."""
        declared = scenarios.get(scenario)
        if declared.trains and not self.trains:
            return f"{self.name} does not train: it runs inference and transfer extraction only"
        for module, install in declared.needs:
            if not importable(self.python, module):
                return (f"{scenario} needs {module}, which {self.name}'s environment "
                        f"({self.python}) does not have: {install}")
        got = self.support(isa)
        where = isa_support.WHERE_NATIVE.get(self.precision, "another CPU")
        if got.level == UNAVAILABLE:
            return (f"{self.name} cannot run {self.precision} on this CPU "
                    f"({isa_support.class_label(isa)}, no native {self.precision}): {got.how}; "
                    f"run it on {where}")
        if got.level == EMULATED and not emulated:
            return (f"this CPU has no native {self.precision} ({isa_support.class_label(isa)}): "
                    f"{self.name} would run {got.how}, which measures no {self.precision} "
                    f"hardware; run it on {where}")
        return None

    def knobs(self, scenario: str, params: dict[str, Any], settings: dict[str, Any],
              placement: str, topology: Topology) -> tuple[knobs_mod.Knob, ...]:
        """What `tlbench tune` may change of this backend's `scenario` run on `topology`, the
        suite's values first (`params`: the scenario's section, `settings`: this backend's,
        `placement`): the placement (cores, threads, `instances:K`), the scenario's batch and
        the memory allocator. Backends add their own."""
        found = [knobs_mod.Knob("placement", knobs_mod.placements(
                     topology, placement, scenarios.get(scenario).instances),
                     knobs_mod.PLACEMENT, "placement", "placement_obtained.cpus"),
                 knobs_mod.batch(scenario, params), knobs_mod.allocator()]
        return tuple(k for k in found if k is not None)

    @abstractmethod
    def start(self, threads: int) -> dict[str, Any]:
        """Import and configure the runtime in the worker; return what was obtained."""

    def configure(self, params: dict[str, Any]) -> None:  # noqa: B027 (most have none)
        """The suite's settings of this backend (the run's `backend_params`), before start."""

    def load(self, model: Any, weights: Path, calibration: Calibration | None = None) -> Any:
        """The Keras model in this runtime's form (`weights`: the file its weights came from)."""
        return model

    @abstractmethod
    def predictor(self, loaded: Any, batch_size: int) -> Callable[[np.ndarray], np.ndarray]:
        """A function running one forward pass on a batch of `batch_size`, returning numpy."""

    def throughput(self, loaded: Any, batch: np.ndarray, warmup_s: float,
                   duration_s: float) -> tuple[Series, dict[str, Any]]:
        """Back-to-back batches: their series, and how they were driven. Runtimes with
        asynchronous queues override this."""
        predict = self.predictor(loaded, len(batch))
        warm, timed = time_calls(lambda: predict(batch), warmup_s=warmup_s,
                                 duration_s=duration_s)
        return (Series.of(len(batch), warm[0], warm[1:], timed),
                {"mode": "synchronous batches", "asynchronous": False})

    def server(self, loaded: Any, sizes: tuple[int, ...],
               latency: bool = False) -> loadgen.Server:
        """Serving under LoadGen (bench.loadgen): one batch at a time, in the dispatching
        thread, on a predictor per batch shape (`sizes`, ascending), a batch padded to the
        smallest that holds it. `latency`: one query at a time (SingleStream), as the inference
        scenario's batch-1 latency runs it. Runtimes with asynchronous queues override this."""
        predict = {size: self.predictor(loaded, size) for size in sizes}

        def submit(batch: np.ndarray, done: Callable[[np.ndarray], None]) -> None:
            size = loadgen.bucket(len(batch), sizes)
            done(predict[size](pad_batch(batch, size))[:len(batch)])

        return loadgen.Server(submit, sizes, lambda: None,
                              f"one batch at a time, padded to the next of batch "
                              f"{', '.join(map(str, sizes))}")

    def extractor(self, loaded: Any, batch_size: int) -> Embed:
        """Transfer's extraction pass over batches of `batch_size`: synchronous calls of the
        predictor, each timed (the first apart). Runtimes with asynchronous queues override
        this."""
        predict = self.predictor(loaded, batch_size)

        def embed(batches: Iterator[np.ndarray], count: int):
            outputs, seconds = [], []
            for batch in batches:
                t0 = time.perf_counter()
                outputs.append(predict(batch))
                seconds.append(time.perf_counter() - t0)
            return (outputs, Series.of(batch_size, seconds[0], [], seconds[1:]),
                    {"mode": "synchronous batches", "asynchronous": False})

        return embed

    def cluster_environment(self, cluster: Any, index: int) -> dict[str, str]:
        """Parent side: the variables that make a worker task `index` of `cluster` (a
        `bench.distributed.Cluster`) for this runtime's data-parallel engine."""
        return {"TF_CONFIG": cluster.tf_config(index)}

    def strategy(self) -> tuple[Any, int, int]:
        """In the worker, before any training op: (the data-parallel engine's handle — a
        tf.distribute strategy, torch.distributed — or None, this worker's index, workers)."""
        from bench import distributed

        return distributed.strategy()

    def engine(self) -> dict[str, str]:
        """In a data-parallel worker: the engine `strategy()` joined, named with its version."""
        import tensorflow as tf

        return {"engine": "MultiWorkerMirroredStrategy", "engine_version": tf.__version__}

    def trainer(self, model: Any, spec: Any, strategy: Any = None) -> Any:
        """The training steps of `model` on this runtime (a `bench.training.Trainer`)."""
        from bench.training import make_trainer

        return make_trainer(model, spec, strategy)

    def train_head(self, train_x: np.ndarray, train_y: np.ndarray, classes: int, spec: Any,
                   evaluate: Callable | None = None) -> dict[str, Any]:
        """The transfer head trained on the embeddings (TensorFlow's, unless the runtime has
        its own; OpenVINO only extracts)."""
        from bench.heads import train_head

        return train_head(train_x, train_y, classes, spec, evaluate)

    def obtained_problem(self, doc: dict[str, Any]) -> str | None:
        """Why the worker's finished record shows another precision than this backend asked
        for (None when it ran what it asked). Read in the worker, after the run and after
        oneDNN's lines were summarised into `doc["onednn"]`: such a run is failed, its figures
        never shown as this precision."""
        return None

    def kernels(self, loaded: Any, batch: np.ndarray) -> dict[str, Any] | None:
        """A short profiled pass outside every timed window: the kernels that executed and the
        precision each ran in (runtimes that report them; oneDNN's own are in `onednn`)."""
        return None


def policy_problem(doc: dict[str, Any], asked: str = "mixed_bfloat16") -> str | None:
    """A Keras bf16 run whose global precision policy is not the one it set."""
    got = (doc.get("runtime") or {}).get("precision_policy")
    return None if got == asked else f"asked for Keras's {asked} policy, obtained {got}"


def onednn_bf16_problem(doc: dict[str, Any]) -> str | None:
    """A bf16 run on a oneDNN runtime that created no primitive on bf16 data (its
    ONEDNN_VERBOSE summary, `doc["onednn"]["data_types"]`: primitives by source data type)."""
    types = (doc.get("onednn") or {}).get("data_types")
    if types is None:
        return ("asked for bf16 but oneDNN reported no primitive it created (no "
                "ONEDNN_VERBOSE lines): the bf16 kernels cannot be shown to have run")
    if not types.get("bf16"):
        found = ", ".join(f"{t} ×{n}" for t, n in sorted(types.items())) or "none"
        return f"asked for bf16 but oneDNN created no bf16 primitive (by source type: {found})"
    return None
