"""Headline figures of a result document (pure): what the console and HTML reports show.

Two kinds of speed-up are kept apart and labelled:
- *as configured*: the suite's full-training total (measured or projected) over its transfer
  total, on the suite's own data — what this run did;
- *paper scale*: both projected to the paper's experiment (LFW's 13,233 images embedded once vs
  80 epochs x 13 batches x 1024 images of training) from this run's steady-state rates.
"""

from __future__ import annotations

from typing import Any

PAPER = {
    "machine": "2S Intel Xeon Gold 6148",
    "software": "TensorFlow, no CPU optimizations",
    "full_training_s": 20 * 3600.0,
    "transfer_s": 15 * 60.0,
    "speedup": 80.0,
    "training_images": 80 * 13 * 1024,
    "lfw_images": 13_233,
    "image_size": 160,
}
BASELINE_BACKEND = "tf-stock"


def runs_by(doc: dict[str, Any], status: str = "ok") -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["scenario"], r["backend"]): r for r in doc["runs"] if r.get("status") == status}


def headline(run: dict[str, Any]) -> tuple[str, float | None, str]:
    """The one figure a run is compared on: (label, value, unit); larger is better."""
    derived = run.get("derived", {})
    scenario = run["scenario"]
    if scenario == "full_training":
        return "train img/s", derived.get("images_per_s"), "img/s"
    if scenario == "transfer":
        return "extract img/s", derived.get("extraction_images_per_s"), "img/s"
    if scenario == "fine_tune":
        return "fine-tune img/s", derived.get("images_per_s"), "img/s"
    return "infer img/s", derived.get("images_per_s"), "img/s"


def paper_scale(full: dict[str, Any], transfer: dict[str, Any]) -> dict[str, float]:
    """Project this box's runs to the paper's experiment (both sides projected).

    Full training: the run's own total (measured or projected), its per-image part scaled to
    the paper's 1,064,960 images. Transfer: first batch and head as measured, plus the rest of
    LFW's 13,233 images at the run's steady extraction rate (a mean rate: these are sums).
    """
    first = full["first_step_s"]
    scale = PAPER["training_images"] / full["derived"]["total_images"]
    full_s = first + (full["total"]["total_s"] - first) * scale
    rate = transfer["derived"]["extraction_images_per_s"]
    transfer_s = (transfer["first_batch_s"] + transfer["head_s"]
                  + (PAPER["lfw_images"] - transfer["params"]["batch_size"]) / rate)
    return {"full_training_s": full_s, "transfer_s": transfer_s, "speedup": full_s / transfer_s}


def speedups(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Per backend: transfer vs full training, as configured and at the paper's scale."""
    ok = runs_by(doc)
    rows = []
    for backend in dict.fromkeys(r["backend"] for r in doc["runs"]):
        full, transfer = ok.get(("full_training", backend)), ok.get(("transfer", backend))
        if not (full and transfer):
            continue
        rows.append({
            "backend": backend,
            "image_size": full["model"]["image_size"],
            "variant": full["model"]["variant"],
            "full_training_s": full["total"]["total_s"],
            "full_training_kind": full["total"]["kind"],
            "transfer_s": transfer["total"]["total_s"],
            "training_images": full["derived"]["total_images"],
            "transfer_images": transfer["derived"]["images"],
            "speedup": full["total"]["total_s"] / transfer["total"]["total_s"],
            "paper_scale": paper_scale(full, transfer),
        })
    return rows


def backend_ratios(doc: dict[str, Any], baseline: str = BASELINE_BACKEND) -> list[dict[str, Any]]:
    """Each backend's headline figure over the baseline backend's, scenario by scenario."""
    ok = runs_by(doc)
    rows = []
    for (scenario, backend), run in ok.items():
        base = ok.get((scenario, baseline))
        label, value, _ = headline(run)
        if base is None or backend == baseline or value is None:
            continue
        base_value = headline(base)[1]
        if base_value:
            rows.append({"scenario": scenario, "backend": backend, "figure": label,
                         "value": value, "baseline": base_value, "ratio": value / base_value})
    return rows


def scaling_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Data-parallel training runs: N workers beside one worker alone on one worker's cores
    (the scaling efficiency) and one worker on all the cores (what splitting buys)."""
    rows = []
    for run in doc["runs"]:
        if run.get("status") == "ok" and run.get("scaling"):
            s = run["scaling"]
            rows.append({"backend": run["backend"], **s,
                         "hosts": len({w.rpartition(":")[0]
                                       for w in run.get("cluster", {}).get("workers", [])})})
    return rows


def not_ok(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in doc["runs"] if r.get("status") != "ok"]
