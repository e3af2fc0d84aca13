"""The harness's weights files: exact round trip, clear errors, pretraining and resolution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.models import facenet, weights
from bench.models.store import build_base, resolve_weights, weights_path
from bench.models.weights import WeightsError
from bench.pretrain import pretrain
from bench.scenarios.common import build_pretrained
from bench.training import PretrainSpec

SMALL = {"variant": "small", "image_size": 80, "embedding_size": 16, "weights": ""}


def _images(n: int = 2) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, 80, 80, 3)).astype("float32")


def test_saved_weights_load_into_a_fresh_model_exactly(tmp_path: Path) -> None:
    a = build_base(SMALL, seed=1)
    path = weights.save(a, tmp_path / "w.npz")
    b = build_base({**SMALL, "weights": str(path)}, seed=2)
    np.testing.assert_array_equal(a(_images(), training=False), b(_images(), training=False))


def test_differently_seeded_models_differ_so_the_load_test_can_fail() -> None:
    a, b = build_base(SMALL, seed=1), build_base(SMALL, seed=2)
    assert not np.allclose(a(_images(), training=False), b(_images(), training=False))


def test_a_file_of_another_embedding_size_names_the_variable(tmp_path: Path) -> None:
    path = weights.save(build_base({**SMALL, "embedding_size": 8}), tmp_path / "w.npz")
    with pytest.raises(WeightsError, match=r"variable Bottleneck/0 has shape \(1792, 8\)"):
        build_base({**SMALL, "weights": str(path)})


def test_a_file_of_another_depth_is_refused(tmp_path: Path) -> None:
    full = facenet.inception_resnet_v1(image_size=80, embedding_size=16, variant="full")
    path = weights.save(full, tmp_path / "full.npz")
    with pytest.raises(WeightsError, match=r"variable.* the model does not have, e.g. block"):
        build_base({**SMALL, "weights": str(path)})


def _npy(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


@pytest.mark.parametrize("content", [
    b"", b"garbage", b"PK\x03\x04broken zip", _npy(np.zeros(3)),
    _npy(np.array([{"pickled": 1}], dtype=object)),  # would run code if unpickled
])
def test_a_corrupt_or_foreign_file_is_named_and_never_unpickled(tmp_path: Path,
                                                                content: bytes) -> None:
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=r"bad\.npz: not a tlbench weights file"):
        build_base({**SMALL, "weights": str(path)})


def test_without_weights_every_run_gets_the_same_seeded_random_init() -> None:
    first, source = resolve_weights(SMALL, seed=7)
    again, _ = resolve_weights(SMALL, seed=7)
    assert source == "random" and first == again and Path(first).is_file()
    a, facts = build_pretrained(SMALL, seed=7)
    b, _ = build_pretrained(SMALL, seed=7)
    np.testing.assert_array_equal(a(_images(), training=False), b(_images(), training=False))
    assert facts["pretrained"] is False and facts["weights_source"] == "random"


@pytest.mark.slow
def test_pretrain_caches_weights_that_later_runs_start_from() -> None:
    model = {**SMALL, "embedding_size": 24}
    facts = pretrain(model, PretrainSpec(identities=3, epochs=1, micro_batch=4), seed=0,
                     progress=lambda *a, **k: None)
    assert facts["path"] == str(weights_path(model)) and facts["steps"] >= 1
    path, source = resolve_weights(model, seed=0)
    assert path == facts["path"] and source.startswith("tlbench pretrain")
    _, run_facts = build_pretrained(model, seed=0)
    assert run_facts["pretrained"] is True
