"""The paper's experiment, and this run's transfer-vs-full speed-up beside it (at the paper's
scale and as the suite ran). See `bench.record`."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.measure import batch_means_interval
from bench.record.figures import figures
from bench.record.schema import Record, _record, parse_run
from bench.scenarios.full_training import FullTrainingSpec, update_steps

PAPER = {  # reported by the white paper, never mixed with measured or projected figures
    "machine": "2S Intel Xeon Gold 6148",
    "software": "TensorFlow, no CPU optimizations",
    "full_training_s": 20 * 3600.0,
    "transfer_s": 15 * 60.0,
    "speedup": 80.0,
    "training_images": 80 * 13 * 1024,
    "lfw_images": 13_233,
    "image_size": 160,
}


def speedup(full: Record | dict[str, Any], transfer: Record | dict[str, Any]) -> dict[str, Any]:
    """Transfer vs full training of one backend: as the suite ran, and at the paper's scale.

    As run: the suite's full-training total (measured or projected) over its transfer total.
    Paper scale, both sides projected from this run: full training's one-off costs (the
    shard's decoding scaled to LFW's images, the first step) plus its per-image part scaled to
    1,064,960 training images; transfer's one-offs (first batch, head tracing and training)
    plus LFW's 13,233 images decoded and embedded at this run's steady mean rate (a sum, so a
    mean: sum of images over sum of seconds).
    """
    full, transfer = _record(full), _record(transfer)
    ff, tf_ = figures(full), figures(transfer)
    spec = FullTrainingSpec(**full.params)
    training_images = spec.total_steps * spec.batch_size
    embedded = transfer.data.get("train_images", 0) + transfer.data.get("test_images", 0)
    lfw = PAPER["lfw_images"]
    fill = full.measured.get("data_fill_s", 0.0) * lfw / max(1, full.data.get("train_images", 1))
    fixed = full.measured.get("data_fill_s", 0.0) + ff["first step s"].value
    total = ff["train total s"].value
    full_s = fill + ff["first step s"].value + (total - fixed) * (
        PAPER["training_images"] / training_images)
    extract = transfer.series["extract_batch"]
    mean_rate = extract.work * len(extract.samples) / sum(extract.samples)
    m = transfer.measured
    transfer_s = (extract.first + m.get("head_trace_s", 0.0) + m.get("head_s", 0.0)
                  + (lfw - extract.work) / mean_rate
                  + m.get("decode_s", 0.0) * lfw / max(1, embedded))
    return {
        "backend": full.backend, "image_size": full.model.get("image_size"),
        "variant": full.model.get("variant"), "full_training_s": total,
        "full_training_kind": ff["train total s"].kind,
        "transfer_s": tf_["transfer total s"].value, "training_images": training_images,
        "transfer_images": embedded, "speedup": total / tf_["transfer total s"].value,
        "paper_scale": {"full_training_s": full_s, "transfer_s": transfer_s,
                        "speedup": full_s / transfer_s},
    }


HOSTS = (2, 4, 8, 16)  # the cluster sizes a data-parallel run is projected to

ON_HOSTS_MODEL = (
    "per update: the worker's share of the global batch at one worker alone's pace (measured "
    "on one worker's cores) + the all-reduce, taken as the measured update step beyond that "
    "pace, scaled by a ring all-reduce's traffic per worker, 2(N-1)/N; x the updates of the "
    f"paper's {PAPER['training_images']:,} images at the run's global batch; one-off costs "
    "(data fill, first step) left out")


def on_hosts(run: Record | dict[str, Any]) -> dict[str, Any] | None:
    """A data-parallel run's full training at the paper's scale on 2, 4, 8 and 16 hosts like
    its workers (projected, by ON_HOSTS_MODEL), each with a 95% interval carried bound to bound
    from the two measured steps' (batch means); None without a measured one-worker-alone
    reference."""
    run = _record(run)
    alone = (run.references or {}).get("alone")
    spec = FullTrainingSpec(**run.params)
    if spec.workers < 2 or not alone or alone.get("status") != "ok":
        return None
    step, single = _mean_interval(run), _mean_interval(parse_run(alone, "reference"))
    # (mean, low, high) of the all-reduce: the interval's widest reading of the difference
    reduce = (max(0.0, step[0] - single[0]), max(0.0, step[1] - single[2]),
              max(0.0, step[2] - single[1]))
    updates = PAPER["training_images"] / spec.batch_size
    out = {}
    for hosts in HOSTS:
        share = spec.workers / hosts  # of the measured worker's images
        ring = (2 * (hosts - 1) / hosts) / (2 * (spec.workers - 1) / spec.workers)
        total, low, high = (updates * (share * a + ring * r)
                            for a, r in zip(single, reduce, strict=True))
        out[str(hosts)] = {"total_s": total, "low": low, "high": high}
    return {"hosts": out, "model": ON_HOSTS_MODEL, "kind": "projected",
            "update_s": step[0], "alone_update_s": single[0], "all_reduce_s": reduce[0]}


def _mean_interval(record: Record) -> tuple[float, float, float]:
    """The mean whole-update step and its 95% interval (the mean itself where there is none)."""
    steps = update_steps(record)
    mean = float(np.mean(steps))
    low, high, _ = batch_means_interval(list(steps))
    return mean, mean if low is None else low, mean if high is None else high
