"""`tlbench pretrain`: train FaceNet once on the synthetic *source* identities, cache the weights.

Transfer needs a network that has already learnt faces. When a suite names no weights, the
transfer and inference scenarios use these cached weights if they exist (trained on identities
disjoint from the target set, so no target identity leaks in), and random weights otherwise.
"""

from __future__ import annotations

from typing import Any

from bench.data import lfw, synthetic

RECALIBRATION_BATCHES = 60  # 0.9^60 = 0.2% of the old statistics left


def pretrain(model: dict[str, Any], *, identities: int, epochs: int, micro_batch: int,
             learning_rate: float, seed: int, progress) -> dict[str, Any]:
    """Train from scratch with the full-training recipe, then save the base network's weights."""
    from bench.models import facenet, weights
    from bench.models.store import build_base, weights_path
    from bench.scenarios.full_training import FullTrainingSpec
    from bench.training import make_trainer, recalibrate_batchnorm

    root = synthetic.ensure(synthetic.SyntheticSpec(identities=identities, seed=seed,
                                                    split="source"))
    index = lfw.scan(root)
    base = build_base({**model, "weights": ""}, seed=seed)
    classifier = facenet.classifier_model(base, num_classes=len(index.names))
    spec = FullTrainingSpec(batch_size=micro_batch, micro_batch=micro_batch,
                            learning_rate=learning_rate)
    micro_step, update, *_ = make_trainer(classifier, spec)
    batches = lfw.dataset(index, model["image_size"], micro_batch, shuffle=True, seed=seed,
                          repeat=True, drop_remainder=True)
    steps = max(1, epochs * len(index.paths) // micro_batch)
    loss = float("nan")
    for step, (images, labels) in zip(range(steps), batches, strict=False):
        loss = float(micro_step(images, labels))
        update()
        progress(f"pretrain (loss {loss:.2f})", step + 1, steps)
    recalibrate_batchnorm(base, batches, RECALIBRATION_BATCHES,
                          progress=lambda done: progress("re-estimate the BatchNorm statistics",
                                                         done, RECALIBRATION_BATCHES))
    path = weights.save(base, weights_path(model))  # atomic: no run reads half a file
    return {"path": str(path), "identities": len(index.names), "images": len(index.paths),
            "steps": steps, "final_loss": loss,
            "batchnorm_recalibration_batches": RECALIBRATION_BATCHES}
