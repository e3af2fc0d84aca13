"""FaceNet's Inception-ResNet-v1, as in davidsandberg/facenet (`src/models/inception_resnet_v1.py`).

The benchmark must time the network the paper timed, so this follows Sandberg's TF1/slim graph
layer for layer: the same stem, block counts, residual scales, batch-norm settings (decay 0.995,
epsilon 0.001, beta only), truncated-normal(0.1) weight init and a Bottleneck dense + BatchNorm.

Layer names map mechanically onto the TF1 checkpoint scopes, so Sandberg's pretrained weights
(e.g. 20180402-114759) can be imported by name. Keras 3 forbids "/" in layer names, so a scope
path is written with "_" between its components and `checkpoint_scope` parses it back::

    Conv2d_1a_3x3                       InceptionResnetV1/Conv2d_1a_3x3        (weights)
    Conv2d_1a_3x3_BatchNorm             InceptionResnetV1/Conv2d_1a_3x3/BatchNorm
    Conv2d_1a_3x3_Relu                  InceptionResnetV1/Conv2d_1a_3x3/Relu   (no weights)
    block35_2_Branch_1_Conv2d_0b_3x3    InceptionResnetV1/Repeat/block35_2/Branch_1/Conv2d_0b_3x3
    block17_4_Conv2d_1x1                InceptionResnetV1/Repeat_1/block17_4/Conv2d_1x1 (the "up"
                                        conv: weights and biases)
    block8_1_concat / _add / _Relu      .../Repeat_2/block8_1/{concat,add,Relu} (no weights)
    Block8_Branch_0_Conv2d_1x1          InceptionResnetV1/Block8/Branch_0/Conv2d_1x1 (final block)
    Mixed_6a_Branch_2_MaxPool_1a_3x3    InceptionResnetV1/Mixed_6a/Branch_2/MaxPool_1a_3x3
    Mixed_7a_concat                     InceptionResnetV1/Mixed_7a/concat
    Logits_AvgPool_1a_8x8, _Dropout     InceptionResnetV1/Logits/{AvgPool_1a_8x8,Dropout}
    Bottleneck, Bottleneck_BatchNorm    InceptionResnetV1/Bottleneck[/BatchNorm]
    input, embeddings, Logits           top-level names in facenet's graph (the classifier head
                                        "Logits" of train_softmax.py sits outside the network)

Variables under a scope: a conv or dense has `weights` (= Keras `kernel`), an "up" conv also
`biases`; a BatchNorm has `beta`, `moving_mean`, `moving_variance` (no gamma).

Parameter count: use `model.count_params()`, which counts every weight, trainable or not (the
BatchNorm moving statistics included) — the figure facenet's ~23.5 M refers to.

The file runs unchanged on Keras 3 on each of its backends (TensorFlow 2.21, PyTorch, JAX) and on
Keras 2.15 (TF 2.15's tf.keras, for ITEX): it imports standalone `keras` and uses only
`keras.layers`, `keras.Model` and `keras.utils.register_keras_serializable`; the one numeric op
of its own, the L2 normalisation, is `keras.ops` on Keras 3 and `tf.math` on Keras 2.15, which
has no `keras.ops` (`_l2_normalize`, the only place the two differ).
No layer hard-codes float32 compute, so mixed_bfloat16 works; the prelogits, embeddings and logits
layers are float32 so that losses and distances stay stable.
"""

from __future__ import annotations

import itertools
import math
import re

import keras

from bench.models import VARIANTS

layers = keras.layers

SCOPE = "InceptionResnetV1"


# Residual scales from the paper / facenet.
BLOCK35_SCALE, BLOCK17_SCALE, BLOCK8_SCALE = 0.17, 0.10, 0.20

BN_MOMENTUM = 0.995  # slim's "decay": moving = moving * 0.995 + batch * 0.005
BN_EPSILON = 0.001

# Every spatially shrinking op as (kernel, stride), all VALID: Conv2d_1a, Conv2d_2a, MaxPool_3a,
# Conv2d_4a, Conv2d_4b, Mixed_6a, Mixed_7a. SAME and 1x1 ops keep the size.
_VALID_CHAIN = ((3, 2), (3, 1), (3, 2), (3, 1), (3, 2), (3, 2), (3, 2))


def final_feature_size(image_size: int) -> int:
    """Side of the last feature map (3 at 160 px); 0 when some VALID op has nothing to cover."""
    size = image_size
    for kernel, stride in _VALID_CHAIN:
        if size < kernel:
            return 0
        size = (size - kernel) // stride + 1
    return size


# 75 px: the smallest input that leaves Mixed_7a a 1 x 1 map (75→37→35→17→15→7→3→1).
MIN_IMAGE_SIZE = next(n for n in itertools.count(1) if final_feature_size(n) >= 1)

