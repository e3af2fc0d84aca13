"""Do all backends compute the same embeddings? Compared against the fp32 TensorFlow reference.

Each transfer and inference run stores the embeddings of the first few held-out images (the same
images and weights in every backend); after the suite, every run is compared with the reference
run of its scenario. A backend that disagrees is reported, not hidden.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

PARITY_IMAGES = 4
REFERENCES = ("tf-stock", "tf-onednn")  # fp32 TensorFlow, in order of preference
# Cosine similarity a backend's embeddings must reach against the reference, per precision.
MIN_COSINE = {"fp32": 0.9999, "bf16": 0.99, "int8": 0.98}


def stored(embeddings: np.ndarray) -> list[list[float]]:
    """Embeddings as stored in a result: 7 decimals (unit vectors; ample for a 1e-4 test)."""
    return np.round(np.asarray(embeddings, dtype=np.float64), 7).tolist()


def parity_embeddings(predict: Callable[[np.ndarray], np.ndarray],
                      images: np.ndarray) -> list[list[float]]:
    """Embeddings of the first PARITY_IMAGES images, one call each (batch 1)."""
    n = min(PARITY_IMAGES, len(images))
    return stored(np.stack([predict(images[i:i + 1])[0] for i in range(n)]))


def compare(reference: list[list[float]], other: list[list[float]]) -> dict[str, float]:
    """Cosine and largest difference over the images both embedded: the first ones of the
    same held-out images (a run of an older result at batch 1 or 2 stored fewer)."""
    a, b = np.asarray(reference, dtype=np.float64), np.asarray(other, dtype=np.float64)
    n = min(len(a), len(b))
    if n == 0 or a.shape[1:] != b.shape[1:]:
        raise ValueError(f"embeddings of shape {b.shape} vs reference {a.shape}")
    a, b = a[:n], b[:n]
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {"cosine_min": float(cos.min()), "max_abs_diff": float(np.abs(a - b).max()),
            "images": n}


def annotate(runs: list[dict[str, Any]], precision_of: Callable[[str], str]) -> None:
    """Add to each ok run with embeddings its agreement with its scenario's reference run."""
    by_key = {(r["scenario"], r["backend"]): r for r in runs
              if r.get("status") == "ok" and "embeddings" in r.get("parity", {})}
    for (scenario, backend), run in by_key.items():
        ref_name = next((b for b in REFERENCES if (scenario, b) in by_key), None)
        if ref_name is None:
            run["parity"].update(reference=None, note="no fp32 TensorFlow run to compare with")
            continue
        if run["model"].get("weights") != by_key[(scenario, ref_name)]["model"].get("weights"):
            run["parity"].update(reference=ref_name, note="different weights: not comparable")
            continue
        threshold = MIN_COSINE[precision_of(backend)]
        figures = compare(by_key[(scenario, ref_name)]["parity"]["embeddings"],
                          run["parity"]["embeddings"])
        run["parity"].update(reference=ref_name, min_cosine_required=threshold, **figures,
                             agrees=figures["cosine_min"] >= threshold)
