"""TensorFlow backends: stock (oneDNN off, the paper's "no CPU optimizations"), oneDNN, bf16,
and XLA (`tf-xla`: every forward pass and training step `jit_compile`d, which Keras leaves off on
CPU-only TensorFlow and under tf.distribute by default).

Stock TensorFlow with bf16 is not offered: without oneDNN, mixed_bfloat16 runs 30–45x slower
than fp32 here (reference kernels), which would measure a missing optimisation, not bf16.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from bench import knobs
from bench.backends import support
from bench.backends.base import Backend, onednn_bf16_problem, policy_problem
from bench.backends.support import UNAVAILABLE, Support
from bench.pinning import Topology

# TensorFlow's own log on an AVX2 CPU: "oneDNN supports DT_BFLOAT16 only on platforms with
# AVX-512. Falling back to the default Eigen-based implementation".
BF16 = support.bf16(
    "oneDNN's avx512_core bf16 kernels: bf16 data, fp32 arithmetic",
    Support(UNAVAILABLE, "AVX2", "TensorFlow's oneDNN has no bf16 below AVX-512; it falls back "
                                 "to Eigen's bf16 ops, which measure no oneDNN"))


def inter_op_threads() -> int:
    """The inter-op pool's size the worker was given (`knobs.INTEROP`; the harness sets 1)."""
    return int(os.environ.get(knobs.INTEROP, "1"))


class TensorFlowBackend(Backend):
    bf16_support = BF16
    def __init__(self, name: str, onednn: bool, precision: str = "fp32", xla: bool = False):
        if precision == "bf16" and not onednn:
            raise ValueError("stock TensorFlow (oneDNN off) with bf16 is refused: it runs "
                             "30-45x slower than fp32, reference kernels; use tf-onednn-bf16")
        self.name = name
        self.onednn = onednn
        self.precision = precision
        self.xla = xla

    def environment(self) -> dict[str, str]:
        env = {"TF_ENABLE_ONEDNN_OPTS": "1" if self.onednn else "0"}
        if self.onednn:
            env["ONEDNN_VERBOSE"] = "profile_create"  # one line per primitive created: the ISA
        return env

    def knobs(self, scenario: str, params: dict[str, Any], settings: dict[str, Any],
              placement: str, topology: Topology) -> tuple[knobs.Knob, ...]:
        """TensorFlow's inter-op pool beside the common knobs (its intra-op threads follow the
        placement's CPUs)."""
        return (*super().knobs(scenario, params, settings, placement, topology),
                knobs.inter_op(topology))

    def start(self, threads: int) -> dict[str, Any]:
        import keras
        import tensorflow as tf
        from tensorflow.python.util import _pywrap_util_port

        # TF's pools are sized from TF_NUM_*_THREADS at import; set them again explicitly so a
        # runtime that ignored the variables is still pinned, and read back what TF reports.
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads())
        onednn = bool(_pywrap_util_port.IsMklEnabled())
        if onednn != self.onednn:
            raise RuntimeError(f"{self.name} asked for oneDNN {'on' if self.onednn else 'off'} "
                               f"but TensorFlow reports it {'on' if onednn else 'off'}")
        if self.precision == "bf16":
            tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
        return {
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "onednn_enabled": onednn,
            "precision_policy": tf.keras.mixed_precision.global_policy().name,
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "jit_compile": self.xla,
        }

    def obtained_problem(self, doc: dict[str, Any]) -> str | None:
        if self.precision != "bf16":
            return None
        return policy_problem(doc) or onednn_bf16_problem(doc)

    def strategy(self) -> tuple[Any, int, int]:
        found = super().strategy()
        if self.xla and found[2] > 1:
            raise ValueError(f"{self.name} compiles each step with XLA, which "
                             f"MultiWorkerMirroredStrategy's all-reduce is not: set workers = 1")
        return found

    def trainer(self, model: Any, spec: Any, strategy: Any = None) -> Any:
        from bench.training import make_trainer

        return make_trainer(model, spec, strategy, jit_compile=self.xla)

    def predictor(self, loaded: Any, batch_size: int) -> Callable[[np.ndarray], np.ndarray]:
        import tensorflow as tf

        forward = tf.function(lambda x: loaded(x, training=False), reduce_retracing=True,
                              jit_compile=self.xla)

        def run(batch: np.ndarray) -> np.ndarray:
            return forward(tf.convert_to_tensor(batch)).numpy()

        return run
