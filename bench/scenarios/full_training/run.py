"""Traditional training: the whole FaceNet from scratch, softmax over the training identities.

Recipe (facenet's softmax training, as the paper ran it): RMSProp(decay 0.9, momentum 0.9,
epsilon 1.0), L2 weight decay on kernels, dropout 0.2, softmax cross-entropy on the bottleneck.
The global batch (1024 in the paper) is processed as micro-batches whose gradients are summed and
averaged before one update: the update equals the global batch's, except that BatchNorm's batch
statistics come from each micro-batch.

Timing: the training shard is decoded into the cache before the clock (`data_fill_s`). The
first micro-step and the first update trace and optimise the graph (tens of seconds): each is
its series' first call, never a steady sample; `warmup_steps` further micro-steps are warm-up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from typing import Any

from bench import distributed, measure
from bench.backends.base import Backend
from bench.data import lfw
from bench.models import facenet
from bench.models.store import build_base
from bench.record import Series
from bench.scenarios.common import Progress, load_split, model_facts
from bench.scenarios.full_training import FullTrainingSpec, interval_reached, projection
from bench.training import accuracy


def _narrow_enough(spec: FullTrainingSpec, micro: list[float], fixed_s: float) -> bool:
    """Whether the steady micro-steps so far project a total within ±spec.interval (the
    updates, timed after the window, add little to it)."""
    steady = micro[spec.warmup_steps:]
    proj = projection(Series.of(spec.micro_batch, None, [], steady), None,
                      dataclasses.asdict(spec), fixed_s)
    return interval_reached(proj, spec.interval)


def _loss(losses: list[float]) -> dict[str, Any]:
    """The first and last timed micro-steps' loss; a training that diverged (a loss not finite:
    its steps were still timed) says from which micro-step, in place of the values JSON cannot
    hold."""
    bad = next((i for i, v in enumerate(losses) if not math.isfinite(v)), None)
    if bad is None:
        return {"first": losses[0], "last": losses[-1]}
    return {"first": losses[0] if bad else None, "last": None, "diverged": (
        f"the loss was {losses[bad]} from micro-step {bad + 1} on (lower learning_rate)")}


def run(run: dict[str, Any], backend: Backend, progress: Progress) -> dict[str, Any]:
    spec = FullTrainingSpec(**run["params"])
    strategy, task, workers = backend.strategy()  # first: before any TensorFlow op
    if workers > 1:
        progress(distributed.JOINED)
    if workers != spec.workers:
        raise ValueError(f"the run asks for {spec.workers} worker(s) but its cluster names "
                         f"{workers}")
    size = run["model"]["image_size"]
    progress("prepare data")
    split = load_split(run["data"])
    shard = lfw.shard(split.train, workers, task)  # this worker's share of every epoch
    if len(shard.paths) < spec.micro_batch:
        raise ValueError(f"worker {task} has {len(shard.paths)} training images, fewer than "
                         f"micro_batch = {spec.micro_batch}: lower micro_batch or workers")
    progress("build model")
    model_spec = {**run["model"], "weights": ""}  # from scratch, whatever the suite says
    # tf.distribute makes the variables in its scope; DDP wraps the model once built
    with strategy.scope() if hasattr(strategy, "scope") else contextlib.nullcontext():
        base = build_base(model_spec, seed=run["data"]["seed"])
        model = facenet.classifier_model(base, num_classes=len(split.train.names))
    trainer = backend.trainer(model, spec, strategy)
    micro_step, update = trainer.micro_step, trainer.update
    batches = iter(lfw.dataset(shard, size, spec.micro_batch, shuffle=True,
                               seed=run["data"]["seed"], repeat=True, drop_remainder=True))
    progress("decode the training shard")
    t0 = time.perf_counter()
    pending = [next(batches)]  # fills the cache and the shuffle buffer: the whole shard decoded
    data_fill_s = time.perf_counter() - t0

    def step() -> float:
        images, labels = pending.pop() if pending else next(batches)
        return micro_step(images, labels)

    slowdown = measure.injected_slowdown()  # test-only, 0 unless its variable is set
    progress("trace first step")
    t_begin = time.perf_counter()
    _, first_micro = measure.timed(step)  # micro-step 0 traces and optimises the graph
    micro_total = spec.total_steps * spec.accumulation
    planned = micro_total - 1 if spec.measure == "full" else spec.warmup_steps + spec.window_steps
    if workers > 1 and spec.measure == "projected":
        # to the end of an update: an engine may all-reduce inside its last micro-step (DDP's
        # synced backward), which the window must then hold
        planned = min(micro_total, -(-(planned + 1) // spec.accumulation) * spec.accumulation) - 1
    micro: list[float] = []
    updates: list[float] = []  # the first one traces
    losses: list[float] = []

    eval_s, reached = 0.0, None  # evaluation is off the clock
    epoch_micro = spec.accumulation * spec.steps_per_epoch

    def micro_step_then_update(i: int, phase: str, of: int) -> None:
        nonlocal eval_s, reached
        if i:
            loss, seconds = measure.timed(step, slowdown)
            losses.append(loss)
            micro.append(seconds)
            progress("warm-up" if i <= spec.warmup_steps else phase, i, of)
        if (i + 1) % spec.accumulation == 0:
            updates.append(measure.timed(update, slowdown)[1])
        if spec.target_accuracy and reached is None and (i + 1) % epoch_micro == 0:
            t0 = time.perf_counter()
            acc = accuracy(trainer.logits, split.test, size, spec.micro_batch)
            eval_s += time.perf_counter() - t0
            if acc >= spec.target_accuracy:
                reached = {"elapsed_s": data_fill_s + time.perf_counter() - t_begin - eval_s,
                           "epoch": (i + 1) // epoch_micro, "accuracy": acc}

    for i in range(planned + 1):
        micro_step_then_update(i, "train", planned)
    # the window grows to the interval (data-parallel workers keep a fixed one: in step)
    if spec.measure == "projected" and spec.interval and workers == 1:
        cap = spec.warmup_steps + spec.max_window_steps
        while len(micro) < cap and not _narrow_enough(spec, micro, data_fill_s + first_micro):
            micro_step_then_update(len(micro) + 1, f"train (to ±{spec.interval:.0%})", cap)
    wall_s = time.perf_counter() - t_begin - eval_s
    # data-parallel: one update's warm-up beside the first, at which the workers come back in
    # step (one that compiled faster waits for its peers at its next all-reduce)
    update_warmup = 1 if workers > 1 else 0
    if spec.measure == "projected":
        # the tracing one, the warm-up and 3 timed; these weights are not used
        while len(updates) < 4 + update_warmup:
            updates.append(measure.timed(update, slowdown)[1])
    progress("time the input pipeline alone")
    epoch_batches = max(1, len(shard.paths) // spec.micro_batch)
    pipeline_img_s = lfw.pipeline_throughput(
        lfw.dataset(shard, size, spec.micro_batch, shuffle=True, seed=run["data"]["seed"],
                    repeat=True, drop_remainder=True), batches=max(20, 2 * epoch_batches))
    steady = micro[spec.warmup_steps:]
    if len(steady) < 3:
        raise ValueError(f"only {len(steady)} steady micro-steps: raise epochs/steps_per_epoch "
                         f"or lower warmup_steps so at least 3 are timed")
    out: dict[str, Any] = {
        "model": model_facts(base, model_spec),
        "data": split.describe(),
        "series": {
            "micro_step": Series.of(spec.micro_batch, first_micro, micro[: spec.warmup_steps],
                                    steady),
            "update": Series.of(spec.worker_batch, updates[0], updates[1:1 + update_warmup],
                                updates[1 + update_warmup:]),
        },
        "measured": {"data_fill_s": data_fill_s, "input_pipeline_images_per_s": pipeline_img_s},
        "loss": _loss(losses),
        **({"injected_slowdown": slowdown} if slowdown else {}),
    }
    if workers > 1:
        out["distributed"] = {
            **backend.engine(), "workers": workers, "task_index": task,
            "worker_batch": spec.worker_batch, "micro_batch": spec.micro_batch,
            "accumulation": spec.accumulation, "shard_images": len(shard.paths)}
    if spec.measure == "full":
        out["measured"]["total_s"] = data_fill_s + wall_s
        if spec.target_accuracy:
            out["time_to_accuracy"] = {"target": spec.target_accuracy,
                                       "evaluation": "off the clock, after each epoch",
                                       "reached": reached is not None, **(reached or {})}
        progress("evaluate")
        out["accuracy"] = accuracy(trainer.logits, split.test, size, spec.micro_batch)
    else:
        out["accuracy_note"] = "not evaluated: a projected run trains only a short window"
    return out
