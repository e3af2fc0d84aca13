"""`tlbench pretrain`: train FaceNet once on the synthetic *source* identities, cache the weights.

Transfer needs a network that has already learnt faces. When a suite names no weights, the
transfer and inference scenarios use these cached weights if they exist (trained on identities
disjoint from the target set, so no target identity leaks in), and random weights otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.data import lfw, synthetic

RECALIBRATION_BATCHES = 60  # 0.9^60 = 0.2% of the old statistics left


def weights_path(model: dict[str, Any]) -> Path:
    """Where the pretrained weights of one model configuration are cached."""
    name = (f"facenet-{model['variant']}-{model['image_size']}px-{model['embedding_size']}d-"
            f"synthetic-source.npz")
    return synthetic.default_cache_dir() / "weights" / name


def pretrain(model: dict[str, Any], *, identities: int, epochs: int, micro_batch: int,
             learning_rate: float, seed: int, progress) -> dict[str, Any]:
    """Train from scratch with the full-training recipe, then save the base network's weights."""
    from bench.models import facenet, weights
    from bench.scenarios.common import build_base
    from bench.scenarios.full_training import make_trainer
    from bench.suite import FullTrainingSpec

    root = synthetic.ensure(synthetic.SyntheticSpec(identities=identities, seed=seed,
                                                    split="source"))
    index = lfw.scan(root)
    base = build_base({**model, "weights": ""}, seed=seed)
    classifier = facenet.classifier_model(base, num_classes=len(index.names))
    spec = FullTrainingSpec(batch_size=micro_batch, micro_batch=micro_batch,
                            learning_rate=learning_rate)
    micro_step, update, _ = make_trainer(classifier, spec)
    batches = lfw.dataset(index, model["image_size"], micro_batch, shuffle=True, seed=seed,
                          repeat=True, drop_remainder=True)
    steps = max(1, epochs * len(index.paths) // micro_batch)
    loss = float("nan")
    for step, (images, labels) in zip(range(steps), batches, strict=False):
        loss = float(micro_step(images, labels))
        update()
        progress(f"pretrain (loss {loss:.2f})", step + 1, steps)
    progress("re-estimate the BatchNorm statistics")
    recalibrate_batchnorm(base, batches, RECALIBRATION_BATCHES)
    path = weights.save(base, weights_path(model))  # atomic: no run reads half a file
    return {"path": str(path), "identities": len(index.names), "images": len(index.paths),
            "steps": steps, "final_loss": loss,
            "batchnorm_recalibration_batches": RECALIBRATION_BATCHES}


def recalibrate_batchnorm(model, batches, count: int, momentum: float = 0.9) -> None:
    """Re-estimate every BatchNorm's moving mean and variance from `count` batches run in
    training mode, the weights untouched.

    With facenet's decay of 0.995 the moving statistics forget their initial (0, 1) only after
    ~1,000 updates; a short pretraining leaves them between the two, and the frozen network —
    which runs in inference mode, on the moving statistics — then produces collapsed embeddings
    (transfer fell from 65% with random weights to 10%). A faster-moving average over the final
    weights' own batches (residual 0.9^count of the old statistics) gives them their real values.
    """
    import tensorflow as tf
    from tensorflow import keras

    norms = [layer for layer in model.layers
             if isinstance(layer, keras.layers.BatchNormalization)]
    kept = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = momentum
    forward = tf.function(lambda images: model(images, training=True))  # traced with `momentum`
    try:
        for _, (images, _labels) in zip(range(count), batches, strict=False):
            forward(images)
    finally:
        for layer, value in zip(norms, kept, strict=True):
            layer.momentum = value
