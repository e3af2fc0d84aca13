"""FaceNet Inception-ResNet-v1: shapes, size, cost, checkpoint names and safe serialisation.

The full-depth model is built once per module (a few seconds); everything else uses the "small"
variant at 96 px.
"""

import numpy as np
import pytest
from tensorflow import keras

from bench.models import facenet
from bench.models.facenet import (
    MIN_IMAGE_SIZE,
    VARIANTS,
    ResidualScale,
    checkpoint_scope,
    classifier_model,
    embedding_model,
    forward_flops,
    inception_resnet_v1,
)

NUM_CLASSES = 7


def _images(size: int, batch: int = 2) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((batch, size, size, 3), dtype=np.float32)


@pytest.fixture(scope="module")
def full_base() -> keras.Model:
    return inception_resnet_v1(image_size=160, embedding_size=512, variant="full")


@pytest.fixture(scope="module")
def small_base() -> keras.Model:
    return inception_resnet_v1(image_size=96, embedding_size=128, variant="small")


@pytest.mark.slow
def test_full_model_at_160px_gives_prelogits_embeddings_and_logits_of_the_right_shape(full_base):
    images = _images(160)
    assert full_base.name == "InceptionResnetV1"
    assert full_base.input.shape[1:] == (160, 160, 3)
    assert full_base(images, training=False).shape == (2, 512)
    assert embedding_model(full_base)(images, training=False).shape == (2, 512)
    assert classifier_model(full_base, NUM_CLASSES)(images, training=False).shape == (
        2,
        NUM_CLASSES,
    )


def test_small_variant_at_96px_gives_outputs_of_the_right_shape(small_base):
    images = _images(96)
    assert small_base(images, training=False).shape == (2, 128)
    assert embedding_model(small_base)(images, training=False).shape == (2, 128)
    assert classifier_model(small_base, NUM_CLASSES)(images, training=False).shape == (
        2,
        NUM_CLASSES,
    )
    # One block of each kind, and the final Block8, are all there.
    names = {layer.name for layer in small_base.layers}
    assert {"block35_1_add", "block17_1_add", "block8_1_add", "Block8_add"} <= names
    assert "block35_2_add" not in names


def test_only_residual_up_convs_have_bias_and_batchnorm_is_facenets(small_base):
    convs = [layer for layer in small_base.layers if isinstance(layer, keras.layers.Conv2D)]
    with_bias = {layer.name for layer in convs if layer.use_bias}
    blocks = ("block35_1", "block17_1", "block8_1", "Block8")
    assert with_bias == {f"{block}_Conv2d_1x1" for block in blocks}
    for conv in convs:
        if not conv.use_bias:
            assert small_base.get_layer(f"{conv.name}_BatchNorm")  # every other conv is normalised
    norms = [x for x in small_base.layers if isinstance(x, keras.layers.BatchNormalization)]
    settings = {(norm.momentum, norm.epsilon, norm.center, norm.scale) for norm in norms}
    assert settings == {(0.995, 0.001, True, False)}
    # The final Block8 adds its residual unscaled and has no ReLU.
    assert small_base.get_layer("Block8_add").scale == 1.0
    assert "Block8_Relu" not in {layer.name for layer in small_base.layers}


def test_embeddings_have_unit_l2_norm(small_base):
    embeddings = embedding_model(small_base)(_images(96, batch=3), training=False).numpy()
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("layer_name", "shape"),
    [
        ("Conv2d_4b_3x3_Relu", (17, 17, 256)),  # end of the stem
        ("block35_5_Relu", (17, 17, 256)),
        ("Mixed_6a_concat", (8, 8, 896)),  # Reduction-A
        ("block17_10_Relu", (8, 8, 896)),
        ("Mixed_7a_concat", (3, 3, 1792)),  # Reduction-B
        ("Block8_add", (3, 3, 1792)),  # final block, no ReLU
        ("Logits_AvgPool_1a_8x8", (1792,)),
    ],
)
def test_sections_have_facenet_shapes_at_160px(full_base, layer_name, shape):
    assert tuple(full_base.get_layer(layer_name).output.shape[1:]) == shape


@pytest.mark.slow
def test_full_512d_model_has_exact_parameter_count(full_base):
    # ≈ 23.5 M, as DESIGN.md states; 29,600 of them are BatchNorm moving statistics.
    assert full_base.count_params() == 23_497_424
    non_trainable = sum(int(np.prod(w.shape)) for w in full_base.non_trainable_weights)
    assert non_trainable == 29_600


@pytest.mark.slow
def test_forward_flops_at_160px_are_about_2_84_gflop(full_base):
    # DESIGN.md: ~1.42 G multiply-adds = ~2.84 GFLOP per image; we count 2.835 G.
    flops = forward_flops(full_base)
    assert abs(flops - 2.84e9) / 2.84e9 < 0.01
    # The heads add only their dense layer: 512 x 7 multiply-adds.
    assert forward_flops(classifier_model(full_base, NUM_CLASSES)) == flops + 2 * 512 * NUM_CLASSES


@pytest.mark.slow
def test_forward_flops_counts_one_conv_exactly(full_base):
    # Conv2d_1a_3x3 at 160 px: 79 x 79 outputs x 32 filters x (3 x 3 x 3) MACs, x 2.
    stem = keras.Model(full_base.input, full_base.get_layer("Conv2d_1a_3x3_Relu").output)
    assert forward_flops(stem) == 2 * 79 * 79 * 32 * 3 * 3 * 3 == 10_784_448


