"""The paper's experiment, and this run's transfer-vs-full speed-up beside it (at the paper's
scale and as the suite ran). See `bench.record`."""

from __future__ import annotations

from typing import Any

from bench.record.figures import figures
from bench.record.schema import Record, _record
from bench.scenarios.full_training import FullTrainingSpec

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
