"""Run by tests/test_keras3.py in its own interpreter, KERAS_BACKEND set for BACKEND's runtime
(Keras picks its backend once a process): the backend's own training steps, forward pass and
transfer head on small inputs, results to OUT.npz (the forward pass's parity with TensorFlow on
the same weights is checked end to end, by tests/test_runner.py's suite).

    python tests/keras3_steps.py BACKEND IN.npz OUT.npz

IN.npz holds the tiny network's initial weights (`tiny<layer>_<i>`) and its data (`x`, `y`).
Started as one of a cluster's data-parallel workers (the launcher's variables set), it trains
only the "split" run, on its share of each global batch, its initial weights moved off the
given ones unless it is task 0 (the engine must start every worker from task 0's).
"""

from __future__ import annotations

import os
import sys

import numpy as np

from bench import backends
from bench.scenarios.full_training import FullTrainingSpec
from bench.scenarios.transfer import TransferSpec

BATCH = 8
TINY_LAYERS = ("hidden", "bn", "out")


def tiny_model(keras, bn: bool):
    """Dense → (BatchNorm →) Dense: kernels for the weight decay, BN statistics for the state.
    With BN, micro-batches change the update (batch statistics per micro-batch): without it they
    must not."""
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(5, activation="relu", name="hidden")(inputs)
    if bn:
        hidden = keras.layers.BatchNormalization(name="bn")(hidden)
    return keras.Model(inputs, keras.layers.Dense(3, name="out")(hidden))


def layer_names(bn: bool) -> tuple[str, ...]:
    return TINY_LAYERS if bn else ("hidden", "out")


def train_tiny(keras, trainer_of, given, micro: int, bn: bool, task: int = 0,
               workers: int = 1, offset: float = 0.0) -> list[np.ndarray]:
    """Two updates (RMSProp's state exercised) of the global batch in micro-batches of `micro`,
    from the given initial weights (+ `offset`); `trainer_of(model, spec)` is the runtime's
    trainer. As worker `task` of `workers`, only that worker's share of each global batch."""
    model = tiny_model(keras, bn)
    names = layer_names(bn)
    for name in names:
        layer = model.get_layer(name)
        layer.set_weights([given[f"tiny{name}_{i}"] + offset
                           for i in range(len(layer.get_weights()))])
    spec = FullTrainingSpec(batch_size=BATCH, micro_batch=micro, learning_rate=0.01,
                            weight_decay=0.01, workers=workers)
    trainer = trainer_of(model, spec)
    x, y = given["x"], given["y"]
    share = BATCH // workers
    for step in range(2):
        start = step * BATCH + task * share
        for i in range(start, start + share, micro):
            trainer.micro_step(x[i:i + micro], y[i:i + micro])
        trainer.update()
    trainer.sync()
    return [np.asarray(w) for name in names for w in model.get_layer(name).get_weights()]


RUNS = {"whole": (BATCH, False), "split": (2, False), "bn_split": (2, True)}


def main(name: str, given_path: str, out: str) -> None:
    backend = backends.get(name)
    engine, task, workers = backend.strategy()
    runtime = backend.start(threads=len(os.sched_getaffinity(0)))  # as a worker is pinned
    import keras

    given = dict(np.load(given_path))
    if workers > 1:
        micro, bn = RUNS["split"]
        weights = train_tiny(keras, lambda model, spec: backend.trainer(model, spec, engine),
                             given, micro, bn, task, workers, offset=0.5 * task)
        np.savez(out, **{f"split{i}": w for i, w in enumerate(weights)}, **backend.engine())
        return
    trained = {f"{run}{i}": w for run, (micro, bn) in RUNS.items()
               for i, w in enumerate(train_tiny(keras, backend.trainer, given, micro, bn))}

    # the projected scenario times updates back to back, with no micro-step between them
    twice = backend.trainer(tiny_model(keras, False),
                            FullTrainingSpec(batch_size=BATCH, micro_batch=BATCH))
    twice.micro_step(given["x"][:BATCH], given["y"][:BATCH])
    twice.update()
    twice.update()

    rng = np.random.default_rng(0)  # separable: 4 classes around 4 far-apart centres
    centres = rng.normal(size=(4, 16)) * 4
    labels = np.repeat(np.arange(4), 20)
    features = (centres[labels] + rng.normal(size=(80, 16))).astype(np.float32)
    heads = {}
    for kind in ("softmax", "svm"):
        spec = TransferSpec(head=kind, head_steps=100, head_learning_rate=0.05)
        head = backend.train_head(features, labels, 4, spec)
        heads[kind] = float(np.mean(np.argmax(head["logits"](features), axis=1) == labels))
        heads[f"{kind}_loss"] = head["final_loss"]
    breaks = 0
    if runtime.get("torch_compile"):
        from torch._dynamo.utils import counters

        breaks = sum(counters["graph_break"].values())
    np.savez(out, **trained, graph_breaks=breaks,
             keras_backend=runtime["keras_backend"], **{f"head_{k}": v for k, v in heads.items()})


if __name__ == "__main__":
    main(*sys.argv[1:])
