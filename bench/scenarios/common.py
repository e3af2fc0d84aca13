"""What every scenario needs: the data split and the model, built the same way for each."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.data import lfw, synthetic
from bench.models import facenet
from bench.pretrain import weights_path


@dataclass(frozen=True)
class Split:
    root: Path
    train: lfw.ImageIndex
    test: lfw.ImageIndex
    prepare_s: float  # time to generate (first use of a synthetic set) and scan the data

    def describe(self) -> dict[str, Any]:
        return {"root": str(self.root), "identities": len(self.train.names),
                "train_images": len(self.train.paths), "test_images": len(self.test.paths),
                "prepare_s": self.prepare_s}


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
    index = lfw.scan(root, min_images_per_identity=holdout + 1)
    train, test = lfw.split(index, holdout_per_identity=holdout, seed=data["seed"])
    return Split(root, train, test, time.perf_counter() - t0)


def resolve_weights(model: dict[str, Any]) -> tuple[str, str]:
    """The weights a run starts from: (path or "", where they come from)."""
    if model.get("weights"):
        return model["weights"], "given"
    cached = weights_path(model)
    if cached.is_file():
        return str(cached), "tlbench pretrain (synthetic source identities)"
    return "", "random"


def build_base(model: dict[str, Any]):
    """FaceNet's base network; with `weights`, loaded and checked, else randomly initialised."""
    base = facenet.inception_resnet_v1(image_size=model["image_size"],
                                       embedding_size=model["embedding_size"],
                                       variant=model["variant"])
    if model.get("weights"):
        path = Path(model["weights"]).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"weights file {path} does not exist; pass the path of a "
                                    f"file written by tlbench (*.weights.h5)")
        try:
            base.load_weights(str(path))
        except (ValueError, KeyError, OSError) as exc:
            raise ValueError(f"weights file {path} does not fit FaceNet {model['variant']} "
                             f"{model['embedding_size']}-d: {exc}") from exc
    return base


def build_pretrained(model: dict[str, Any]):
    """The base network with the weights `resolve_weights` picks, and the facts to record."""
    weights, source = resolve_weights(model)
    base = build_base({**model, "weights": weights})
    return base, {**model_facts(base, model), "weights": weights, "weights_source": source,
                  "pretrained": source != "random"}


def model_facts(base, model: dict[str, Any]) -> dict[str, Any]:
    return {**model, "parameters": int(base.count_params()),
            "forward_flops": facenet.forward_flops(base)}
