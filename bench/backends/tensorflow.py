"""TensorFlow backends: stock (oneDNN off, the paper's "no CPU optimizations") and oneDNN."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from bench.backends import Backend


class TensorFlowBackend(Backend):
    precision = "fp32"

    def __init__(self, name: str, onednn: bool):
        self.name = name
        self.onednn = onednn

    def environment(self) -> dict[str, str]:
        return {"TF_ENABLE_ONEDNN_OPTS": "1" if self.onednn else "0"}

    def start(self, threads: int) -> dict[str, Any]:
        import tensorflow as tf
        from tensorflow.python.util import _pywrap_util_port

        # TF's pools are sized from TF_NUM_*_THREADS at import; set them again explicitly so a
        # runtime that ignored the variables is still pinned, and read back what TF reports.
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        onednn = bool(_pywrap_util_port.IsMklEnabled())
        if onednn != self.onednn:
            raise RuntimeError(f"{self.name} asked for oneDNN {'on' if self.onednn else 'off'} "
                               f"but TensorFlow reports it {'on' if onednn else 'off'}")
        return {
            "tensorflow": tf.__version__,
            "keras": tf.keras.__version__ if hasattr(tf.keras, "__version__") else None,
            "onednn_enabled": onednn,
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        }

    def predictor(self, model: Any, batch_size: int) -> Callable[[np.ndarray], np.ndarray]:
        import tensorflow as tf

        forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

        def run(batch: np.ndarray) -> np.ndarray:
            return forward(tf.convert_to_tensor(batch)).numpy()

        return run
