"""The training loop every scenario that trains shares: micro-steps with gradient accumulation,
the update, held-out accuracy, and the BatchNorm re-estimation that `tlbench pretrain` ends with.

Imported by `full_training`, `fine_tune` and `pretrain`; it imports no scenario.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from bench.data import lfw
from bench.scenarios.full_training import FullTrainingSpec
from bench.spec import at_least, fail


@dataclass(frozen=True)
class PretrainSpec:
    """A suite's [pretrain]: with `enabled` and no [model] weights, the suite first trains the
    network on `identities` synthetic *source* identities (disjoint from the target set) for
    `epochs` passes with the full-training recipe, when this model configuration's weights are
    not cached yet (`bench.pretrain`); `tlbench pretrain` does the same on demand."""

    enabled: bool = False
    identities: int = 40
    epochs: int = 20
    micro_batch: int = 16
    learning_rate: float = 0.05

    def check(self, where: str) -> None:
        at_least(f"{where}.identities", self.identities, 2)
        at_least(f"{where}.epochs", self.epochs, 1)
        at_least(f"{where}.micro_batch", self.micro_batch, 1)
        if self.learning_rate <= 0:
            fail(f"{where}.learning_rate", f"must be > 0; got {self.learning_rate}")


def _nothing(*_args: Any) -> None:
    return None


class Trainer(NamedTuple):
    """One runtime's training steps (TensorFlow's below; PyTorch's and JAX's in keras3)."""

    micro_step: Any  # (images, labels) → softmax loss; forward, backward, accumulate
    update: Any  # () → None; apply the averaged gradients, reset the sums
    centers: Any  # the center loss's class centres, or None without it
    logits: Callable[[np.ndarray], np.ndarray]  # the model in inference mode, as trained so far
    sync: Callable[[], None] = _nothing  # write the trained state into the Keras model
    prepare: Callable[..., None] = _nothing  # (images, labels): compile ahead of the first step


def rmsprop(spec: FullTrainingSpec):
    """facenet's optimizer: RMSProp with decay 0.9, momentum 0.9, epsilon 1.0."""
    import keras

    return keras.optimizers.RMSprop(learning_rate=spec.learning_rate, rho=0.9, momentum=0.9,
                                    epsilon=1.0)


def decayed(variables) -> list[int]:
    """Which of `variables` the L2 weight decay applies to: the kernels (conv and dense)."""
    return [i for i, v in enumerate(variables) if "kernel" in v.name]


def make_trainer(model, spec: FullTrainingSpec, strategy=None, jit_compile: bool = False
                 ) -> Trainer:
    """A micro-step (forward, backward, accumulate) and an update (apply averaged, reset).

    Under a multi-worker strategy each worker accumulates its own micro-batches; the optimizer
    all-reduces the gradients by summation (Keras 2 and 3 alike), so each worker's sum is divided
    by its micro-steps and by the number of replicas: the update is the global batch's mean.
    The model must have been built in `strategy.scope()`.

    With `center_loss_factor` the loss adds facenet's center loss on the prelogits (the
    "Bottleneck_BatchNorm" output): mean squared distance to the class centres, which each
    micro-step moves towards its features by (1 - alfa) of the gap, as facenet's scatter_sub
    does. Centres are not trained by the optimizer; with several workers each keeps its own.
    `jit_compile`: both steps through XLA (tf-xla), single-process only.
    """
    import tensorflow as tf
    from tensorflow import keras

    strategy = strategy or tf.distribute.get_strategy()
    classifier = model
    variables = model.trainable_variables
    with strategy.scope():
        optimizer = rmsprop(spec)
        optimizer.build(variables)
        local = {"trainable": False, "synchronization": tf.VariableSynchronization.ON_READ,
                 "aggregation": tf.VariableAggregation.SUM}
        sums = [tf.Variable(tf.zeros_like(v), **local) for v in variables]
        centers = None
        if spec.center_loss_factor:
            prelogits = model.get_layer("Bottleneck_BatchNorm").output
            centers = tf.Variable(tf.zeros((model.output.shape[-1], prelogits.shape[-1])),
                                  **local)
            model = keras.Model(model.input, [prelogits, model.output])
    kernels = [variables[i] for i in decayed(variables)]
    scale = 1.0 / (spec.accumulation * strategy.num_replicas_in_sync)

    def center_loss(features, labels):
        features = tf.cast(features, tf.float32)
        batch_centers = tf.gather(centers, labels)
        centers.assign(tf.tensor_scatter_nd_sub(
            centers, labels[:, None], (1 - spec.center_loss_alfa) * (batch_centers - features)))
        return tf.reduce_mean(tf.square(features - batch_centers))

    def accumulate(images, labels):
        with tf.GradientTape() as tape:
            outputs = model(images, training=True)
            logits = tf.cast(outputs[1] if centers is not None else outputs, tf.float32)
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
            decay = spec.weight_decay * tf.add_n([tf.nn.l2_loss(k) for k in kernels])
            total = loss + tf.cast(decay, loss.dtype)
            if centers is not None:
                total += spec.center_loss_factor * center_loss(outputs[0], labels)
        for s, g in zip(sums, tape.gradient(total, variables), strict=True):
            s.assign_add(g)
        return loss

    def apply():
        optimizer.apply_gradients([(s * scale, v) for s, v in zip(sums, variables, strict=True)])
        for s in sums:
            s.assign(tf.zeros_like(s))

    @tf.function(jit_compile=jit_compile)
    def micro_step(images, labels):
        return strategy.experimental_local_results(
            strategy.run(accumulate, args=(images, labels)))[0]

    @tf.function(jit_compile=jit_compile)
    def update():
        strategy.run(apply)

    return Trainer(micro_step, update, centers,
                   lambda images: classifier(images, training=False).numpy())


def accuracy(logits: Callable[[np.ndarray], np.ndarray], index: lfw.ImageIndex,
             image_size: int, batch: int) -> float:
    """Held-out accuracy of `logits` (a Trainer's: the model as trained so far). A short last
    batch is padded (inference mode: rows do not interact)."""
    correct = 0
    for images, labels in lfw.dataset(index, image_size, batch):
        n = len(labels)
        predicted = np.argmax(logits(lfw.pad_batch(images.numpy(), batch))[:n], axis=1)
        correct += int(np.sum(predicted == labels.numpy()))
    return correct / len(index.paths)


def recalibrate_batchnorm(model, batches, count: int, momentum: float = 0.9,
                          progress=lambda done: None) -> None:
    """Re-estimate every BatchNorm's moving mean and variance from `count` batches run in
    training mode, the weights untouched.

    With facenet's decay of 0.995 the moving statistics forget their initial (0, 1) only after
    ~1,000 updates; a short pretraining leaves them between the two, and the frozen network —
    which runs in inference mode, on the moving statistics — then produces collapsed embeddings
    (transfer fell from 65% with random weights to 10%). A faster-moving average over the final
    weights' own batches (residual 0.9^count of the old statistics) gives them their real values.
    """
    import tensorflow as tf
    from tensorflow import keras

    norms = [layer for layer in model.layers
             if isinstance(layer, keras.layers.BatchNormalization)]
    kept = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = momentum
    forward = tf.function(lambda images: model(images, training=True))  # traced with `momentum`
    try:
        for i, (images, _labels) in zip(range(count), batches, strict=False):
            forward(images)
            progress(i + 1)
    finally:
        for layer, value in zip(norms, kept, strict=True):
            layer.momentum = value
