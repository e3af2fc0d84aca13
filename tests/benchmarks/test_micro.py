"""Micro-benchmarks (pytest-benchmark) of the small FaceNet: one training step, batch-1 inference.

pyproject's addopts ignores this folder: `make microbench` times them, and `make test` runs each
once, untimed (--benchmark-disable), so that they cannot break unnoticed. They time the same
code the scenarios run (bench.training.make_trainer, the embedding model) in this process,
without the harness — a quick check of a change to the model or the training step:

    make microbench ARGS=--benchmark-save=base        # stores .benchmarks/<machine>/0001_base.json
    make microbench ARGS="--benchmark-compare --benchmark-compare-fail=median:10%"
                                                      # vs the latest saved; fails if 10% slower

Seconds per call on a shared 2-core VM vary by 10–20%; compare on the same, quiet machine.
"""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from bench.models import facenet  # noqa: E402
from bench.scenarios.full_training import FullTrainingSpec  # noqa: E402
from bench.training import make_trainer  # noqa: E402

IMAGE_SIZE, EMBEDDING, CLASSES, BATCH = 96, 64, 10, 8


@pytest.fixture(scope="module")
def base():
    tf.keras.utils.set_random_seed(0)
    return facenet.inception_resnet_v1(image_size=IMAGE_SIZE, variant="small",
                                       embedding_size=EMBEDDING)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(-1, 1, (BATCH, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)


def test_train_step_small_model(benchmark, base, images) -> None:
    """One micro-step (forward, backward, gradient accumulation) on a batch of 8 at 96 px."""
    model = facenet.classifier_model(base, CLASSES)
    trainer = make_trainer(model, FullTrainingSpec(batch_size=BATCH, micro_batch=BATCH))
    micro_step = trainer.micro_step
    labels = tf.constant(np.arange(BATCH) % CLASSES, tf.int32)
    x = tf.constant(images)
    float(micro_step(x, labels))  # trace outside the timing, as the scenario reports it apart
    loss = benchmark.pedantic(lambda: float(micro_step(x, labels)), rounds=15,
                              warmup_rounds=2, iterations=1)
    trainer.update()
    assert np.isfinite(loss)


def test_inference_batch1_small_model(benchmark, base, images) -> None:
    """The full forward pass to the L2-normalised embedding of one image."""
    model = facenet.embedding_model(base)
    predict = tf.function(lambda x: model(x, training=False))
    x = tf.constant(images[:1])
    predict(x)  # trace
    out = benchmark.pedantic(lambda: predict(x).numpy(), rounds=50, warmup_rounds=5,
                             iterations=1)
    assert out.shape == (1, EMBEDDING)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-4)
