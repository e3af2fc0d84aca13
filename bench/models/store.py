"""The weights store: where a model configuration's weights are cached, which file a run
starts from, and the seeded random initialisation every backend shares.

Parent and worker alike import this; nothing here imports TensorFlow at module level.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.data import synthetic
from bench.models import checkpoint, weights


def cache_dir() -> Path:
    """~/.cache/tlbench/weights (or under $TLBENCH_CACHE): every cached weights file and IR."""
    return synthetic.default_cache_dir() / "weights"


def weights_path(model: dict[str, Any]) -> Path:
    """Where the pretrained weights of one model configuration are cached."""
    name = (f"facenet-{model['variant']}-{model['image_size']}px-{model['embedding_size']}d-"
            f"synthetic-source.npz")
    return cache_dir() / name


def resolve_weights(model: dict[str, Any], seed: int) -> tuple[str, str]:
    """The weights file a run starts from, and where the weights come from.

    In order: the suite's (or --weights) file; the cached `tlbench pretrain` weights of this
    configuration; else a seeded random initialisation, written once to the cache so that every
    backend — in whatever process or TensorFlow version — runs the very same weights.
    """
    if model.get("weights"):
        given = model["weights"]
        if checkpoint.is_tf1_checkpoint(given):  # Sandberg's: converted once, beside it
            prefix = checkpoint.checkpoint_prefix(given)
            npz = Path(prefix + ".npz")
            if not npz.is_file():
                checkpoint.import_checkpoint(prefix, npz, image_size=model["image_size"],
                                             embedding_size=model["embedding_size"],
                                             variant=model["variant"])
            return str(npz), f"given: TF1 checkpoint {prefix}"
        return given, "given"
    pretrained = weights_path(model)
    if pretrained.is_file():
        return str(pretrained), "tlbench pretrain (synthetic source identities)"
    return random_init(model, seed), "random"


def random_init(model: dict[str, Any], seed: int) -> str:
    """A seeded random initialisation of this configuration, written to the cache once."""
    path = weights_path(model).with_name(
        f"facenet-{model['variant']}-{model['image_size']}px-{model['embedding_size']}d-"
        f"random-seed{seed}.npz")
    if not path.is_file():
        weights.save(build_base({**model, "weights": ""}, seed=seed), path)
    return str(path)


def build_base(model: dict[str, Any], seed: int = 0):
    """FaceNet's base network, seeded; with `weights`, loaded and checked variable by variable."""
    import keras

    from bench.models import facenet  # Keras: the runtime, in the worker only

    keras.utils.set_random_seed(seed)
    base = facenet.inception_resnet_v1(image_size=model["image_size"],
                                       embedding_size=model["embedding_size"],
                                       variant=model["variant"])
    if model.get("weights"):
        path = Path(model["weights"]).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"weights file {path} does not exist; pass a .npz written "
                                    f"by tlbench (tlbench pretrain writes one)")
        weights.load(base, path)
    return base


