"""The harness's own weights format: one `.npz` array per layer weight, keyed by layer name.

Why not Keras' `.weights.h5`: Keras 3 (TF 2.21) and Keras 2.15 (TF 2.15, for Intel Extension for
TensorFlow) lay those files out differently, and every backend must run the very same weights.
Keyed by the fixed layer names, the arrays load into either, and into OpenVINO's converted model
through them. `np.load(allow_pickle=False)`: a weights file can never run code.
"""

from __future__ import annotations

import os
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


def load(model, path: Path) -> None:
    """Set `model`'s weights from `path`; every variable must be present with its shape."""
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not named arrays")
        with data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise WeightsError(f"{path}: not a tlbench weights file (.npz): {exc}") from None
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