def test_forward_flops_counts_dense_and_walks_nested_models():
    inputs = keras.Input((10,))
    inner = keras.Model(inputs, keras.layers.Dense(4)(inputs))
    outer_inputs = keras.Input((10,))
    outer = keras.Model(outer_inputs, keras.layers.Dense(3)(inner(outer_inputs)))
    assert forward_flops(outer) == 2 * (10 * 4 + 4 * 3)


@pytest.mark.parametrize(
    ("layer_name", "scope"),
    [
        ("Conv2d_1a_3x3", "InceptionResnetV1/Conv2d_1a_3x3"),
        ("Conv2d_1a_3x3_BatchNorm", "InceptionResnetV1/Conv2d_1a_3x3/BatchNorm"),
        (
            "block35_1_Branch_1_Conv2d_0b_3x3",
            "InceptionResnetV1/Repeat/block35_1/Branch_1/Conv2d_0b_3x3",
        ),
        (
            "block17_10_Branch_1_Conv2d_0c_7x1_BatchNorm",
            "InceptionResnetV1/Repeat_1/block17_10/Branch_1/Conv2d_0c_7x1/BatchNorm",
        ),
        ("block8_5_Conv2d_1x1", "InceptionResnetV1/Repeat_2/block8_5/Conv2d_1x1"),
        ("Block8_Conv2d_1x1", "InceptionResnetV1/Block8/Conv2d_1x1"),
        ("Block8_Branch_0_Conv2d_1x1", "InceptionResnetV1/Block8/Branch_0/Conv2d_1x1"),
        ("Mixed_6a_Branch_0_Conv2d_1a_3x3", "InceptionResnetV1/Mixed_6a/Branch_0/Conv2d_1a_3x3"),
        (
            "Mixed_7a_Branch_3_MaxPool_1a_3x3",
            "InceptionResnetV1/Mixed_7a/Branch_3/MaxPool_1a_3x3",
        ),
        ("Logits_AvgPool_1a_8x8", "InceptionResnetV1/Logits/AvgPool_1a_8x8"),
        ("Bottleneck", "InceptionResnetV1/Bottleneck"),
        ("Bottleneck_BatchNorm", "InceptionResnetV1/Bottleneck/BatchNorm"),
        ("embeddings", "embeddings"),
        ("Logits", "Logits"),
    ],
)
def test_checkpoint_scope_maps_layer_names_to_tf1_scopes(layer_name, scope):
    assert checkpoint_scope(layer_name) == scope


@pytest.mark.parametrize("layer_name", ["conv2d", "block35_1_Branch_1_Conv2d_0b", "Mixed_6aX"])
def test_checkpoint_scope_rejects_names_outside_the_scheme(layer_name):
    with pytest.raises(ValueError, match="facenet scope scheme"):
        checkpoint_scope(layer_name)


@pytest.mark.slow
def test_layer_names_are_unique_and_weight_layers_map_under_inception_resnet_v1(full_base):
    heads = [embedding_model(full_base).output, classifier_model(full_base, NUM_CLASSES).output]
    names = [layer.name for layer in keras.Model(full_base.input, heads).layers]
    assert len(names) == len(set(names))
    scopes = {layer.name: checkpoint_scope(layer.name) for layer in full_base.layers}
    weighted = [layer.name for layer in full_base.layers if layer.weights]
    assert all(scopes[name].startswith("InceptionResnetV1/") for name in weighted)
    assert len({scopes[name] for name in weighted}) == len(weighted)


def test_unknown_variant_raises_naming_it():
    with pytest.raises(ValueError, match=r"'tiny'.*full.*small"):
        inception_resnet_v1(variant="tiny")
    assert set(VARIANTS) == {"full", "small"}


def test_image_below_minimum_size_raises_naming_the_minimum():
    # 75 → 37 → 35 → 17 → 15 → 7 → 3 → 1 through the VALID convs and poolings.
    assert MIN_IMAGE_SIZE == 75
    assert facenet.final_feature_size(75) == 1
    assert facenet.final_feature_size(74) == 0
    assert facenet.final_feature_size(160) == 3
    with pytest.raises(ValueError, match="at least 75 px"):
        inception_resnet_v1(image_size=74, variant="small")


def test_unknown_block_type_raises():
    with pytest.raises(ValueError, match="unknown block type 'block99'"):
        facenet.inception_resnet_block(keras.Input((8, 8, 16)), "block99", 0.1, "block99_1")


def test_residual_scale_round_trips_through_config():
    layer = ResidualScale(0.17, name="block35_1_add")
    clone = ResidualScale.from_config(layer.get_config())
    assert clone.scale == 0.17
    assert clone.name == "block35_1_add"
    shortcut, residual = np.ones((1, 2), np.float32), np.full((1, 2), 2.0, np.float32)
    np.testing.assert_allclose(clone([shortcut, residual]), [[1.34, 1.34]], rtol=1e-6)


def test_saved_keras_model_reloads_in_safe_mode_with_identical_outputs(small_base, tmp_path):
    model = embedding_model(small_base)
    images = _images(96)
    path = tmp_path / "facenet_small.keras"
    model.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(
        reloaded(images, training=False).numpy(), model(images, training=False).numpy()
    )


def test_mixed_bfloat16_computes_in_bf16_but_outputs_float32():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        base = inception_resnet_v1(image_size=96, embedding_size=64, variant="small")
        model = classifier_model(embedding_model(base), NUM_CLASSES)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert base.get_layer("block17_1_add").output.dtype == "bfloat16"
    assert base.output.dtype == "float32"
    assert model.get_layer("embeddings").output.dtype == "float32"
    assert model(_images(96), training=False).dtype == "float32"
