"""Progressive fine-tuning (paper §V): unfreeze the pretrained network's top blocks one stage at a
time — the final Block8 (with the bottleneck), then the block8 repeats, Reduction-B, the block17
repeats, ... — training the classifier with each stage added, and report time and held-out
accuracy per stage.

Each stage gets a fresh optimiser (facenet's RMSProp recipe at the fine-tuning learning rate) and
a new compiled step, whose tracing is its series' first call, apart from the steady steps. The
training images are decoded before the clock; a step's time is the step, not the fetch. Frozen
BatchNorm layers run in inference mode (Keras' rule for non-trainable BN), so the pretrained
statistics are kept. Evaluation is off the clock: `elapsed_s` counts training only.
"""

from __future__ import annotations

import math
import time
from typing import Any

from bench.backends.base import Backend
from bench.data import lfw
from bench.models import facenet
from bench.record import Series, Stage
from bench.scenarios.common import Progress, prepare
from bench.scenarios.fine_tune import FINE_TUNE_STAGES, FineTuneSpec
from bench.scenarios.full_training import FullTrainingSpec
from bench.training import accuracy

# Layer-name prefixes of each stage, top of the network first (see facenet's name scheme).
STAGE_PREFIXES = {
    "Block8": ("Block8_", "Bottleneck"),
    "block8": ("block8_",),
    "Mixed_7a": ("Mixed_7a_",),
    "block17": ("block17_",),
    "Mixed_6a": ("Mixed_6a_",),
    "block35": ("block35_",),
    "stem": ("Conv2d_",),
}  # keys: bench.scenarios.fine_tune.FINE_TUNE_STAGES, in that order (a test checks)


def unfreeze(base, stages: tuple[str, ...]) -> int:
    """Make exactly the layers of `stages` trainable; return how many weights that frees."""
    prefixes = tuple(p for s in stages for p in STAGE_PREFIXES[s])
    base.trainable = True
    for layer in base.layers:
        layer.trainable = layer.name.startswith(prefixes)
    return sum(math.prod(w.shape) for w in base.trainable_weights)


def run(run: dict[str, Any], backend: Backend, progress: Progress) -> dict[str, Any]:
    spec = FineTuneSpec(**run["params"])
    size = run["model"]["image_size"]
    split, base, facts = prepare(run, progress)
    model = facenet.classifier_model(base, num_classes=len(split.train.names))
    batches = iter(lfw.dataset(split.train, size, spec.batch_size, shuffle=True,
                               seed=run["data"]["seed"], repeat=True, drop_remainder=True))
    trainer_spec = FullTrainingSpec(batch_size=spec.batch_size, micro_batch=spec.batch_size,
                                    learning_rate=spec.learning_rate,
                                    weight_decay=spec.weight_decay)
    progress("decode the training images")
    t0 = time.perf_counter()
    pending = [next(batches)]  # fills the cache and the shuffle buffer, before the clock
    decode_s = time.perf_counter() - t0
    stages_out = []
    elapsed = 0.0
    reached: dict[str, Any] | None = None
    for n, stage in enumerate(FINE_TUNE_STAGES[: spec.stages], start=1):
        trainable = unfreeze(base, FINE_TUNE_STAGES[:n])
        trainer = backend.trainer(model, trainer_spec)
        seconds = []
        t_stage = time.perf_counter()
        for i in range(spec.steps_per_stage):
            images, labels = pending.pop() if pending else next(batches)
            t0 = time.perf_counter()
            float(trainer.micro_step(images, labels))
            trainer.update()
            seconds.append(time.perf_counter() - t0)
            progress(f"stage {n} ({stage}): train", i + 1, spec.steps_per_stage)
        stage_s = time.perf_counter() - t_stage
        elapsed += stage_s
        progress(f"stage {n} ({stage}): evaluate (off the clock)")
        trainer.sync()  # the next stage starts from these weights
        acc = accuracy(trainer.logits, split.test, size, spec.batch_size)
        stages_out.append(Stage(
            stage=stage, unfrozen=FINE_TUNE_STAGES[:n], trainable_weights=trainable,
            steps=spec.steps_per_stage, series=Series.of(spec.batch_size, seconds[0], [],
                                                         seconds[1:]),
            stage_s=stage_s, elapsed_s=elapsed, accuracy=acc))
        if reached is None and spec.target_accuracy and acc >= spec.target_accuracy:
            reached = {"elapsed_s": elapsed, "stage": stage}
    out: dict[str, Any] = {
        "model": facts,
        "data": split.describe(),
        "stages": stages_out,
        "measured": {"decode_s": decode_s},
        "accuracy": stages_out[-1].accuracy,
        "chance_accuracy": 1 / len(split.train.names),
    }
    if spec.target_accuracy:
        out["time_to_accuracy"] = {"target": spec.target_accuracy,
                                   "evaluation": "off the clock, after each stage",
                                   "reached": reached is not None, **(reached or {})}
    if not facts["pretrained"]:
        out["accuracy_note"] = ("random weights (no pretrained weights): fine-tuning starts "
                                "from nothing; the accuracy means nothing about transfer")
    return out
