"""Traditional training, declared: its spec (the suite's [full_training]), its samples and
figures — whole-update img/s, the projected or measured total, scaling against a data-parallel
run's references — and its headline. Its run is `bench.scenarios.full_training.run`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.measure import batch_means_interval
from bench.record.figure import (
    HIGHER,
    LOWER,
    NEITHER,
    Figure,
    compiled,
    efficiency,
    median,
)
from bench.record.schema import Json, Record, Series, parse_run
from bench.scenarios.base import Scenario
from bench.spec import at_least, fail, one_of, target

TRAIN_FLOPS_PER_FORWARD = 3  # forward + backward ≈ 3 forward passes


@dataclass(frozen=True)
class FullTrainingSpec:
    """Traditional training from scratch; defaults are the paper's run (80 x 13 x 1024).

    The optimiser follows facenet's softmax recipe: RMSProp(decay 0.9, momentum 0.9, epsilon 1.0),
    L2 weight decay on kernels, dropout keep 0.8. A global batch that does not fit in memory is
    split into micro-batches whose gradients are averaged before one update.
    """

    measure: str = "projected"  # "full" runs every step; "projected" times a window
    epochs: int = 80
    steps_per_epoch: int = 13
    batch_size: int = 1024  # global batch: images per optimiser update
    micro_batch: int = 16  # images per forward/backward pass
    warmup_steps: int = 2  # micro-steps after the first (tracing) one, untimed in the statistics
    window_steps: int = 8  # micro-steps timed for the projection
    # > 0: the window grows, a micro-step at a time, until the projected total's 95% interval
    # is within ±interval of it or the window holds max_window_steps (0: a fixed window; so
    # with workers > 1, whose processes must run the same steps)
    interval: float = 0.0
    max_window_steps: int = 48
    learning_rate: float = 0.05
    weight_decay: float = 5e-4
    # facenet's optional center loss on the prelogits (0: off, its default; it used 0.01 at times)
    center_loss_factor: float = 0.0
    center_loss_alfa: float = 0.95  # how slowly the class centres follow their features
    target_accuracy: float = 0.0  # > 0: report the training time to reach it (measure = "full")
    # > 1: data-parallel on tf.distribute.MultiWorkerMirroredStrategy, one worker per core
    # group of the placement (or per host of --cluster); the global batch is kept
    workers: int = 1

    def check(self, where: str) -> None:
        one_of(f"{where}.measure", self.measure, ("full", "projected"))
        at_least(f"{where}.workers", self.workers, 1)
        target(f"{where}.target_accuracy", self.target_accuracy)
        if self.target_accuracy and self.measure != "full":
            fail(f"{where}.target_accuracy", 'needs measure = "full": a projected run trains '
                  "only a window")
        for name in ("epochs", "steps_per_epoch", "batch_size", "micro_batch", "window_steps"):
            at_least(f"{where}.{name}", getattr(self, name), 1)
        at_least(f"{where}.warmup_steps", self.warmup_steps, 0)
        if self.batch_size % (self.micro_batch * self.workers):
            fail(f"{where}.micro_batch",
                  f"micro_batch x workers ({self.micro_batch} x {self.workers}) must divide "
                  f"batch_size ({self.batch_size}); e.g. micro_batch = 16")
        if self.window_steps < 3:
            fail(f"{where}.window_steps", "needs >= 3 timed micro-steps for a confidence interval")
        if not 0.0 <= self.interval < 1.0:
            fail(f"{where}.interval", f"is a fraction of the projected total, e.g. 0.1 for ±10% "
                 f"(0: a fixed window); got {self.interval}")
        if self.interval and self.max_window_steps < self.window_steps:
            fail(f"{where}.max_window_steps", f"must be >= window_steps ({self.window_steps}): "
                 f"the window only grows")
        timed = self.total_steps * self.accumulation - 1 - self.warmup_steps
        if self.measure == "full" and timed < 3:
            fail(f"{where}.epochs", f"measure = \"full\" times only {timed} steady micro-step(s) "
                  f"after the first and the warm-up; raise epochs or steps_per_epoch to time >= 3")
        if self.learning_rate <= 0:
            fail(f"{where}.learning_rate", "must be > 0")
        at_least(f"{where}.weight_decay", self.weight_decay, 0.0)
        at_least(f"{where}.center_loss_factor", self.center_loss_factor, 0.0)
        if not 0.0 <= self.center_loss_alfa <= 1.0:
            fail(f"{where}.center_loss_alfa", f"is 0 to 1 (facenet: 0.95); got "
                  f"{self.center_loss_alfa}")

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def worker_batch(self) -> int:
        """Images each worker contributes to one update."""
        return self.batch_size // self.workers

    @property
    def accumulation(self) -> int:
        """Micro-steps each worker runs per update."""
        return self.worker_batch // self.micro_batch


def _update_share(record: Record) -> float:
    """Each micro-step's share of one update (the optimizer step and its all-reduce)."""
    update = record.series.get("update")
    if update is None or not update.samples:
        return 0.0
    return median(np.asarray(update.samples)) / FullTrainingSpec(**record.params).accumulation


