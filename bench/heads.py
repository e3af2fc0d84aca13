"""The transfer head: a softmax layer, or facenet's linear SVM, trained full-batch on the
embeddings, and its clock. Below both the backends (each runtime trains its own head, or
TensorFlow's) and the transfer scenario (which times it), so that neither imports the other.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from bench.scenarios.transfer import TransferSpec


def _head_loss(kind: str):
    """Softmax cross-entropy, or the multi-class hinge (Crammer–Singer) of a linear SVM."""
    import tensorflow as tf
    from tensorflow import keras

    if kind == "softmax":
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def hinge(labels, scores):
        true = tf.gather(scores, labels, batch_dims=1)
        others = scores - tf.one_hot(labels, tf.shape(scores)[1]) * 1e9
        return tf.reduce_mean(tf.nn.relu(1.0 + tf.reduce_max(others, axis=1) - true))

    return hinge


def train_head(train_x: np.ndarray, train_y: np.ndarray, classes: int, spec: TransferSpec,
               evaluate=None) -> dict[str, Any]:
    """TensorFlow's head: trained full-batch on the embeddings, in compiled chunks of steps
    (one `tf.range` loop a call). Other runtimes train theirs through `Backend.train_head`."""
    import tensorflow as tf
    from tensorflow import keras

    x = tf.constant(train_x, tf.float32)
    y = tf.constant(train_y, tf.int32)
    head = keras.layers.Dense(classes, name="head", dtype="float32")
    head.build((None, x.shape[1]))
    optimizer = keras.optimizers.Adam(learning_rate=spec.head_learning_rate)
    optimizer.build(head.trainable_variables)
    loss_fn = _head_loss(spec.head)
    l2 = 1e-4 if spec.head == "svm" else 0.0  # the SVM's margin regulariser

    @tf.function
    def fit(steps):
        loss = tf.constant(0.0)
        for _ in tf.range(steps):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, head(x)) + l2 * tf.reduce_sum(tf.square(head.kernel))
            grads = tape.gradient(loss, head.trainable_variables)
            optimizer.apply_gradients(zip(grads, head.trainable_variables, strict=True))
        return loss

    def logits(features: np.ndarray) -> np.ndarray:
        return head(tf.constant(features, tf.float32)).numpy()

    return fit_head(lambda n: float(fit(tf.constant(n, tf.int32))), logits,
                    lambda: fit.get_concrete_function(tf.TensorSpec([], tf.int32)), spec,
                    evaluate)


def fit_head(fit, logits, prepare, spec: TransferSpec, evaluate=None) -> dict[str, Any]:
    """The head's clock, for every runtime: `prepare()` traces and compiles (off the clock,
    `trace_s`), then `fit(n)` runs n full-batch steps and returns the loss, in chunks.

    With a target accuracy, `evaluate(logits)` is called between chunks, off the clock, and
    the training time at which the target was first reached is returned.
    """
    t0 = time.perf_counter()
    prepare()
    trace_s = time.perf_counter() - t0
    chunk = max(1, spec.head_steps // 20) if evaluate else spec.head_steps
    done, elapsed, loss, reached = 0, 0.0, float("nan"), None
    while done < spec.head_steps:
        n = min(chunk, spec.head_steps - done)
        t0 = time.perf_counter()
        loss = fit(n)
        elapsed += time.perf_counter() - t0
        done += n
        if evaluate and reached is None and evaluate(logits) >= spec.target_accuracy:
            reached = elapsed
    return {"logits": logits, "final_loss": loss, "seconds": elapsed, "trace_s": trace_s,
            "reached_s": reached}
