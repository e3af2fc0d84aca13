"""Traditional training: the whole FaceNet from scratch, softmax over the training identities.

Recipe (facenet's softmax training, as the paper ran it): RMSProp(decay 0.9, momentum 0.9,
epsilon 1.0), L2 weight decay on kernels, dropout 0.2, softmax cross-entropy on the bottleneck.
The global batch (1024 in the paper) is processed as micro-batches whose gradients are summed and
averaged before one update: the update equals the global batch's, except that BatchNorm's batch
statistics come from each micro-batch.

Timing: the first micro-step and first update trace and optimise the graph (tens of seconds);
they are reported as `first_step_s`, never mixed into the steady-state samples. `warmup_steps`
further micro-steps are kept apart as warm-up samples.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from bench import distributed
from bench.backends import Backend
from bench.data import lfw
from bench.measure import project_total, summarize
from bench.models import facenet
from bench.models.store import build_base
from bench.scenarios import Progress
from bench.scenarios.common import load_split, model_facts
from bench.suite import FullTrainingSpec
from bench.training import TRAIN_FLOPS_PER_FORWARD, accuracy, make_trainer


def _timed(fn, *args) -> float:
    t0 = time.perf_counter()
    out = fn(*args)
    if out is not None:
        float(out)  # wait for the result, not only the dispatch
    return time.perf_counter() - t0


def _projection_check(micro: list[float], updates: list[float], first_s: float,
                      spec: FullTrainingSpec, measured_s: float) -> dict[str, Any] | None:
    """What a projected run would have said, from this full run's own first window.

    The same arithmetic as measure = "projected": the first step, then the window after the
    warm-up, extrapolated to every step — compared with the total actually measured.
    """
    window = micro[spec.warmup_steps: spec.warmup_steps + spec.window_steps]
    if len(window) < 3 or len(micro) <= spec.warmup_steps + spec.window_steps:
        return None  # the run is no longer than its window: nothing to check
    update_mean = float(np.mean(updates[:3])) if updates else 0.0
    projected = project_total(window, spec.total_steps * spec.accumulation - 1,
                              fixed_s=first_s + (spec.total_steps - 1) * update_mean)
    return {**projected, "measured_s": measured_s,
            "error": projected["total_s"] / measured_s - 1,
            "within_interval": projected["total_s_low"] <= measured_s <= projected["total_s_high"]}


def run(run: dict[str, Any], backend: Backend, progress: Progress) -> dict[str, Any]:
    spec = FullTrainingSpec(**run["params"])
    strategy, task, workers = distributed.strategy()  # first: before any TensorFlow op
    if workers != spec.workers:
        raise ValueError(f"the run asks for {spec.workers} worker(s) but TF_CONFIG names "
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
    with strategy.scope():
        base = build_base(model_spec, seed=run["data"]["seed"])
        model = facenet.classifier_model(base, num_classes=len(split.train.names))
    micro_step, update, _ = make_trainer(model, spec, strategy)
    batches = iter(lfw.dataset(shard, size, spec.micro_batch, shuffle=True,
                               seed=run["data"]["seed"], repeat=True, drop_remainder=True))

    def step() -> float:
        images, labels = next(batches)
        return micro_step(images, labels)

    progress("trace first step")
    t_begin = time.perf_counter()
    first_s = _timed(step)  # micro-step 0 traces and optimises the graph
    micro_total = spec.total_steps * spec.accumulation
    planned = micro_total - 1 if spec.measure == "full" else spec.warmup_steps + spec.window_steps
    micro: list[float] = []
    updates: list[float] = []
    losses: list[float] = []
    update_traced = False

    def timed_update() -> None:
        nonlocal first_s, update_traced
        seconds = _timed(update)
        if update_traced:
            updates.append(seconds)
        else:  # the first update traces too: it belongs with the first step
            first_s += seconds
            update_traced = True

    eval_s, reached = 0.0, None  # evaluation is off the clock
    epoch_micro = spec.accumulation * spec.steps_per_epoch
    for i in range(planned + 1):
        if i:
            t0 = time.perf_counter()
            losses.append(float(step()))
            micro.append(time.perf_counter() - t0)
            progress("warm-up" if i <= spec.warmup_steps else "train", i, planned)
        if (i + 1) % spec.accumulation == 0:
            timed_update()
        if spec.target_accuracy and reached is None and (i + 1) % epoch_micro == 0:
            t0 = time.perf_counter()
            acc = accuracy(model, split.test, size, spec.micro_batch)
            eval_s += time.perf_counter() - t0
            if acc >= spec.target_accuracy:
                reached = {"elapsed_s": time.perf_counter() - t_begin - eval_s,
                           "epoch": (i + 1) // epoch_micro, "accuracy": acc}
    wall_s = time.perf_counter() - t_begin - eval_s
    if spec.measure == "projected":
        while len(updates) < 3:  # timing only: this run's weights are not used afterwards
            timed_update()
    progress("time the input pipeline alone")
    epoch_batches = max(1, len(shard.paths) // spec.micro_batch)
    pipeline_img_s = lfw.pipeline_throughput(
        lfw.dataset(shard, size, spec.micro_batch, shuffle=True, seed=run["data"]["seed"],
                    repeat=True, drop_remainder=True), batches=max(20, 2 * epoch_batches))
    steady = micro[spec.warmup_steps:]
    if len(steady) < 3:
        raise ValueError(f"only {len(steady)} steady micro-steps: raise epochs/steps_per_epoch "
                         f"or lower warmup_steps so at least 3 are timed")
    stats = summarize(steady)
    img_s = spec.micro_batch / stats["median"]
    update_mean = float(np.mean(updates)) if updates else 0.0
    # a whole update: this worker's micro-steps, then the update (with its all-reduce)
    step_s = spec.accumulation * stats["median"] + (float(np.median(updates)) if updates else 0)
    facts = model_facts(base, model_spec)
    out: dict[str, Any] = {
        "model": facts,
        "data": split.describe(),
        "first_step_s": first_s,
        "samples": {"micro_step_s": steady, "warmup_micro_step_s": micro[: spec.warmup_steps],
                    "update_s": updates},
        "stats": {"micro_step_s": stats},
        "loss": {"first": losses[0], "last": losses[-1]},
        "derived": {
            "images_per_s": img_s,
            "gflops_per_s": img_s * TRAIN_FLOPS_PER_FORWARD * facts["forward_flops"] / 1e9,
            "step_s": step_s,
            "step_images_per_s": spec.batch_size / step_s,
            "total_images": spec.total_steps * spec.batch_size,
            "accumulation": spec.accumulation,
            # the same input pipeline iterated without the model: far above images_per_s
            # means the pipeline is not what limits training
            "input_pipeline_images_per_s": pipeline_img_s,
        },
    }
    if workers > 1:
        out["distributed"] = {
            "strategy": "MultiWorkerMirroredStrategy", "workers": workers, "task_index": task,
            "worker_batch": spec.worker_batch, "micro_batch": spec.micro_batch,
            "accumulation": spec.accumulation, "shard_images": len(shard.paths)}
    if spec.measure == "full":
        out["total"] = {"kind": "measured", "total_s": wall_s, "steps": spec.total_steps}
        if spec.target_accuracy:
            out["time_to_accuracy"] = {"target": spec.target_accuracy,
                                       "evaluation": "off the clock, after each epoch",
                                       "reached": reached is not None, **(reached or {})}
        out["projection_check"] = _projection_check(micro, updates, first_s, spec, wall_s)
        progress("evaluate")
        out["accuracy"] = accuracy(model, split.test, size, spec.micro_batch)
    else:
        out["total"] = project_total(
            steady, micro_total - 1, fixed_s=first_s + (spec.total_steps - 1) * update_mean)
        out["accuracy"] = None
        out["accuracy_note"] = "not evaluated: a projected run trains only a short window"
    out["derived"]["total_hours"] = out["total"]["total_s"] / 3600
    return out