def update_steps(record: Record) -> np.ndarray:
    """Seconds of one whole update, one estimate per steady micro-step: its seconds plus its
    share of the update, times the micro-steps an update takes."""
    micro = record.series["micro_step"]
    return ((np.asarray(micro.samples, dtype=float) + _update_share(record))
            * FullTrainingSpec(**record.params).accumulation)


def _samples(record: Record, name: str) -> np.ndarray:
    """Whole-update img/s of each micro-step: an update's images over its `update_steps`."""
    spec = FullTrainingSpec(**record.params)
    return record.series["micro_step"].work * spec.accumulation / update_steps(record)


def projection(micro: Series, update: Series | None, spec: dict[str, Any], fixed_s: float,
               window: int | None = None, updates: int | None = None) -> dict[str, Any]:
    """Project the wall time of every step from a steady window.

    total = fixed + (micro-steps - 1) x mean(micro window) + (updates - 1) x mean(updates);
    each mean's interval from batch means (autocorrelated samples), the two half-widths added.
    Means, not medians: a total is a sum, slow steps count.
    """
    planned = FullTrainingSpec(**spec)
    steps = planned.total_steps
    micro_steps = steps * planned.accumulation - 1
    w = list(micro.samples[:window] if window else micro.samples)
    u = list(update.samples[:updates] if updates else update.samples) if update else []
    m_lo, m_hi, method = batch_means_interval(w)
    mean_m = float(np.mean(w))
    mean_u = float(np.mean(u)) if u else 0.0
    u_lo, u_hi, _ = batch_means_interval(u)
    if u_lo is None:  # one update or none: its cost is taken as measured
        u_lo = u_hi = mean_u
    total = fixed_s + micro_steps * mean_m + (steps - 1) * mean_u
    out = {"total_s": total, "low": None, "high": None, "window_steps": len(w),
           "update_samples": len(u), "method": method}
    if m_lo is not None:
        out.update(low=fixed_s + micro_steps * m_lo + (steps - 1) * u_lo,
                   high=fixed_s + micro_steps * m_hi + (steps - 1) * u_hi)
    return out


