"""Pretraining: FaceNet trained once on the synthetic *source* identities, its weights cached.

Transfer needs a network that has already learnt faces. When a suite names no weights, the
transfer, fine-tuning, inference and serving scenarios start from these cached weights if they
exist (trained on identities disjoint from the target set, so no target identity leaks in), and
from random weights otherwise. A suite with `[pretrain] enabled = true` makes them before its
first run when they are missing (`bench.runner`); `tlbench pretrain` makes them on demand. Either
way they are made in a process of their own, `python -m bench.pretrain TASK.json OUT.json`,
pinned like a worker, its progress on stdout as the worker's.
"""

from __future__ import annotations

import json
import sys
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.data import lfw, synthetic
from bench.training import PretrainSpec, make_trainer, recalibrate_batchnorm

RECALIBRATION_BATCHES = 60  # 0.9^60 = 0.2% of the old statistics left


def pretrain(model: dict[str, Any], spec: PretrainSpec, *, seed: int, progress) -> dict[str, Any]:
    """Train from scratch with the full-training recipe, then save the base network's weights."""
    from bench.models import facenet, weights
    from bench.models.store import build_base, weights_path
    from bench.scenarios.full_training import FullTrainingSpec

    root = synthetic.ensure(synthetic.SyntheticSpec(identities=spec.identities, seed=seed,
                                                    split="source"))
    index = lfw.scan(root)
    base = build_base({**model, "weights": ""}, seed=seed)
    classifier = facenet.classifier_model(base, num_classes=len(index.names))
    recipe = FullTrainingSpec(batch_size=spec.micro_batch, micro_batch=spec.micro_batch,
                              learning_rate=spec.learning_rate)
    micro_step, update, *_ = make_trainer(classifier, recipe)
    batches = lfw.dataset(index, model["image_size"], spec.micro_batch, shuffle=True, seed=seed,
                          repeat=True, drop_remainder=True)
    steps = max(1, spec.epochs * len(index.paths) // spec.micro_batch)
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
            "steps": steps, "final_loss": loss, "spec": asdict(spec),
            "batchnorm_recalibration_batches": RECALIBRATION_BATCHES}


def main(argv: list[str]) -> int:
    """The pretraining process: TASK.json holds the model, the spec, the seed and the CPUs; its
    facts (or its error) go to OUT.json."""
    from bench.pinning import pin_self
    from bench.results import write_atomic
    from bench.worker import progress

    task = json.loads(Path(argv[0]).read_text())
    pin_self(tuple(task["cpus"]))  # before TensorFlow sizes its thread pools at import
    try:
        facts = pretrain(task["model"], PretrainSpec(**task["spec"]), seed=task["seed"],
                         progress=progress)
        code = 0
    except Exception as exc:  # recorded for the parent, whole, with the log's traceback
        facts = {"error": f"{type(exc).__name__}: {exc}"}
        traceback.print_exc()
        code = 1
    write_atomic(Path(argv[1]), facts)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
