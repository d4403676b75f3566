"""`BlockSparseMask`: the tf_keras constraint that holds an N:M pattern through training.

tf_keras optimizers apply a variable's constraint right after every update,
inside the compiled train step, in `model.fit` and in custom
`optimizer.apply_gradients` loops alike; `block_mask_base.py` has the logic
both flavours share and how a reloaded mask recovers its selection.

The class is registered with Keras as `vai_optimizer_tf>BlockSparseMask`, and
under its bare name for the legacy `.h5` loader. Keras 3 models get the
Keras 3 class of `keras3_block_mask.py`.
"""

import tf_keras

from vai_optimizer_tf.sparsity.block_mask_base import BlockSparseMaskBase


@tf_keras.saving.register_keras_serializable(package="vai_optimizer_tf")
class BlockSparseMask(BlockSparseMaskBase, tf_keras.constraints.Constraint):
    """Keeps the pruned entries of an N:M block-sparse weight at zero (tf_keras).

    Args:
      shape, axis, block_size, sparsity, zeros, inner: As for
        `block_mask_base.BlockSparseMaskBase`.

    Example:

    ```python
    mask = BlockSparseMask(shape=(3, 3, 8, 4), axis=2, block_size=4, sparsity=0.5)
    mask.set_from_weights(np.random.rand(3, 3, 8, 4))   # keeps the 2 largest of each 4
    w = mask(tf.ones((3, 3, 8, 4)))                       # half of every block is zero
    ```
    """

    keras_module = tf_keras


def _register():
    """Also registers `BlockSparseMask` under its bare class name, for the `.h5` loader.

    See `ChannelMask`: tf_keras' legacy `.h5` loader looks constraints up by
    `class_name` alone. A class the user registered under that name first
    is left in place.
    """
    tf_keras.saving.get_custom_objects().setdefault(BlockSparseMask.__name__, BlockSparseMask)


_register()