def _figures(record: Record) -> list[Figure]:
    p = record.params
    micro, update = record.series["micro_step"], record.series.get("update")
    rate = median(_samples(record, "micro_step"))
    flops = record.model.get("forward_flops")
    gflops = rate * TRAIN_FLOPS_PER_FORWARD * flops / 1e9 if flops else None
    t = record.measured
    firsts = [s.first for s in (micro, update) if s is not None and s.first is not None]
    first = sum(firsts) if micro.first is not None else None
    fixed = t.get("data_fill_s", 0.0) + (first or 0.0)
    figs = [
        Figure("train img/s", rate, "img/s", HIGHER, "micro_step", headline=True,
               note="whole updates: each micro-step with its share of the update"),
        Figure("train GFLOP/s", gflops, "GFLOP/s", HIGHER),
        efficiency(record, gflops),
        Figure("first step s", first, "s", LOWER,
               note="the first micro-step and update: tracing and graph optimisation"
                    + compiled(record)),
        Figure("data fill s", t.get("data_fill_s"), "s", LOWER,
               note="decoding the training shard into the cache, before the clock"),
        Figure("input pipeline img/s", t.get("input_pipeline_images_per_s"), "img/s", NEITHER),
        Figure("update s", median(np.asarray(update.samples)) if update and update.samples
               else None, "s", LOWER),
    ]
    if p.get("measure") == "full" and "total_s" in t:
        figs.append(Figure("train total s", t["total_s"], "s", LOWER))
        window = FullTrainingSpec(**p).window_steps
        check = projection(micro, update, p, fixed, window=window, updates=3)
        if len(micro.samples) > window >= 3:
            figs.append(_projection_error(check, t["total_s"]))
    else:
        proj = projection(micro, update, p, fixed)
        figs.append(Figure("train total s", proj["total_s"], "s", LOWER, kind="projected",
                           low=proj["low"], high=proj["high"],
                           note=f"95% interval, {proj['method']}, from "
                                f"{proj['window_steps']} micro-steps" + _growth(proj, p)))
    figs += _scaling(record, rate)
    return figs


def interval_reached(proj: dict[str, Any], interval: float) -> bool:
    """Whether a projection's 95% interval is within ±interval of its total."""
    return (proj["low"] is not None
            and (proj["high"] - proj["low"]) / 2 <= interval * proj["total_s"])


def _growth(proj: dict[str, Any], params: dict[str, Any]) -> str:
    spec = FullTrainingSpec(**params)
    if not spec.interval or spec.workers > 1:  # data-parallel workers keep a fixed window
        return ""
    reached = "reached" if interval_reached(proj, spec.interval) else (
        f"not reached by the cap of {spec.max_window_steps}")
    return f"; window grown toward ±{spec.interval:.0%}: {reached}"


def _projection_error(check: dict[str, Any], measured: float) -> Figure:
    """What a projected run would have said, from a full run's own first window."""
    if check["low"] is None:
        where, low, high = "no interval", None, None
    else:
        low, high = check["low"] / measured - 1, check["high"] / measured - 1
        inside = check["low"] <= measured <= check["high"]
        where = (f"[{check['low']:.1f}, {check['high']:.1f}] s: measured "
                 + ("inside" if inside else "outside") + " the 95% interval")
    return Figure("projection error", check["total_s"] / measured - 1, "", NEITHER, low=low,
                  high=high, note=f"projected {check['total_s']:.1f} s from the first "
                                  f"{check['window_steps']} steady micro-steps vs "
                                  f"{measured:.1f} s measured; {where} ({check['method']})")


def _scaling(record: Record, rate: float) -> list[Figure]:
    """A data-parallel run against its references, measured right after on the same cores."""
    refs = record.references or {}
    out = []
    workers = record.params.get("workers", 1)
    alone = refs.get("alone")
    if alone and alone.get("status") == "ok":
        single = _rate(alone)
        out.append(Figure("1 worker alone img/s", single, "img/s", HIGHER))
        out.append(Figure("scaling efficiency", rate / (workers * single), "", HIGHER,
                          note="N workers ÷ (N × one worker alone on one worker's cores)"))
    whole = refs.get("one_worker_all_cores")
    if whole and whole.get("status") == "ok":
        single = _rate(whole)
        out.append(Figure("1 worker all cores img/s", single, "img/s", HIGHER))
        out.append(Figure("vs 1 worker", rate / single, "x", HIGHER,
                          note="N workers ÷ one worker on all the cores"))
    return out


def _rate(reference: Json) -> float | None:
    """A reference run's headline (one process, on the same cores right after): the same
    figure as the run's own, from its own record."""
    return next(f.value for f in _figures(parse_run(reference, "reference")) if f.headline)


SCENARIO = Scenario("full_training", FullTrainingSpec, _figures, _samples,
                    headline=lambda params: "train img/s", trains=True, data_parallel=True,
                    primary=True, from_weights=False)
