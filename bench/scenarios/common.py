"""What every scenario needs: the data split and the model, built the same way for each."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.backends.base import Backend, Calibration
from bench.data import lfw, synthetic
from bench.data import pairs as pairs_mod
from bench.models import facenet
from bench.models.store import build_base, resolve_weights

Progress = Callable[..., None]  # (phase, done, total): what the worker tells its parent


@dataclass(frozen=True)
class Split:
    root: Path
    train: lfw.ImageIndex
    test: lfw.ImageIndex
    prepare_s: float  # time to generate (first use of a synthetic set) and scan the data
    pairs: pairs_mod.PairSet | None = None  # <root>/pairs.txt: the LFW verification protocol

    def describe(self) -> dict[str, Any]:
        return {"root": str(self.root), "identities": len(self.train.names),
                "train_images": len(self.train.paths), "test_images": len(self.test.paths),
                "prepare_s": self.prepare_s,
                "pairs": self.pairs.summary() if self.pairs else None,
                **({"skipped_images": [{"path": p, "problem": why}
                                       for p, why in self.train.skipped]}
                   if self.train.skipped else {})}


def _pairs(root: Path, synthetic_set: bool, seed: int,
           skipped: set[str]) -> pairs_mod.PairSet | None:
    """<root>/pairs.txt (a pair naming a bad image left out is missing); the synthetic set gets
    one written (once) in LFW's format."""
    path = root / "pairs.txt"
    if path.is_file():
        return pairs_mod.read_pairs(path, root).without(skipped)
    if not synthetic_set:
        return None  # a user's directory without pairs.txt: no verification figures
    identities = len(lfw.scan(root).names)
    if identities < 4:
        return None  # too few identities for two identity-disjoint folds
    return pairs_mod.write_pairs(root, path, folds=min(pairs_mod.LFW_FOLDS, identities // 2),
                                 seed=seed)


def load_split(data: dict[str, Any]) -> Split:
    """The images of a run: synthetic (generated once, cached) or a user's LFW directory."""
    t0 = time.perf_counter()
    if data["source"] == "synthetic":
        spec = synthetic.SyntheticSpec(identities=data["identities"],
                                       min_images=data["min_images"],
                                       max_images=data["max_images"], seed=data["seed"])
        root = synthetic.ensure(spec)
    else:
        root = Path(data["path"]).expanduser()
    holdout = data["holdout_per_identity"]
    index = lfw.scan(root, min_images_per_identity=holdout + 1,
                     on_bad_image=data.get("on_bad_image", "error"))
    train, test = lfw.split(index, holdout_per_identity=holdout, seed=data["seed"])
    pairs = _pairs(root, data["source"] == "synthetic", data["seed"],
                   {path for path, _ in index.skipped})
    return Split(root, train, test, time.perf_counter() - t0, pairs)


def build_pretrained(model: dict[str, Any], seed: int):
    """The base network with the weights `resolve_weights` picks, and the facts to record."""
    path, source = resolve_weights(model, seed)
    base = build_base({**model, "weights": path}, seed=seed)
    return base, {**model_facts(base, model), "weights": path, "weights_source": source,
                  "pretrained": source not in ("random",)}


def prepare(run: dict[str, Any], progress) -> tuple[Split, Any, dict[str, Any]]:
    """The prologue of every scenario that starts from the resolved weights: data, then model."""
    progress("prepare data")
    split = load_split(run["data"])
    progress("build model")
    base, facts = build_pretrained(run["model"], seed=run["data"]["seed"])
    return split, base, facts


def model_facts(base, model: dict[str, Any]) -> dict[str, Any]:
    return {**model, "parameters": int(base.count_params()),
            "forward_flops": facenet.forward_flops(base)}


def held_out(index: lfw.ImageIndex, image_size: int) -> np.ndarray:
    """Every image of `index`, decoded and standardised, in order: what inference and serving
    feed the model, prepared before the clock."""
    return np.concatenate([x.numpy() for x, _ in lfw.dataset(index, image_size, 64)])


def tiled(images: np.ndarray, size: int) -> np.ndarray:
    """A batch of `size` from `images`, a small data set repeated up to it."""
    return np.concatenate([images] * -(-size // len(images)))[:size]


def calibration(run: dict[str, Any], backend: Backend, train: lfw.ImageIndex) -> Calibration:
    """The calibration set of a quantising backend: training images only (never held-out), the
    suite's number of them (its settings') or all the split has, in the order the data seed
    draws them."""
    spec = backend.config(**run["backend_params"])
    n = min(spec.calibration_images, len(train.paths))
    chosen = np.random.default_rng(run["data"]["seed"]).permutation(len(train.paths))[:n]
    subset = lfw.ImageIndex(train.root, tuple(train.paths[i] for i in chosen),
                            tuple(train.labels[i] for i in chosen), train.names)
    images = np.concatenate([x.numpy() for x, _ in
                             lfw.dataset(subset, run["model"]["image_size"], 64, cache=False)])
    return Calibration(images, spec.calibration_images, spec.preset, spec.fast_bias_correction)


def load_model(run: dict[str, Any], backend: Backend, base, weights: str | Path,
               split: Split) -> Any:
    """The embedding model of `base` in the backend's form (calibrated, for a quantising one)."""
    return backend.load(facenet.embedding_model(base), Path(weights),
                        calibration(run, backend, split.train) if backend.calibrates else None)
