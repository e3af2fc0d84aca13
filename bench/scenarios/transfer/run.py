"""Transfer learning as in Figure 1 of the paper: embed once with a frozen network, train a head.

The images are decoded first, before the clock (`decode_s`, part of the transfer's total but
not of the extraction rate). Extraction runs the backend's forward pass once over every image
(training and held-out); the
head — a softmax layer, or facenet's linear SVM, on the 512-d embeddings — is trained full-batch
in compiled loops, because on a few thousand 512-d vectors per-batch overhead would dominate.
With pretrained weights, the same transfer from random weights is run too (not timed as the
headline), so a reader sees what the pretraining buys. Without pretrained weights the network
is random: the timing holds, the accuracy says nothing about transfer, and the result says so.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from bench.backends.base import Backend, Embed
from bench.data import lfw
from bench.models.store import build_base, random_init
from bench.parity import PARITY_IMAGES, stored
from bench.record import Series
from bench.scenarios.common import Progress, load_model, prepare
from bench.scenarios.transfer import TransferSpec

RANDOM_WEIGHTS_NOTE = ("random weights (no --weights given): extraction and head times hold, "
                       "the accuracy means nothing about transfer")


def decode(index: lfw.ImageIndex, image_size: int) -> np.ndarray:
    """Every image of `index`, decoded and resized (uint8, in order): the data, before the clock."""
    return np.concatenate([x.numpy() for x, _ in
                           lfw.dataset(index, image_size, 64, cache=False, raw=True)])


def extract(embed: Embed, images: np.ndarray, batch_size: int, progress: Progress,
            phase: str) -> tuple[np.ndarray, Series, dict[str, Any]]:
    """Embeddings of `images` (decoded, uint8) in order, the series of the forward passes and
    how the backend drove them (`Backend.extractor`).

    Standardising and padding a batch happen before it is handed over (a synchronous call's
    clock starts after them; an asynchronous queue's next batch is prepared while the
    earlier ones run). The short last batch is padded to the full batch, so that every call
    has one shape and no runtime traces or compiles a second graph.
    """
    total = len(images)

    def batches():
        for start in range(0, total, batch_size):
            yield lfw.pad_batch(lfw.standardise(images[start:start + batch_size]), batch_size)
            progress(phase, min(start + batch_size, total), total)

    outputs, series, driven = embed(batches(), -(-total // batch_size))
    return np.concatenate(outputs)[:total], series, driven


def _accuracy(logits, features: np.ndarray, labels: tuple[int, ...]) -> float:
    return float(np.mean(np.argmax(logits(features), axis=1) == np.asarray(labels)))


def _embed_all(embed: Embed, images: tuple[np.ndarray, np.ndarray], spec: TransferSpec,
               progress: Progress, label: str):
    """The training and held-out images' embeddings, in one extraction pass."""
    x, series, driven = extract(embed, np.concatenate(images), spec.batch_size, progress,
                                f"extract embeddings{label} (train and test)")
    return x[:len(images[0])], x[len(images[0]):], series, driven


def verify(embed: Embed, split, embedded: dict[str, np.ndarray], size: int, batch_size: int,
           progress: Progress) -> dict[str, Any]:
    """The LFW protocol on the pairs file: embeddings of its images (reusing those already
    extracted), then 10-fold accuracy, VAL@FAR=1e-3, AUC and EER in both distance metrics."""
    pair_set = split.pairs
    todo = [p for p in pair_set.images if p not in embedded]
    t0 = time.perf_counter()
    if todo:
        extra = lfw.ImageIndex(split.root, tuple(todo), (0,) * len(todo), ("?",))
        x, _, _ = extract(embed, decode(extra, size), batch_size, progress, "embed pair images")
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
    loaded = load_model(run, backend, base, facts["weights"], split)
    embed = backend.extractor(loaded, spec.batch_size)

    progress("decode the images (before the clock)")
    t0 = time.perf_counter()
    images = decode(split.train, size), decode(split.test, size)
    decode_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    train_x, test_x, series, driven = _embed_all(embed, images, spec, progress, "")
    extraction_s = time.perf_counter() - t0

    progress("train head")
    classes = len(split.train.names)
    train_y = np.asarray(split.train.labels)
    evaluate = ((lambda logits: _accuracy(logits, test_x, split.test.labels))
                if spec.target_accuracy else None)
    head = backend.train_head(train_x, train_y, classes, spec, evaluate)
    accuracy = _accuracy(head["logits"], test_x, split.test.labels)

    out: dict[str, Any] = {
        "model": facts,
        "data": split.describe(),
        "series": {"extract_batch": series},  # every batch is full (the last padded)
        "throughput": driven,
        "measured": {"decode_s": decode_s, "extraction_s": extraction_s,
                    "head_trace_s": head["trace_s"], "head_s": head["seconds"]},
        "head": spec.head,
        "head_final_loss": head["final_loss"],
        "accuracy": accuracy,
        "parity": {"embeddings": stored(test_x[:PARITY_IMAGES])},
        "chance_accuracy": 1 / classes,
    }
    progress("kernels: a profiled pass (off the clock)")
    kernels = backend.kernels(loaded, lfw.standardise(images[1][:spec.batch_size]))
    if kernels:
        out["kernels"] = kernels
    if spec.target_accuracy:
        reached = head["reached_s"]
        out["time_to_accuracy"] = {
            "target": spec.target_accuracy, "evaluation": "off the clock",
            "reached": reached is not None,
            **({"elapsed_s": decode_s + extraction_s + head["trace_s"] + reached}
               if reached is not None else {})}
    if split.pairs is not None:
        progress("LFW verification protocol (off the clock)")
        embedded = dict(zip(split.train.paths + split.test.paths,
                            np.concatenate([train_x, test_x]), strict=True))
        out["lfw_verification"] = verify(embed, split, embedded, size, spec.batch_size,
                                         progress)
    if not facts["pretrained"]:
        out["accuracy_note"] = RANDOM_WEIGHTS_NOTE
    elif spec.compare_random:
        # The same transfer from random weights, on the same split: what pretraining buys.
        progress("transfer from random weights, for comparison")
        random_weights = random_init(run["model"], run["data"]["seed"])
        random = build_base({**run["model"], "weights": random_weights})
        rand_loaded = load_model(run, backend, random, random_weights, split)
        rx, rtx, _, _ = _embed_all(backend.extractor(rand_loaded, spec.batch_size), images,
                                   spec, progress, " (random weights)")
        rhead = backend.train_head(rx, train_y, classes, spec)
        out["accuracy_random_weights"] = _accuracy(rhead["logits"], rtx, split.test.labels)
    return out