# Branches of each residual block: (scope, filters, kernel) per conv, in facenet's order.
_BLOCK_BRANCHES: dict[str, tuple[tuple[tuple[str, int, tuple[int, int]], ...], ...]] = {
    "block35": (
        (("Conv2d_1x1", 32, (1, 1)),),
        (("Conv2d_0a_1x1", 32, (1, 1)), ("Conv2d_0b_3x3", 32, (3, 3))),
        (
            ("Conv2d_0a_1x1", 32, (1, 1)),
            ("Conv2d_0b_3x3", 32, (3, 3)),
            ("Conv2d_0c_3x3", 32, (3, 3)),
        ),
    ),
    "block17": (
        (("Conv2d_1x1", 128, (1, 1)),),
        (
            ("Conv2d_0a_1x1", 128, (1, 1)),
            ("Conv2d_0b_1x7", 128, (1, 7)),
            ("Conv2d_0c_7x1", 128, (7, 1)),
        ),
    ),
    "block8": (
        (("Conv2d_1x1", 192, (1, 1)),),
        (
            ("Conv2d_0a_1x1", 192, (1, 1)),
            ("Conv2d_0b_1x3", 192, (1, 3)),
            ("Conv2d_0c_3x1", 192, (3, 1)),
        ),
    ),
}


@keras.utils.register_keras_serializable(package="tlbench")
class ResidualScale(layers.Layer):
    """`inputs[0] + scale * inputs[1]`: the scaled residual sum, serialisable without a lambda."""

    def __init__(self, scale: float, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)

    def call(self, inputs):
        shortcut, residual = inputs
        return shortcut + residual * self.scale

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


def _l2_normalize(x, epsilon: float):
    """x / sqrt(max(sum(x²), epsilon)) along the last axis: tf.math.l2_normalize's formula."""
    if not hasattr(keras, "ops"):  # Keras 2.15, the ITEX environment's: TensorFlow's own op
        import tensorflow as tf

        return tf.math.l2_normalize(x, axis=-1, epsilon=epsilon)
    ops = keras.ops
    return x * ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), epsilon))


@keras.utils.register_keras_serializable(package="tlbench")
class L2Normalize(layers.Layer):
    """Unit-L2 rows, as facenet's `tf.nn.l2_normalize(prelogits, 1, 1e-10, name="embeddings")`."""

    def __init__(self, epsilon: float = 1e-10, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, inputs):
        return _l2_normalize(inputs, self.epsilon)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


def _weights_init() -> keras.initializers.Initializer:
    # A fresh instance per layer: Keras 2 hands out identical values from a reused unseeded one.
    return keras.initializers.TruncatedNormal(stddev=0.1)


def conv2d_bn(x, filters: int, kernel_size, name: str, strides: int = 1, padding: str = "same"):
    """slim.conv2d under facenet's arg_scope: conv without bias, BatchNorm (beta only), ReLU."""
    x = layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=False,
        kernel_initializer=_weights_init(),
        name=name,
    )(x)
    x = layers.BatchNormalization(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON, center=True, scale=False, name=f"{name}_BatchNorm"
    )(x)
    return layers.Activation("relu", name=f"{name}_Relu")(x)


def inception_resnet_block(x, block_type: str, scale: float, name: str, activation: bool = True):
    """One residual block: branches, concat, 1x1 "up" conv (bias, no BN), scaled add, ReLU.

    `block_type` is "block35", "block17" or "block8"; `name` is the layer-name prefix (the TF1
    scope), e.g. "block17_3" or "Block8" for the final block, which has no ReLU.
    """
    if block_type not in _BLOCK_BRANCHES:
        raise ValueError(
            f"unknown block type {block_type!r}; expected one of {sorted(_BLOCK_BRANCHES)}"
        )
    branches = []
    for index, convs in enumerate(_BLOCK_BRANCHES[block_type]):
        branch = x
        for scope, filters, kernel_size in convs:
            branch = conv2d_bn(branch, filters, kernel_size, f"{name}_Branch_{index}_{scope}")
        branches.append(branch)
    mixed = layers.Concatenate(name=f"{name}_concat")(branches)
    up = layers.Conv2D(
        x.shape[-1],
        1,
        use_bias=True,
        kernel_initializer=_weights_init(),
        name=f"{name}_Conv2d_1x1",
    )(mixed)
    x = ResidualScale(scale, name=f"{name}_add")([x, up])
    if activation:
        x = layers.Activation("relu", name=f"{name}_Relu")(x)
    return x


