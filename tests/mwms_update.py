"""Run by tests/test_distributed.py in its own interpreter (Keras 3, or Keras 2.15 for ITEX):
two updates of a small network with the training scenario's trainer, as one process with the
whole batch or as one of the workers named by TF_CONFIG with its share; the initial and trained
weights to OUT.npz.

    python tests/mwms_update.py OUT.npz
"""

from __future__ import annotations

import sys

import numpy as np

from bench import distributed
from bench.scenarios.full_training import FullTrainingSpec
from bench.training import make_trainer

BATCH, MICRO = 8, 2


def main(out: str) -> None:
    strategy, task, workers = distributed.strategy()  # before any TensorFlow op
    import tensorflow as tf
    from tensorflow import keras

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2 * BATCH, 6)).astype("float32")
    y = rng.integers(0, 3, size=2 * BATCH).astype("int32")
    with strategy.scope():
        keras.utils.set_random_seed(1)
        inputs = keras.Input((6,))
        hidden = keras.layers.Dense(5, activation="relu", name="hidden")(inputs)
        hidden = keras.layers.BatchNormalization(name="bn")(hidden)
        model = keras.Model(inputs, keras.layers.Dense(3, name="out")(hidden))
    spec = FullTrainingSpec(batch_size=BATCH, micro_batch=MICRO, workers=workers,
                            learning_rate=0.01)
    initial = [v.numpy() for v in model.trainable_variables]
    micro_step, update, *_ = make_trainer(model, spec, strategy)
    share = BATCH // workers
    for step in range(2):  # two updates: RMSProp's state is exercised too
        start = step * BATCH + task * share  # this worker's micro-batches of the global batch
        for i in range(start, start + share, MICRO):
            micro_step(tf.constant(x[i:i + MICRO]), tf.constant(y[i:i + MICRO]))
        update()
    trained = [v.numpy() for v in model.trainable_variables]
    np.savez(out, **{f"initial{i}": v for i, v in enumerate(initial)},
             **{f"trained{i}": v for i, v in enumerate(trained)})


if __name__ == "__main__":
    main(sys.argv[1])
