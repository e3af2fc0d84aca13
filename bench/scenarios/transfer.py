"""Transfer learning as in Figure 1 of the paper: embed once with a frozen network, train a head.

Extraction runs the backend's forward pass once over every image (training and held-out); the
head — one softmax layer on the 512-d embeddings — is trained full-batch, in one compiled loop,
because on a few thousand 512-d vectors per-batch overhead would dominate. Without pretrained
weights the network is random: the timing holds, the accuracy says nothing about transfer, and
the result says so.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.backends import Backend
from bench.data import lfw
from bench.measure import summarize
from bench.models import facenet
from bench.parity import PARITY_IMAGES, stored
from bench.scenarios import Progress
from bench.scenarios.common import build_pretrained, load_split
from bench.suite import TransferSpec

RANDOM_WEIGHTS_NOTE = ("random weights (no --weights given): extraction and head times hold, "
                       "the accuracy means nothing about transfer")


def extract(predict, index: lfw.ImageIndex, image_size: int, batch_size: int,
            progress: Progress, phase: str) -> tuple[np.ndarray, list[float], list[int]]:
    """Embeddings of every image in `index`, in order; each batch's seconds and image count.

    A batch's time includes fetching it: on this first pass the pipeline decodes the images,
    which is part of what extraction costs. A short last batch is padded to the full batch, so
    that every call has one shape and no runtime traces or compiles a second graph.
    """
    outputs, seconds = [], []
    total = len(index.paths)
    it = iter(lfw.dataset(index, image_size, batch_size))
    while True:
        t0 = time.perf_counter()
        try:
            images, _ = next(it)
        except StopIteration:
            break
        batch = images.numpy()
        n = len(batch)
        if n < batch_size:
            batch = np.concatenate([batch, np.zeros((batch_size - n, *batch.shape[1:]),
                                                    batch.dtype)])
        outputs.append(predict(batch)[:n])
        seconds.append(time.perf_counter() - t0)
        progress(phase, min(len(outputs) * batch_size, total), total)
    return np.concatenate(outputs), seconds, [len(o) for o in outputs]


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
    progress("load model into the runtime")
    loaded = backend.load(facenet.embedding_model(base), Path(facts["weights"]))
    predict = backend.predictor(loaded, spec.batch_size)

    t0 = time.perf_counter()
    train_x, train_s, train_n = extract(predict, split.train, size, spec.batch_size, progress,
                               "extract embeddings (train)")
    test_x, test_s, test_n = extract(predict, split.test, size, spec.batch_size, progress,
                             "extract embeddings (test)")
    extraction_s = time.perf_counter() - t0

    progress("train head")
    t0 = time.perf_counter()
    train_y = np.asarray(split.train.labels)
    logits, final_loss = train_head(train_x, train_y, len(split.train.names), spec)
    head_s = time.perf_counter() - t0
    accuracy = float(np.mean(np.argmax(logits(test_x), axis=1) == np.asarray(split.test.labels)))

    # Steady extraction rate: every batch after the first (which traces the graph), weighted
    # by its images — a mean rate, as the total it projects is a sum.
    seconds, sizes = train_s + test_s, train_n + test_n
    steady = seconds[1:] or seconds
    images = sum(sizes)
    extraction_img_s = (sum(sizes[1:]) or sizes[0]) / sum(steady)
    out: dict[str, Any] = {
        "model": facts,
        "data": split.describe(),
        "samples": {"extract_batch_s": seconds, "extract_batch_images": sizes},
        "stats": {"extract_batch_s": summarize(steady)},
        "first_batch_s": train_s[0],
        "extraction_s": extraction_s,
        "head_s": head_s,
        "head_final_loss": final_loss,
        "total": {"kind": "measured", "total_s": extraction_s + head_s},
        "accuracy": accuracy,
        "parity": {"embeddings": stored(test_x[:PARITY_IMAGES])},
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