def inception_resnet_v1(
    image_size: int = 160,
    embedding_size: int = 512,
    variant: str = "full",
    dropout_rate: float = 0.2,
) -> keras.Model:
    """Build the network up to the Bottleneck BatchNorm ("prelogits" in facenet).

    Input: (image_size, image_size, 3) float32, already standardised ((x - 127.5) / 128).
    Output: (embedding_size,) float32, not normalised; see `embedding_model` and
    `classifier_model` for the two heads facenet puts on it. `dropout_rate` is 1 - keep_prob.
    Shape comments below are at the nominal 160 px.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {sorted(VARIANTS)}")
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(
            f"image_size {image_size} is too small: the VALID convolutions and poolings need at "
            f"least {MIN_IMAGE_SIZE} px (facenet uses 160)"
        )
    if embedding_size < 1:
        raise ValueError(f"embedding_size must be at least 1, got {embedding_size}")
    if not 0.0 <= dropout_rate < 1.0:
        raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate}")
    n_block35, n_block17, n_block8 = VARIANTS[variant]

    inputs = keras.Input(shape=(image_size, image_size, 3), name="input")

    # Stem: 79 x 79 x 32 → 77 x 77 x 32 → 77 x 77 x 64
    x = conv2d_bn(inputs, 32, 3, "Conv2d_1a_3x3", strides=2, padding="valid")
    x = conv2d_bn(x, 32, 3, "Conv2d_2a_3x3", padding="valid")
    x = conv2d_bn(x, 64, 3, "Conv2d_2b_3x3")
    # 38 x 38 x 64 → 38 x 38 x 80 → 36 x 36 x 192 → 17 x 17 x 256
    x = layers.MaxPooling2D(3, strides=2, padding="valid", name="MaxPool_3a_3x3")(x)
    x = conv2d_bn(x, 80, 1, "Conv2d_3b_1x1", padding="valid")
    x = conv2d_bn(x, 192, 3, "Conv2d_4a_3x3", padding="valid")
    x = conv2d_bn(x, 256, 3, "Conv2d_4b_3x3", strides=2, padding="valid")

    # 5 x Inception-ResNet-A: 17 x 17 x 256
    for i in range(1, n_block35 + 1):
        x = inception_resnet_block(x, "block35", BLOCK35_SCALE, f"block35_{i}")

    # Reduction-A (Mixed_6a): 8 x 8 x 896 (384 + 256 + 256)
    branch_0 = conv2d_bn(x, 384, 3, "Mixed_6a_Branch_0_Conv2d_1a_3x3", strides=2, padding="valid")
    branch_1 = conv2d_bn(x, 192, 1, "Mixed_6a_Branch_1_Conv2d_0a_1x1")
    branch_1 = conv2d_bn(branch_1, 192, 3, "Mixed_6a_Branch_1_Conv2d_0b_3x3")
    branch_1 = conv2d_bn(
        branch_1, 256, 3, "Mixed_6a_Branch_1_Conv2d_1a_3x3", strides=2, padding="valid"
    )
    branch_2 = layers.MaxPooling2D(
        3, strides=2, padding="valid", name="Mixed_6a_Branch_2_MaxPool_1a_3x3"
    )(x)
    x = layers.Concatenate(name="Mixed_6a_concat")([branch_0, branch_1, branch_2])

    # 10 x Inception-ResNet-B: 8 x 8 x 896
    for i in range(1, n_block17 + 1):
        x = inception_resnet_block(x, "block17", BLOCK17_SCALE, f"block17_{i}")

    # Reduction-B (Mixed_7a): 3 x 3 x 1792 (384 + 256 + 256 + 896)
    branch_0 = conv2d_bn(x, 256, 1, "Mixed_7a_Branch_0_Conv2d_0a_1x1")
    branch_0 = conv2d_bn(
        branch_0, 384, 3, "Mixed_7a_Branch_0_Conv2d_1a_3x3", strides=2, padding="valid"
    )
    branch_1 = conv2d_bn(x, 256, 1, "Mixed_7a_Branch_1_Conv2d_0a_1x1")
    branch_1 = conv2d_bn(
        branch_1, 256, 3, "Mixed_7a_Branch_1_Conv2d_1a_3x3", strides=2, padding="valid"
    )
    branch_2 = conv2d_bn(x, 256, 1, "Mixed_7a_Branch_2_Conv2d_0a_1x1")
    branch_2 = conv2d_bn(branch_2, 256, 3, "Mixed_7a_Branch_2_Conv2d_0b_3x3")
    branch_2 = conv2d_bn(
        branch_2, 256, 3, "Mixed_7a_Branch_2_Conv2d_1a_3x3", strides=2, padding="valid"
    )
    branch_3 = layers.MaxPooling2D(
        3, strides=2, padding="valid", name="Mixed_7a_Branch_3_MaxPool_1a_3x3"
    )(x)
    x = layers.Concatenate(name="Mixed_7a_concat")([branch_0, branch_1, branch_2, branch_3])

    # 5 x Inception-ResNet-C, then one unscaled Block8 without ReLU: 3 x 3 x 1792
    for i in range(1, n_block8 + 1):
        x = inception_resnet_block(x, "block8", BLOCK8_SCALE, f"block8_{i}")
    x = inception_resnet_block(x, "block8", 1.0, "Block8", activation=False)

    # Head: global average pool, dropout → 1792; Bottleneck + BatchNorm → embedding_size
    x = layers.GlobalAveragePooling2D(name="Logits_AvgPool_1a_8x8")(x)
    x = layers.Dropout(dropout_rate, name="Logits_Dropout")(x)
    x = layers.Dense(
        embedding_size, use_bias=False, kernel_initializer=_weights_init(), name="Bottleneck"
    )(x)
    prelogits = layers.BatchNormalization(
        momentum=BN_MOMENTUM,
        epsilon=BN_EPSILON,
        center=True,
        scale=False,
        dtype="float32",
        name="Bottleneck_BatchNorm",
    )(x)
    return keras.Model(inputs, prelogits, name=SCOPE)


def embedding_model(base: keras.Model) -> keras.Model:
    """`base` → unit-L2 embedding (layer "embeddings"), sharing the base's layers and weights."""
    embeddings = L2Normalize(dtype="float32", name="embeddings")(base.output)
    return keras.Model(base.input, embeddings, name=f"{base.name}_embeddings")


