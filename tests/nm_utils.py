"""Shared pieces of the N:M sparsity tests: a small net and independent pattern checks.

The pattern is counted here by slicing each block explicitly, not through the
library's reshape, and the input-channel axis of every sparse kernel of
`nm_net` is written by hand below, not read from the layer registry. The net
is built with either Keras flavour (`tests/flavours.py`); both lay out their
kernels alike, so one table serves both.
"""

import numpy as np

from tests import model_utils
from tests.flavours import flavour_name
from vai_optimizer_tf.sparsity import flavour_classes

# Layer -> (weight attribute, input-channel axis) of each kernel that takes the pattern.
SPARSE_KERNELS = {
    "conv": ("kernel", 2),
    "sep": ("pointwise_kernel", 2),
    "up": ("kernel", 3),
    "side": ("kernel", 2),
    "head": ("kernel", 0),
}
# With activation sparsity the separable conv stays dense: its pointwise inputs are internal.
ACTIVATION_SPARSE_LAYERS = ["conv", "up", "side", "head"]
# The kernel of a DepthwiseConv2D: `depthwise_kernel` in tf_keras, `kernel` in Keras 3.
DEPTHWISE_KERNEL = {"tf_keras": "depthwise_kernel", "keras3": "kernel"}


def dense_kernels(keras):
    """`(layer, weight) -> words its reason must contain` for the kernels that stay dense."""
    return {("stem", "kernel"): "3 input channels",
            ("dw", DEPTHWISE_KERNEL[flavour_name(keras)]): "depthwise",
            ("sep", "depthwise_kernel"): "depthwise"}


def nm_net(keras, seed=0):
    """stem (3 channels) -> BN -> conv -> depthwise -> separable -> transpose conv -> 1x1 -> head.

    Input channels of the sparse kernels: conv 16, sep (pointwise) 32, up 32,
    side 16, head 16, so block sizes 4, 8 and 16 all fit.

    Args:
      keras: The flavour's `keras` module (`tf_keras` or Keras 3's `keras`).
      seed: Seeds the initial weights.
    """
    L = keras.layers
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(16, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(name="relu")(x)
    x = L.Conv2D(32, 3, padding="same", activation="relu", name="conv")(x)
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = L.SeparableConv2D(32, 3, padding="same", activation="relu", name="sep")(x)
    x = L.Conv2DTranspose(16, 3, strides=2, padding="same", name="up")(x)
    x = L.Conv2D(16, 1, activation="relu", name="side")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    outputs = L.Dense(10, name="head")(x)
    return model_utils.randomize_batch_norm(keras.Model(inputs, outputs, name="nm_net"), seed)


def training_data(n=32, seed=1):
    rs = np.random.RandomState(seed)
    return rs.uniform(-1, 1, (n, 8, 8, 3)).astype("float32"), rs.randint(0, 10, n)


def loss_fn(keras):
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def block_mask_class(keras):
    """The library's `BlockSparseMask` class for models of this flavour."""
    return flavour_classes.block_mask_class(flavour_name(keras))


def activation_sparsity_class(keras):
    """The library's `ActivationSparsity` layer class for models of this flavour."""
    return flavour_classes.activation_sparsity_class(flavour_name(keras))


def block_zero_counts(values, axis, block_size, zero=0):
    """Zeros in each block of `block_size` consecutive entries along `axis`, block by block."""
    moved = np.moveaxis(np.asarray(values), axis, -1)
    assert moved.shape[-1] % block_size == 0, (moved.shape, block_size)
    return np.stack([np.sum(moved[..., start:start + block_size] == zero, axis=-1)
                     for start in range(0, moved.shape[-1], block_size)], axis=-1)


def kernel(model, layer, attr):
    return getattr(model.get_layer(layer), attr).numpy()


def assert_pattern(model, block_size, zeros, layers=None):
    """Every block of every sparse kernel has at least `zeros` exact zeros."""
    bad = {}
    for layer in layers or SPARSE_KERNELS:
        attr, axis = SPARSE_KERNELS[layer]
        counts = block_zero_counts(kernel(model, layer, attr), axis, block_size)
        if np.any(counts < zeros):
            bad[layer] = int(np.sum(counts < zeros))
    assert not bad, f"blocks with fewer than {zeros} zeros: {bad}"


def zero_positions(model, layers=None):
    return {layer: kernel(model, layer, SPARSE_KERNELS[layer][0]) == 0
            for layer in layers or SPARSE_KERNELS}


def assert_same_zeros(model, expected):
    changed = [layer for layer, zeros in expected.items()
               if not np.array_equal(zero_positions(model, [layer])[layer], zeros)]
    assert not changed, f"the pruned entries changed in {changed}"


def assert_trained(model, before, layers=None):
    """The kept weights moved: training really happened."""
    for layer in layers or SPARSE_KERNELS:
        after = kernel(model, layer, SPARSE_KERNELS[layer][0])
        assert not np.allclose(after[after != 0], before[layer][after != 0]), layer


def kernels(model, layers=None):
    return {layer: kernel(model, layer, SPARSE_KERNELS[layer][0]).copy()
            for layer in layers or SPARSE_KERNELS}
