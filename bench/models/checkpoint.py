"""David Sandberg's pretrained FaceNet checkpoints (TF1, e.g. 20180402-114759) onto the Keras model.

A TF1 checkpoint is a prefix such as `model-20180402-114759.ckpt-275` naming two files,
`.index` and `.data-00000-of-00001`. TensorFlow's own reader (`tf.train.load_checkpoint`) reads
it; every weight of the Keras base model (`facenet.inception_resnet_v1`) is taken from the
variable at its layer's scope (`facenet.checkpoint_scope`) plus the slim variable name:

    Keras weight            TF1 variable           layers
    kernel                  weights                Conv2D [kernel, bias?], Dense [kernel]
    bias                    biases                 the blocks' "up" Conv2d_1x1
    beta, moving_mean,      beta, moving_mean,     BatchNormalization(scale=False)
    moving_variance         moving_variance

e.g. `block35_1_Branch_1_Conv2d_0b_3x3_BatchNorm` / `moving_mean` ←
`InceptionResnetV1/Repeat/block35_1/Branch_1/Conv2d_0b_3x3/BatchNorm/moving_mean`. Shapes agree
as they are (slim's conv weights are [h, w, in, out] like Keras kernels). Every variable is read
and checked before any weight is set, so a failed import leaves the model untouched.

A variable the model needs that is missing, or has another shape, is a `CheckpointError` naming
it and what was expected. Variables the model does not use are ignored and counted by kind:
optimizer slots (`.../RMSProp`, `.../Adam_1`, ...), moving-average shadows, `global_step`, the
classifier head `Logits/...` of facenet's train_softmax.py, and anything else (e.g. the deeper
blocks of the full network when loading into the small variant). Layers outside the
`InceptionResnetV1` scope (a classifier model's `Logits`) are left as they are.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.models.weights import WeightsError

SCOPE = "InceptionResnetV1"  # facenet.SCOPE; facenet imports TensorFlow, so it is imported late

# Keras weight name → slim variable name.
_VARIABLE = {"kernel": "weights", "bias": "biases", "beta": "beta", "gamma": "gamma",
             "moving_mean": "moving_mean", "moving_variance": "moving_variance"}
_SLOT = re.compile(r"/(RMSProp|RMSProp_\d+|Momentum|Adam|Adam_\d+|Adagrad|Adadelta|Adadelta_\d+|"
                   r"Ftrl|Ftrl_\d+)$")
_DATA_SUFFIX = re.compile(r"\.data-\d{5}-of-\d{5}$")


class CheckpointError(WeightsError):
    """A checkpoint that cannot be read or does not fit the model; the message names the
    variable and what was expected."""


@dataclass(frozen=True)
class ImportReport:
    """What `load_tf1_checkpoint` did."""

    prefix: str
    layers: int  # layers whose weights were set
    variables: int  # checkpoint variables used
    ignored: dict[str, int] = field(default_factory=dict)  # kind → count of unused variables
    ignored_examples: tuple[str, ...] = ()

    @property
    def ignored_total(self) -> int:
        return sum(self.ignored.values())

    def to_dict(self) -> dict:
        return {"checkpoint": self.prefix, "layers": self.layers, "variables": self.variables,
                "ignored": dict(self.ignored), "ignored_examples": list(self.ignored_examples)}


def checkpoint_prefix(path: str | Path) -> str:
    """The prefix of a checkpoint given as its prefix, its `.index`, `.data-*` or `.meta` file,
    or a directory holding exactly one checkpoint (Sandberg's model folders)."""
    text = str(Path(path).expanduser())
    candidate = Path(text)
    if candidate.is_dir():
        indexes = sorted(candidate.glob("*.index"))
        if len(indexes) != 1:
            found = ", ".join(p.name for p in indexes) or "none"
            raise CheckpointError(f"{text}: a directory with {len(indexes)} checkpoints "
                                  f"(.index files: {found}); pass one prefix, e.g. "
                                  f"{text}/model-20180402-114759.ckpt-275")
        return str(indexes[0].with_suffix(""))
    if text.endswith(".pb"):
        raise CheckpointError(f"{text}: a frozen graph (.pb) is not read; pass the checkpoint "
                              f"beside it (the prefix of its .index and .data files, or the "
                              f"folder)")
    for suffix in (".index", ".meta"):
        if text.endswith(suffix):
            return text[: -len(suffix)]
    return _DATA_SUFFIX.sub("", text)


def is_tf1_checkpoint(path: str | Path) -> bool:
    """True when `path` names a TF checkpoint (its prefix with an `.index` beside it, either
    file of it, or a directory with one) rather than, say, a tlbench `.npz`."""
    try:
        prefix = checkpoint_prefix(path)
    except CheckpointError:
        return False
    return Path(prefix + ".index").is_file()


def load_tf1_checkpoint(model, prefix: str | Path) -> ImportReport:
    """Set every weight of the base model's layers from the TF1 checkpoint at `prefix`."""
    import tensorflow as tf

    from bench.models import facenet

    prefix = _existing(prefix)
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as exc:
        raise CheckpointError(f"{prefix}: not a readable TensorFlow checkpoint "
                              f"({str(exc).splitlines()[0]})") from None
    shapes = {name: tuple(shape) for name, shape in reader.get_variable_to_shape_map().items()}

    planned: list[tuple[object, list[np.ndarray]]] = []
    used: set[str] = set()
    missing: list[str] = []
    for layer in _leaf_layers(model):
        if not layer.weights:
            continue
        try:
            scope = facenet.checkpoint_scope(layer.name)
        except ValueError as exc:
            raise CheckpointError(f"layer {layer.name!r} has no checkpoint scope: {exc}; "
                                  f"load into facenet.inception_resnet_v1's model") from None
        if not scope.startswith(SCOPE + "/"):
            continue  # a head outside the network, e.g. a classifier's Logits
        values = []
        for weight, current in zip(layer.weights, layer.get_weights(), strict=True):
            short = weight.name.split("/")[-1].split(":")[0]  # Keras 3 "kernel", 2 ".../kernel:0"
            if short not in _VARIABLE:
                raise CheckpointError(f"layer {layer.name} has a weight {short!r} with no slim "
                                      f"counterpart; expected one of {sorted(_VARIABLE)}")
            name = f"{scope}/{_VARIABLE[short]}"
            expected = current.shape
            if name not in shapes:
                missing.append(f"{name} (for {layer.name} {short}, shape {expected})")
                continue
            if shapes[name] != expected:
                raise CheckpointError(
                    f"{prefix}: variable {name} has shape {shapes[name]}, the model's "
                    f"{layer.name} {short} needs {expected}{_shape_hint(layer.name)}")
            values.append(np.asarray(reader.get_tensor(name), dtype=current.dtype))
            used.add(name)
        planned.append((layer, values))
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise CheckpointError(
            f"{prefix}: no variable {missing[0]}{more}; is this a facenet Inception-ResNet-v1 "
            f"checkpoint? It has {len(shapes)} variables, e.g. {_examples(shapes)}")
    for layer, values in planned:
        layer.set_weights(values)

    unused = sorted(set(shapes) - used)
    kinds = Counter(_kind(name) for name in unused)
    return ImportReport(prefix=prefix, layers=len(planned), variables=len(used),
                        ignored=dict(sorted(kinds.items())), ignored_examples=tuple(unused[:5]))


def import_checkpoint(prefix: str | Path, out: str | Path | None = None, *,
                      image_size: int = 160, embedding_size: int = 512,
                      variant: str = "full") -> tuple[Path, ImportReport]:
    """Convert a TF1 checkpoint into the harness's weights file (`bench.models.weights`).

    `out` defaults to `<prefix>.npz` beside the checkpoint. The weights do not depend on the
    image size (the network ends in a global pool); `image_size` only builds the model.
    """
    from bench.models import facenet, weights

    prefix = _existing(prefix)  # before the model is built: that takes seconds
    model = facenet.inception_resnet_v1(image_size=image_size, embedding_size=embedding_size,
                                        variant=variant)
    report = load_tf1_checkpoint(model, prefix)
    path = weights.save(model, Path(out) if out else Path(prefix + ".npz"))
    return path, report


def _existing(path: str | Path) -> str:
    prefix = checkpoint_prefix(path)
    if not Path(prefix + ".index").is_file():
        raise CheckpointError(f"{prefix}: no checkpoint there ({Path(prefix).name}.index is "
                              f"missing); pass the prefix of Sandberg's checkpoint, e.g. "
                              f".../20180402-114759/model-20180402-114759.ckpt-275")
    return prefix


def _leaf_layers(model) -> list:
    """The model's layers, with nested models (e.g. the base inside a Sequential) walked."""
    leaves = []
    for layer in model.layers:
        leaves.extend(_leaf_layers(layer) if hasattr(layer, "layers") else [layer])
    return leaves


def _kind(name: str) -> str:
    if name == "global_step" or name.endswith("/global_step"):
        return "global_step"
    if _SLOT.search(name):
        return "optimizer slots"
    if "ExponentialMovingAverage" in name:
        return "moving-average shadows"
    if name.startswith("Logits/"):
        return "Logits head"
    if name.startswith(SCOPE + "/"):
        return "network variables the model lacks"
    return "other"


def _shape_hint(layer_name: str) -> str:
    if layer_name.startswith("Bottleneck"):
        return ("; the embedding size differs: 20180402-114759 is 512-d, 20170512-110547 "
                "128-d (pass --embedding-size)")
    return "; the checkpoint is of another architecture"


def _examples(shapes: dict[str, tuple[int, ...]], count: int = 3) -> str:
    return ", ".join(sorted(shapes)[:count]) or "none"
