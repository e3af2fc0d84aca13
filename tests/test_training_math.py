"""The training scenario's update keeps the global batch's math when split into micro-batches."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tensorflow import keras

from bench.scenarios.full_training import FullTrainingSpec
from bench.training import make_trainer


def _model(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(5, activation="relu", name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, name="out")(hidden))


def _train(batch_size: int, micro_batch: int, x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    model = _model(seed=1)
    spec = FullTrainingSpec(batch_size=batch_size, micro_batch=micro_batch, learning_rate=0.01)
    micro_step, update, *_ = make_trainer(model, spec)
    for step in range(2):  # two updates, so RMSProp's state is exercised too
        chunk = slice(step * batch_size, (step + 1) * batch_size)
        xs, ys = x[chunk], y[chunk]
        for i in range(0, batch_size, micro_batch):
            micro_step(tf.constant(xs[i:i + micro_batch]), tf.constant(ys[i:i + micro_batch]))
        update()
    return [v.numpy() for v in model.trainable_variables]


def test_micro_batches_give_the_same_update_as_the_global_batch() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 6)).astype("float32")
    y = rng.integers(0, 3, size=16).astype("int32")
    whole = _train(8, 8, x, y)
    split = _train(8, 2, x, y)
    untrained = [v.numpy() for v in _model(seed=1).trainable_variables]
    for w, s, u in zip(whole, split, untrained, strict=True):
        np.testing.assert_allclose(s, w, rtol=1e-4, atol=1e-6)
        assert not np.allclose(w, u), "the update changed the weights"


def test_projection_check_extrapolates_the_first_window_and_reports_its_error() -> None:
    from bench import record

    params = {"epochs": 1, "steps_per_epoch": 10, "batch_size": 16, "micro_batch": 16,
              "warmup_steps": 1, "window_steps": 3, "measure": "full"}

    def run(samples: list[float]) -> dict:
        return {"run_id": "full_training/x", "backend": "x", "scenario": "full_training",
                "status": "ok", "params": params, "measured": {"total_s": 50.0},
                "series": {"micro_step": {"work": 16, "first": 30.0, "warmup": [5.0],
                                          "samples": samples},
                           "update": {"work": 16, "samples": [0.1] * len(samples)}}}

    slowed = [1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0]  # slowed down after the window
    check = record.figures(run(slowed))["projection error"]
    projected = 30.0 + 9 * 1.0 + 9 * 0.1  # first + 9 micro x window mean + 9 updates
    assert check.value == pytest.approx(projected / 50.0 - 1)
    assert "outside the 95% interval" in check.note
    assert "projection error" not in record.figures(run(slowed[:3])), "no longer than its window"


def test_batchnorm_recalibration_sets_the_moving_statistics_and_leaves_the_weights() -> None:
    from bench.training import recalibrate_batchnorm

    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    dense = keras.layers.Dense(4, name="dense")
    norm = keras.layers.BatchNormalization(momentum=0.995, name="bn")
    model = keras.Model(inputs, norm(dense(inputs)))
    rng = np.random.default_rng(0)
    batches = [(tf.constant(rng.normal(5.0, 2.0, size=(64, 4)).astype("float32")), None)
               for _ in range(60)]
    kernel = dense.kernel.numpy().copy()
    recalibrate_batchnorm(model, iter(batches), count=60)
    features = dense(tf.concat([x for x, _ in batches], axis=0)).numpy()
    np.testing.assert_allclose(norm.moving_mean.numpy(), features.mean(axis=0), rtol=0.05,
                               atol=0.05)
    np.testing.assert_allclose(norm.moving_variance.numpy(), features.var(axis=0), rtol=0.1)
    np.testing.assert_array_equal(dense.kernel.numpy(), kernel)
    assert norm.momentum == 0.995, "the layer's own momentum is restored"


def test_center_loss_moves_the_class_centres_as_facenet_and_adds_to_the_gradient() -> None:
    def model() -> keras.Model:
        keras.utils.set_random_seed(1)
        inputs = keras.Input((6,))
        prelogits = keras.layers.Dense(4, name="Bottleneck_BatchNorm")(inputs)
        return keras.Model(inputs, keras.layers.Dense(3, name="Logits")(prelogits))

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 6)).astype("float32")
    y = np.array([0, 2, 2, 1], "int32")
    with_centers = model()
    spec = FullTrainingSpec(batch_size=4, micro_batch=4, center_loss_factor=0.5,
                            center_loss_alfa=0.9, learning_rate=0.01)
    micro_step, update, centers, *_ = make_trainer(with_centers, spec)
    features = with_centers.get_layer("Bottleneck_BatchNorm")(x).numpy()
    micro_step(tf.constant(x), tf.constant(y))
    # from zero, each label's centre moves by (1 - alfa) x the sum of its features
    expected = np.stack([0.1 * features[y == label].sum(axis=0) for label in range(3)])
    np.testing.assert_allclose(centers.numpy(), expected, rtol=1e-5, atol=1e-6)
    update()
    plain = model()
    micro_plain, update_plain, none, *_ = make_trainer(plain, FullTrainingSpec(
        batch_size=4, micro_batch=4, learning_rate=0.01))
    micro_plain(tf.constant(x), tf.constant(y))
    update_plain()
    assert none is None
    kernel = with_centers.get_layer("Bottleneck_BatchNorm").kernel.numpy()
    assert not np.allclose(kernel, plain.get_layer("Bottleneck_BatchNorm").kernel.numpy())


def test_a_diverged_training_records_from_which_micro_step_not_a_value_json_cannot_hold(
        ) -> None:
    from bench.scenarios.full_training.run import _loss

    assert _loss([2.0, 1.5]) == {"first": 2.0, "last": 1.5}
    diverged = _loss([2.0, 1.5, float("nan"), float("nan")])
    assert diverged == {"first": 2.0, "last": None,
                        "diverged": "the loss was nan from micro-step 3 on (lower learning_rate)"}
    assert _loss([float("inf")])["first"] is None
