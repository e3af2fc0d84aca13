"""Sandberg's TF1 checkpoints onto the Keras model: the test writes a TF1-format checkpoint itself
(tf.compat.v1 variables under facenet's scope names, saved by a v1 Saver) for the small variant,
then checks every weight, the outputs and the errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow import keras

from bench import cli
from bench.models import facenet, weights
from bench.models.checkpoint import (
    CheckpointError,
    checkpoint_prefix,
    import_checkpoint,
    is_tf1_checkpoint,
    load_tf1_checkpoint,
)

SIZE, EMBEDDING = 80, 16
SLIM = {"kernel": "weights", "bias": "biases", "beta": "beta", "moving_mean": "moving_mean",
        "moving_variance": "moving_variance"}
EXTRA = {  # what a training checkpoint also holds, and the loader must ignore (and count)
    "InceptionResnetV1/Conv2d_1a_3x3/weights/RMSProp": np.zeros((3, 3, 3, 32), np.float32),
    "global_step": np.int64(275),
    "Logits/weights": np.zeros((EMBEDDING, 5), np.float32),
    "Logits/biases": np.zeros((5,), np.float32),
}


def _small() -> keras.Model:
    return facenet.inception_resnet_v1(image_size=SIZE, embedding_size=EMBEDDING, variant="small")


def _images() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(2, SIZE, SIZE, 3)).astype(np.float32)


def _short(weight) -> str:
    return weight.name.split("/")[-1].split(":")[0]


def write_tf1_checkpoint(directory: Path, variables: dict[str, np.ndarray]) -> str:
    """Save `variables` (name → value) as a TF1 checkpoint, `model-...ckpt-275` style."""
    with tf.Graph().as_default():
        var_list = {name: tf.compat.v1.Variable(value, name=name.replace("/", "_"))
                    for name, value in variables.items()}
        saver = tf.compat.v1.train.Saver(var_list=var_list)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            return saver.save(sess, str(directory / "model-20180402-114759.ckpt"),
                              global_step=275, write_meta_graph=False)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, np.ndarray]]:
    """A checkpoint with known random values for every variable of the small model."""
    rng = np.random.default_rng(1)
    values: dict[str, np.ndarray] = {}
    for layer in _small().layers:
        for weight in layer.weights:
            short = _short(weight)
            name = f"{facenet.checkpoint_scope(layer.name)}/{SLIM[short]}"
            shape = tuple(weight.shape)
            value = (rng.uniform(0.5, 1.5, shape) if short == "moving_variance"
                     else rng.normal(0, 0.1, shape))
            values[name] = value.astype(np.float32)
    prefix = write_tf1_checkpoint(tmp_path_factory.mktemp("ckpt"), {**values, **EXTRA})
    return prefix, values


def test_keras_weight_order_per_layer_type_is_the_one_the_mapping_assumes() -> None:
    orders = {(type(layer).__name__, tuple(_short(w) for w in layer.weights))
              for layer in _small().layers if layer.weights}
    assert orders == {
        ("Conv2D", ("kernel",)),  # conv2d_bn: no bias, a BatchNorm follows
        ("Conv2D", ("kernel", "bias")),  # each block's closing "up" 1x1 conv
        ("Dense", ("kernel",)),  # Bottleneck
        ("BatchNormalization", ("beta", "moving_mean", "moving_variance")),  # scale=False
    }


@pytest.fixture(scope="module")
def loaded(written) -> tuple[keras.Model, object]:
    model = _small()
    return model, load_tf1_checkpoint(model, written[0])


def test_every_keras_weight_gets_the_variable_named_by_its_scope(written, loaded) -> None:
    _, values = written
    model, report = loaded
    checked = 0
    for layer in model.layers:
        for weight, actual in zip(layer.weights, layer.get_weights(), strict=True):
            name = f"{facenet.checkpoint_scope(layer.name)}/{SLIM[_short(weight)]}"
            np.testing.assert_array_equal(actual, values[name], err_msg=name)
            checked += 1
    assert checked == len(values) == report.variables
    assert report.layers == sum(1 for layer in model.layers if layer.weights)
    assert report.ignored == {"Logits head": 2, "global_step": 1, "optimizer slots": 1}
    # a spot check of the mapping, written out
    np.testing.assert_array_equal(
        model.get_layer("block35_1_Branch_1_Conv2d_0b_3x3_BatchNorm").get_weights()[1],
        values["InceptionResnetV1/Repeat/block35_1/Branch_1/Conv2d_0b_3x3/BatchNorm/moving_mean"])


def test_outputs_equal_those_of_a_model_given_the_same_weights_directly(written, loaded) -> None:
    _, values = written
    direct = _small()
    before = direct(_images(), training=False).numpy()
    for layer in direct.layers:
        if layer.weights:
            scope = facenet.checkpoint_scope(layer.name)
            layer.set_weights([values[f"{scope}/{SLIM[_short(w)]}"] for w in layer.weights])
    expected = direct(_images(), training=False).numpy()
    np.testing.assert_array_equal(loaded[0](_images(), training=False).numpy(), expected)
    assert not np.allclose(before, expected)  # the check above can fail


def test_a_missing_variable_is_named_and_the_model_is_left_untouched(written,
                                                                       tmp_path: Path) -> None:
    _, values = written
    gone = "InceptionResnetV1/Repeat_1/block17_1/Branch_1/Conv2d_0c_7x1/BatchNorm/beta"
    prefix = write_tf1_checkpoint(tmp_path, {k: v for k, v in values.items() if k != gone})
    model = _small()
    before = model.get_weights()
    with pytest.raises(CheckpointError, match=f"no variable {gone} \\(for "
                       r"block17_1_Branch_1_Conv2d_0c_7x1_BatchNorm beta, shape \(128,\)\)"):
        load_tf1_checkpoint(model, prefix)
    for old, new in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)


def test_a_variable_of_the_wrong_shape_is_named_with_the_shape_expected(written,
                                                                       tmp_path: Path) -> None:
    _, values = written
    bad = "InceptionResnetV1/Conv2d_2b_3x3/weights"
    prefix = write_tf1_checkpoint(tmp_path, {**values, bad: np.zeros((3, 3, 32, 48), np.float32)})
    with pytest.raises(CheckpointError, match=rf"variable {bad} has shape \(3, 3, 32, 48\), the "
                       r"model's Conv2d_2b_3x3 kernel needs \(3, 3, 32, 64\)"):
        load_tf1_checkpoint(_small(), prefix)


def test_another_embedding_size_names_the_bottleneck_and_the_option(written) -> None:
    prefix, _ = written
    model = facenet.inception_resnet_v1(image_size=SIZE, embedding_size=8, variant="small")
    with pytest.raises(CheckpointError, match=r"InceptionResnetV1/Bottleneck/weights has shape "
                       r"\(1792, 16\).*--embedding-size"):
        load_tf1_checkpoint(model, prefix)


def test_the_prefix_can_be_given_as_either_file_or_the_folder(written) -> None:
    prefix, _ = written
    assert checkpoint_prefix(prefix + ".index") == prefix
    assert checkpoint_prefix(prefix + ".data-00000-of-00001") == prefix
    assert checkpoint_prefix(Path(prefix).parent) == prefix
    assert checkpoint_prefix(prefix + ".meta") == prefix
    assert is_tf1_checkpoint(prefix) and not is_tf1_checkpoint(prefix + ".npz")
    with pytest.raises(CheckpointError, match=r"frozen graph \(\.pb\) is not read"):
        checkpoint_prefix(Path(prefix).parent / "20180402-114759.pb")


def test_a_classifier_models_logits_are_left_as_they_are(written) -> None:
    prefix, values = written
    model = facenet.classifier_model(_small(), num_classes=5)  # the checkpoint's Logits: 16 x 5
    logits = model.get_layer("Logits").get_weights()
    report = load_tf1_checkpoint(model, prefix)
    for old, new in zip(logits, model.get_layer("Logits").get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)
    np.testing.assert_array_equal(model.get_layer("Bottleneck").get_weights()[0],
                                  values["InceptionResnetV1/Bottleneck/weights"])
    assert report.ignored["Logits head"] == 2


def test_a_missing_checkpoint_is_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"model\.ckpt-1: no checkpoint there"):
        load_tf1_checkpoint(_small(), tmp_path / "model.ckpt-1")


def test_import_writes_a_weights_file_the_harness_loads(written, loaded, tmp_path: Path) -> None:
    prefix, _ = written
    path, report = import_checkpoint(prefix, tmp_path / "w.npz", image_size=SIZE,
                                     embedding_size=EMBEDDING, variant="small")
    model = _small()
    weights.load(model, path)
    np.testing.assert_array_equal(model(_images(), training=False).numpy(),
                                  loaded[0](_images(), training=False).numpy())
    assert report.ignored_total == len(EXTRA)


def test_cli_imports_and_exits_2_naming_a_bad_checkpoint(written, tmp_path: Path, capsys) -> None:
    prefix, _ = written
    out = tmp_path / "imported.npz"
    args = ["--image-size", str(SIZE), "--embedding-size", str(EMBEDDING), "--variant", "small"]
    assert cli.main(["weights", "import", prefix, "--out", str(out), *args]) == 0
    assert out.is_file() and str(out) in capsys.readouterr().out
    assert cli.main(["weights", "import", str(tmp_path / "nothing.ckpt-3"), *args]) == 2
    assert "nothing.ckpt-3: no checkpoint there" in capsys.readouterr().err


def test_the_checkpoint_module_knows_the_models_scope_without_importing_it() -> None:
    from bench.models import checkpoint

    assert checkpoint.SCOPE == facenet.SCOPE


def test_a_run_given_a_checkpoint_prefix_starts_from_its_weights(written, loaded) -> None:
    from bench.scenarios.common import build_pretrained

    prefix, _ = written
    model = {"variant": "small", "image_size": SIZE, "embedding_size": EMBEDDING,
             "weights": prefix}
    base, facts = build_pretrained(model, seed=0)
    assert facts["weights"] == prefix + ".npz" and facts["pretrained"] is True
    assert facts["weights_source"] == f"given: TF1 checkpoint {prefix}"
    keras_model, _ = loaded
    np.testing.assert_allclose(base(_images(), training=False),
                               keras_model(_images(), training=False), rtol=1e-5, atol=1e-6)