def classifier_model(base: keras.Model, num_classes: int) -> keras.Model:
    """`base` → softmax logits over identities (layer "Logits"), as facenet's train_softmax.py."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    logits = layers.Dense(num_classes, dtype="float32", name="Logits")(base.output)
    return keras.Model(base.input, logits, name=f"{base.name}_classifier")


def forward_flops(model: keras.Model) -> int:
    """FLOPs of one image's forward pass: 2 x the multiply-adds of every Conv2D and Dense layer.

    Each such layer costs 2 x (output positions) x (kernel size), read from its output shape
    (channels-last, batch excluded) and kernel; nested models are walked. Not counted: bias adds,
    BatchNorm, activations, pooling, concatenation, residual adds, dropout and L2 normalisation
    (together well under 1% of the total here). Needs static spatial shapes.
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += forward_flops(layer)
        elif isinstance(layer, layers.Conv2D | layers.Dense):
            positions = layer.output.shape[1:-1]
            if any(dim is None for dim in positions):
                raise ValueError(f"layer {layer.name!r} has a dynamic output shape {positions}")
            total += 2 * math.prod(positions) * math.prod(layer.kernel.shape)
    return int(total)


_TOP_LEVEL_NAMES = frozenset({"input", "embeddings", "Logits"})
_REPEAT_SCOPES = {"block35": "Repeat", "block17": "Repeat_1", "block8": "Repeat_2"}
_SCOPE_TOKEN = re.compile(
    r"(?P<repeated>block(?:35|17|8))_\d+"
    r"|Block8|Mixed_[67]a|Branch_\d|Bottleneck|Logits|BatchNorm|Relu|concat|add|Dropout"
    r"|Conv2d_(?:\d[a-z]_)?\d+x\d+"
    r"|(?:MaxPool|AvgPool)_\d[a-z]_\d+x\d+"
)


def checkpoint_scope(layer_name: str) -> str:
    """TF1 variable scope of a layer, e.g. "block35_1_Branch_1_Conv2d_0b_3x3" →
    "InceptionResnetV1/Repeat/block35_1/Branch_1/Conv2d_0b_3x3". Raises ValueError on a name
    outside the scheme described in the module docstring."""
    if layer_name in _TOP_LEVEL_NAMES:
        return layer_name
    parts: list[str] = []
    position = 0
    while True:
        match = _SCOPE_TOKEN.match(layer_name, position)
        if match is None:
            raise ValueError(
                f"layer name {layer_name!r} does not follow the facenet scope scheme "
                f"(unrecognised component at {layer_name[position:]!r})"
            )
        if match["repeated"]:
            parts.append(_REPEAT_SCOPES[match["repeated"]])
        parts.append(match.group())
        position = match.end()
        if position == len(layer_name):
            return "/".join([SCOPE, *parts])
        if layer_name[position] != "_":
            raise ValueError(
                f"layer name {layer_name!r} does not follow the facenet scope scheme "
                f"(expected '_' after {match.group()!r})"
            )
        position += 1
