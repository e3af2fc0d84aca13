"""Intel Extension for TensorFlow: TensorFlow 2.15 + the ITEX CPU plugin, in `.venv-itex`.

ITEX registers itself whenever it is installed (a TensorFlow plugin; no variable turns it off),
so it lives in its own environment and only these backends' workers run there. It runs oneDNN
through OpenMP, which reads OMP_NUM_THREADS / KMP_AFFINITY / KMP_BLOCKTIME (set by the placement).
Its bf16 is its own auto mixed precision, switched on through ITEX_AUTO_MIXED_PRECISION.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bench import knobs
from bench.backends import support
from bench.backends.base import onednn_bf16_problem
from bench.backends.support import UNAVAILABLE, Support
from bench.backends.tensorflow import TensorFlowBackend, inter_op_threads
from bench.pinning import Topology

REPO = Path(__file__).resolve().parent.parent.parent


def itex_python() -> Path:
    """The interpreter of the ITEX environment: $TLBENCH_ITEX_PYTHON or <repo>/.venv-itex."""
    return Path(os.environ.get("TLBENCH_ITEX_PYTHON") or REPO / ".venv-itex/bin/python")


# ITEX's AVX2 CPU backend cannot create a bf16 convolution: "could not create a primitive
# descriptor for a convolution forward propagation primitive", then SIGABRT (seen on a Zen 3).
BF16 = support.bf16(
    "oneDNN's avx512_core bf16 kernels: bf16 data, fp32 arithmetic",
    Support(UNAVAILABLE, "AVX2", "ITEX's AVX2 backend creates no bf16 convolution: its worker "
                                 "aborts (SIGABRT)"))


class ItexBackend(TensorFlowBackend):
    bf16_support = BF16

    def __init__(self, name: str, precision: str = "fp32"):
        super().__init__(name, onednn=True, precision=precision)

    @property
    def python(self) -> str:
        return str(itex_python())

    def environment(self) -> dict[str, str]:
        env = {"ONEDNN_VERBOSE": "profile_create"}
        if self.precision == "bf16":
            env.update(ITEX_AUTO_MIXED_PRECISION="1",
                       ITEX_AUTO_MIXED_PRECISION_DATA_TYPE="BFLOAT16")
        return env

    def skip_reason(self, scenario: str, isa: dict[str, bool],
                    emulated: bool = False) -> str | None:
        if not itex_python().exists():
            return (f"the Intel Extension for TensorFlow environment is missing "
                    f"({itex_python()}); build it with `make itex`")
        return super().skip_reason(scenario, isa, emulated)

    def obtained_problem(self, doc: dict[str, Any]) -> str | None:
        # bf16 through ITEX's own auto mixed precision, not a Keras policy
        return onednn_bf16_problem(doc) if self.precision == "bf16" else None

    def knobs(self, scenario: str, params: dict[str, Any], settings: dict[str, Any],
              placement: str, topology: Topology) -> tuple[knobs.Knob, ...]:
        """ITEX's CPU kernels run on Intel's OpenMP (its own libiomp5): how long a thread spins
        after a parallel region before it sleeps, `KMP_BLOCKTIME` ms ("default": the harness's
        1; Intel's own default is 200)."""
        return (*super().knobs(scenario, params, settings, placement, topology),
                knobs.variable("kmp_blocktime", "KMP_BLOCKTIME", ("0", "200")))

    def start(self, threads: int) -> dict[str, Any]:
        import intel_extension_for_tensorflow as itex
        import keras
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads())
        return {
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "itex": getattr(itex, "__version__", None),
            "auto_mixed_precision": os.environ.get("ITEX_AUTO_MIXED_PRECISION") == "1",
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        }
