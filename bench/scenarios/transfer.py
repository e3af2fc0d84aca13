"""Transfer learning as in Figure 1 of the paper: embed once with a frozen network, train a head.

Extraction runs the backend's forward pass once over every image (training and held-out); the
head — a softmax layer, or facenet's linear SVM, on the 512-d embeddings — is trained full-batch
in compiled loops, because on a few thousand 512-d vectors per-batch overhead would dominate.
With pretrained weights, the same transfer from random weights is run too (not timed as the
headline), so a reader sees what the pretraining buys. Without pretrained weights the network
is random: the timing holds, the accuracy says nothing about transfer, and the result says so.
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
from bench.models.store import build_base, random_init
from bench.parity import PARITY_IMAGES, stored
from bench.scenarios import Progress
from bench.scenarios.common import prepare
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
    """Train the head full-batch on the embeddings, in compiled chunks of steps.

    With a target accuracy, `evaluate(logits_fn)` is called between chunks, off the clock, and
    the training time at which the target was first reached is returned.
    """
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

    chunk = max(1, spec.head_steps // 20) if evaluate else spec.head_steps
    done, elapsed, loss, reached = 0, 0.0, float("nan"), None
    while done < spec.head_steps:
        n = min(chunk, spec.head_steps - done)
        t0 = time.perf_counter()
        loss = float(fit(tf.constant(n)))
        elapsed += time.perf_counter() - t0
        done += n
        if evaluate and reached is None and evaluate(logits) >= spec.target_accuracy:
            reached = elapsed
    return {"logits": logits, "final_loss": loss, "seconds": elapsed, "reached_s": reached}


def _accuracy(logits, features: np.ndarray, labels: tuple[int, ...]) -> float:
    return float(np.mean(np.argmax(logits(features), axis=1) == np.asarray(labels)))


def _embed_all(predict, split, size: int, spec: TransferSpec, progress: Progress, label: str):
    train = extract(predict, split.train, size, spec.batch_size, progress,
                    f"extract embeddings{label} (train)")
    test = extract(predict, split.test, size, spec.batch_size, progress,
                   f"extract embeddings{label} (test)")
    return train, test


def verify(predict, split, embedded: dict[str, np.ndarray], size: int, batch_size: int,
           progress: Progress) -> dict[str, Any]:
    """The LFW protocol on the pairs file: embeddings of its images (reusing those already
    extracted), then 10-fold accuracy, VAL@FAR=1e-3, AUC and EER in both distance metrics."""
    pair_set = split.pairs
    todo = [p for p in pair_set.images if p not in embedded]
    t0 = time.perf_counter()
    if todo:
        extra = lfw.ImageIndex(split.root, tuple(todo), (0,) * len(todo), ("?",))
        x, _, _ = extract(predict, extra, size, batch_size, progress, "embed pair images")
        embedded = {**embedded, **dict(zip(todo, x, strict=True))}
    rows = np.stack([embedded[p] for p in pair_set.images])
    figures = {name: pair_set.evaluate(rows, metric=name).to_dict()
               for name in ("euclidean", "angular")}
    return {**pair_set.summary(), "extra_images_embedded": len(todo),
            "seconds": time.perf_counter() - t0, "evaluation": "off the clock", **figures}


def run(run: dict[str, Any], backend: Backend, progress: Progress) -> dict[str, Any]:
    spec = TransferSpec(**run["params"])
    size = run["model"]["image_size"]
    split, base, facts = prepare(run, progress)
    base.trainable = False
    progress("load model into the runtime")
    loaded = backend.load(facenet.embedding_model(base), Path(facts["weights"]))
    predict = backend.predictor(loaded, spec.batch_size)

    t0 = time.perf_counter()
    (train_x, train_s, train_n), (test_x, test_s, test_n) = _embed_all(
        predict, split, size, spec, progress, "")
    extraction_s = time.perf_counter() - t0

    progress("train head")
    classes = len(split.train.names)
    train_y = np.asarray(split.train.labels)
    evaluate = ((lambda logits: _accuracy(logits, test_x, split.test.labels))
                if spec.target_accuracy else None)
    head = train_head(train_x, train_y, classes, spec, evaluate)
    accuracy = _accuracy(head["logits"], test_x, split.test.labels)

    # Steady extraction rate: every batch after the first (which traces the graph), weighted
    # by its images — a mean rate, as the total it projects is a sum.
    seconds, sizes = train_s + test_s, train_n + test_n
    steady = seconds[1:] or seconds
    extraction_img_s = (sum(sizes[1:]) or sizes[0]) / sum(steady)
    out: dict[str, Any] = {
        "model": facts,
        "data": split.describe(),
        "samples": {"extract_batch_s": seconds, "extract_batch_images": sizes},
        "stats": {"extract_batch_s": summarize(steady)},
        "first_batch_s": train_s[0],
        "extraction_s": extraction_s,
        "head": spec.head,
        "head_s": head["seconds"],
        "head_final_loss": head["final_loss"],
        "total": {"kind": "measured", "total_s": extraction_s + head["seconds"]},
        "accuracy": accuracy,
        "parity": {"embeddings": stored(test_x[:PARITY_IMAGES])},
        "chance_accuracy": 1 / classes,
        "derived": {
            "images": sum(sizes),
            "extraction_images_per_s": extraction_img_s,
            "gflops_per_s": extraction_img_s * facts["forward_flops"] / 1e9,
        },
    }
    if spec.target_accuracy:
        reached = head["reached_s"]
        out["time_to_accuracy"] = {
            "target": spec.target_accuracy, "evaluation": "off the clock",
            "reached": reached is not None,
            **({"elapsed_s": extraction_s + reached} if reached is not None else {})}
    if split.pairs is not None:
        progress("LFW verification protocol (off the clock)")
        embedded = dict(zip(split.train.paths + split.test.paths,
                            np.concatenate([train_x, test_x]), strict=True))
        out["lfw_verification"] = verify(predict, split, embedded, size, spec.batch_size,
                                         progress)
    if not facts["pretrained"]:
        out["accuracy_note"] = RANDOM_WEIGHTS_NOTE
    elif spec.compare_random:
        # The same transfer from random weights, on the same split: what pretraining buys.
        progress("transfer from random weights, for comparison")
        random_weights = random_init(run["model"], run["data"]["seed"])
        random = build_base({**run["model"], "weights": random_weights})
        rand_loaded = backend.load(facenet.embedding_model(random), Path(random_weights))
        (rx, _, _), (rtx, _, _) = _embed_all(backend.predictor(rand_loaded, spec.batch_size),
                                              split, size, spec, progress, " (random weights)")
        rhead = train_head(rx, train_y, classes, spec)
        out["accuracy_random_weights"] = _accuracy(rhead["logits"], rtx, split.test.labels)
    return out
