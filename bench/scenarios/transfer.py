"""Transfer learning as in Figure 1 of the paper: embed once with a frozen network, train a head.

Extraction runs the backend's forward pass once over every image (training and held-out); the
head — one softmax layer on the 512-d embeddings — is trained full-batch, in one compiled loop,
because on a few thousand 512-d vectors per-batch overhead would dominate. Without pretrained
weights the network is random: the timing holds, the accuracy says nothing about transfer, and
the result says so.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from bench.backends import Backend
from bench.data import lfw
from bench.measure import summarize
from bench.models import facenet
from bench.scenarios import Progress
from bench.scenarios.common import build_pretrained, load_split
from bench.suite import TransferSpec

RANDOM_WEIGHTS_NOTE = ("random weights (no --weights given): extraction and head times hold, "
                       "the accuracy means nothing about transfer")


def extract(predict, index: lfw.ImageIndex, image_size: int, batch_size: int,
            progress: Progress, phase: str) -> tuple[np.ndarray, list[float]]:
    """Embeddings of every image in `index`, in order, and the seconds each batch took."""
    outputs, seconds = [], []
    total = len(index.paths)
    it = iter(lfw.dataset(index, image_size, batch_size))
    while True:
        t0 = time.perf_counter()
        try:
            images, _ = next(it)
        except StopIteration:
            break
        outputs.append(predict(images.numpy()))
        seconds.append(time.perf_counter() - t0)
        progress(phase, min(len(outputs) * batch_size, total), total)
    return np.concatenate(outputs), seconds


def train_head(train_x: np.ndarray, train_y: np.ndarray, classes: int, spec: TransferSpec):
    """Full-batch softmax regression on the embeddings; returns a function giving logits."""
    import tensorflow as tf
    from tensorflow import keras

    x = tf.constant(train_x, tf.float32)
    y = tf.constant(train_y, tf.int32)
    head = keras.layers.Dense(classes, name="head", dtype="float32")
    head.build((None, x.shape[1]))
    optimizer = keras.optimizers.Adam(learning_rate=spec.head_learning_rate)
    optimizer.build(head.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def fit():
        loss = tf.constant(0.0)
        for _ in tf.range(spec.head_steps):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, head(x))
            grads = tape.gradient(loss, head.trainable_variables)
            optimizer.apply_gradients(zip(grads, head.trainable_variables, strict=True))
        return loss

    final_loss = float(fit())
    return (lambda features: head(tf.constant(features, tf.float32)).numpy()), final_loss


def run(run: dict[str, Any], backend: Backend, progress: Progress) -> dict[str, Any]:
    spec = TransferSpec(**run["params"])
    size = run["model"]["image_size"]
    progress("prepare data")
    split = load_split(run["data"])
    progress("build model")
    base, facts = build_pretrained(run["model"], seed=run["data"]["seed"])
    base.trainable = False
    predict = backend.predictor(facenet.embedding_model(base), spec.batch_size)

    t0 = time.perf_counter()
    train_x, train_s = extract(predict, split.train, size, spec.batch_size, progress,
                               "extract embeddings (train)")
    test_x, test_s = extract(predict, split.test, size, spec.batch_size, progress,
                             "extract embeddings (test)")
    extraction_s = time.perf_counter() - t0

    progress("train head")
    t0 = time.perf_counter()
    train_y = np.asarray(split.train.labels)
    logits, final_loss = train_head(train_x, train_y, len(split.train.names), spec)
    head_s = time.perf_counter() - t0
    accuracy = float(np.mean(np.argmax(logits(test_x), axis=1) == np.asarray(split.test.labels)))

    # Steady-state extraction rate: full batches after the first (which traces the graph).
    steady = train_s[1:-1] if len(train_s) > 2 else train_s
    images = len(split.train.paths) + len(split.test.paths)
    extraction_img_s = spec.batch_size / summarize(steady)["median"]
    out: dict[str, Any] = {
        "model": facts,
        "data": split.describe(),
        "samples": {"extract_batch_s": train_s + test_s},
        "stats": {"extract_batch_s": summarize(steady)},
        "first_batch_s": train_s[0],
        "extraction_s": extraction_s,
        "head_s": head_s,
        "head_final_loss": final_loss,
        "total": {"kind": "measured", "total_s": extraction_s + head_s},
        "accuracy": accuracy,
        "chance_accuracy": 1 / len(split.train.names),
        "derived": {
            "images": images,
            "extraction_images_per_s": extraction_img_s,
            "gflops_per_s": extraction_img_s * facts["forward_flops"] / 1e9,
        },
    }
    if not facts["pretrained"]:
        out["accuracy_note"] = RANDOM_WEIGHTS_NOTE
    return out
