"""The harness's own weights format: one `.npz` array per layer weight, keyed by layer name.

Why not Keras' `.weights.h5`: Keras 3 (TF 2.21) and Keras 2.15 (TF 2.15, for Intel Extension for
TensorFlow) lay those files out differently, and every backend must run the very same weights.
Keyed by the fixed layer names, the arrays load into either, and into OpenVINO's converted model
through them. `np.load(allow_pickle=False)`: a weights file can never run code.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

import numpy as np


class WeightsError(ValueError):
    """A weights file that does not fit the model; the message names the variable."""


def _key(layer_name: str, index: int) -> str:
    return f"{layer_name}/{index}"


def save(model, path: Path) -> Path:
    """Write every layer's weights atomically (temporary file, then rename)."""
    arrays = {_key(layer.name, i): w for layer in model.layers
              for i, w in enumerate(layer.get_weights())}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


_HOW = ("tlbench's weights are a .npz of named arrays written by `tlbench pretrain` or "
        "`tlbench weights import` (from Sandberg's TF1 checkpoint)")
_KEY = re.compile(r"^[A-Za-z0-9_]+/\d+$")


def read(path: Path) -> dict[str, np.ndarray]:
    """Every array of a weights file, by key; a file that is not one is a WeightsError that says
    what it is (never numpy's advice to load it with pickling allowed)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise WeightsError(f"{path}: cannot be read ({exc.strerror})") from None
    if not zipfile.is_zipfile(path):
        what = "an empty file" if not head else f"not a .npz archive (it starts {head!r})"
        raise WeightsError(f"{path}: not a tlbench weights file: {what}; {_HOW}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except ValueError:  # an object array: pickled Python objects, which tlbench never writes
        raise WeightsError(f"{path}: not a tlbench weights file: it holds pickled objects, "
                           f"which tlbench never writes and will not load; {_HOW}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise WeightsError(f"{path}: not a tlbench weights file: a damaged .npz archive "
                           f"({type(exc).__name__}); {_HOW}") from None
    odd = [k for k in arrays if not _KEY.match(k)]
    if not arrays or odd:
        raise WeightsError(f"{path}: not a tlbench weights file: a .npz, but not of its weights: "
                           + (f"its arrays are named e.g. {odd[0]!r}, not 'Layer_name/0'" if odd
                              else "it holds no arrays") + f"; {_HOW}")
    return arrays


def inspect(path: Path, model: dict) -> dict:
    """Check a weights file against a model configuration without building the model (the
    parent, before any worker starts): its format, the architecture's depth (the repeats of
    each block) and the embedding size. Image size is not in the weights (the convolutions fit
    any size). Returns what the file is; raises WeightsError saying what was expected."""
    from bench.models import VARIANTS

    arrays = read(path)
    blocks = {}
    for kind in ("block35", "block17", "block8"):
        blocks[kind] = len({k.split("_")[1] for k in arrays if k.startswith(f"{kind}_")})
    found = {"variant": next((v for v, r in VARIANTS.items()
                              if r == tuple(blocks.values())), None),
             "repeats": blocks, "variables": len(arrays)}
    bottleneck = arrays.get("Bottleneck/0")
    if bottleneck is None or bottleneck.ndim != 2 or "Conv2d_1a_3x3/0" not in arrays:
        raise WeightsError(f"{path}: tlbench's format, but not FaceNet Inception-ResNet-v1: no "
                           f"Conv2d_1a_3x3 stem or Bottleneck layer; {_HOW}")
    found["embedding_size"] = int(bottleneck.shape[1])
    expected = (model["variant"], model["embedding_size"])
    if (found["variant"], found["embedding_size"]) != expected:
        raise WeightsError(
            f"{path}: weights of Inception-ResNet-v1 {found['variant'] or 'of unknown depth'} "
            f"(block35/17/8 repeats {tuple(blocks.values())}), {found['embedding_size']}-d "
            f"embedding; the suite's model is {expected[0]} "
            f"(block repeats {VARIANTS[expected[0]]}), {expected[1]}-d: pass weights of that "
            f"configuration, or set [model] variant / embedding_size to the file's")
    return found


def load(model, path: Path) -> None:
    """Set `model`'s weights from `path`; every variable must be present with its shape."""
    arrays = read(path)
    expected: set[str] = set()
    for layer in model.layers:
        current = layer.get_weights()
        if not current:
            continue
        new = []
        for i, w in enumerate(current):
            key = _key(layer.name, i)
            expected.add(key)
            if key not in arrays:
                raise WeightsError(f"{path}: no variable {key} (shape {w.shape}); the file is "
                                   f"for another architecture or configuration")
            if arrays[key].shape != w.shape:
                raise WeightsError(f"{path}: variable {key} has shape {arrays[key].shape}, the "
                                   f"model needs {w.shape}; check image/embedding size")
            new.append(arrays[key])
        layer.set_weights(new)
    extra = sorted(set(arrays) - expected)
    if extra:
        raise WeightsError(f"{path}: {len(extra)} variable(s) the model does not have, e.g. "
                           f"{extra[0]}; the file is for another architecture")
