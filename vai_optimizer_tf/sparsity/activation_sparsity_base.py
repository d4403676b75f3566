"""What every flavour's `ActivationSparsity` layer does: N:M sparsity of a layer's inputs.

`SparsePruner.sparse_model(w_sparsity=0.75, a_sparsity=0.5)` puts one in
front of every sparse layer: in each block of `block_size` consecutive input
channels (at every position), the `a_sparsity * block_size` entries of
smallest magnitude are set to zero. Ties are broken by channel index, so
exactly that many are zero (more when the block already holds zeros), also
on the discrete values of an int8 TFLite model.

It is built from plain TensorFlow ops (`top_k`, comparisons, `cumsum`,
`where`), so it exports to a SavedModel and to TFLite builtins (float and
int8) with no custom op. Gradients pass straight through (the derivative is
taken as the identity), so the sparse model trains as usual.

Each flavour has its layer class (`tf_keras_activation_sparsity.py`,
`keras3_activation_sparsity.py`), registered under
`vai_optimizer_tf>ActivationSparsity`; this module holds what they share,
and registers them, through this base, as a channel barrier.
"""

import tensorflow as tf

from vai_optimizer_tf.graph.registry import REGISTRY, LayerSpec
from vai_optimizer_tf.sparsity import block_pattern


def block_top_k(x, block_size, kept):
    """Zeroes all but the `kept` largest magnitudes of each block of the last axis.

    Args:
      x: A tensor whose last axis is a multiple of `block_size`.
      block_size: Consecutive channels per block.
      kept: Entries kept per block.

    Returns:
      A tensor like `x`.
    """
    shape = tf.shape(x)
    flat = tf.reshape(x, [-1, block_size])
    magnitude = tf.abs(flat)
    threshold = tf.math.top_k(magnitude, k=kept).values[:, kept - 1:kept]
    above = magnitude > threshold
    tied = tf.equal(magnitude, threshold)
    # Entries equal to the threshold fill the slots left, lowest channel first.
    slots = kept - tf.reduce_sum(tf.cast(above, tf.int32), axis=-1, keepdims=True)
    tie_rank = tf.math.cumsum(tf.cast(tied, tf.int32), axis=-1, exclusive=True)
    keep = tf.logical_or(above, tf.logical_and(tied, tie_rank < slots))
    return tf.reshape(tf.where(keep, flat, tf.zeros_like(flat)), shape)


class ActivationSparsityBase:
    """Zeroes the smallest activations of each block of input channels; mixed into a Layer.

    Args:
      block_size: Consecutive channels (last axis) per block.
      sparsity: Fraction of each block set to zero, e.g. `0.5`.
      **kwargs: Base layer arguments (`name`, `dtype`).
    """

    def __init__(self, block_size, sparsity, **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        self.block_size = int(block_size)
        self.sparsity = float(sparsity)
        self.pattern = block_pattern.BlockPattern.from_sparsity(self.sparsity, self.block_size)
        if self.pattern.zeros < 1:
            raise ValueError(f"Invalid `sparsity`: it zeroes no entry of a block of "
                             f"{self.block_size}. Received: sparsity={sparsity!r}")

    def build(self, input_shape):
        channels = tf.TensorShape(input_shape)[-1]
        if channels is None or channels % self.block_size:
            raise ValueError(f"ActivationSparsity {self.name!r} needs a channel axis that is a "
                             f"multiple of block_size={self.block_size}. Received: input "
                             f"shape {tuple(tf.TensorShape(input_shape).as_list())}")
        super().build(input_shape)

    def call(self, inputs):
        kept = self.pattern.kept
        block_size = self.block_size

        @tf.custom_gradient
        def straight_through(x):
            def grad(upstream):
                return upstream
            return block_top_k(x, block_size, kept), grad

        return straight_through(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"block_size": self.block_size, "sparsity": self.sparsity})
        return config


def _register():
    """Registers the layers of both flavours (through this base) as a channel barrier.

    Channel pruning must not shrink its input: its blocks are fixed groups of
    channels. Prune channels first, then add N:M sparsity to the slim model.
    """
    if REGISTRY.lookup(ActivationSparsityBase) is None:
        REGISTRY.register(ActivationSparsityBase, LayerSpec.barrier(
            "activation sparsity works on fixed blocks of input channels; prune channels "
            "first, then add N:M sparsity to the slim model"))


_register()
