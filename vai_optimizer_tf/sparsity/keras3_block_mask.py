"""`BlockSparseMask` for Keras 3 models: the constraint that holds an N:M pattern.

Keras 3 optimizers apply `variable.constraint` right after every update
(`BaseOptimizer.apply`), so, as with tf_keras, an N:M sparse Keras 3 model
keeps its pattern through `fit` and custom `apply_gradients` loops without
any callback; `block_mask_base.py` has the logic both flavours share.

The class is registered in Keras 3's registry under the same name as the
tf_keras one, `vai_optimizer_tf>BlockSparseMask`, so a sparse `.keras` file
of either flavour loads after `import vai_optimizer_tf`.
"""

import keras

from vai_optimizer_tf.sparsity.block_mask_base import BlockSparseMaskBase


@keras.saving.register_keras_serializable(package="vai_optimizer_tf")
class BlockSparseMask(BlockSparseMaskBase, keras.constraints.Constraint):
    """Keeps the pruned entries of an N:M block-sparse weight at zero (Keras 3).

    Args:
      shape, axis, block_size, sparsity, zeros, inner: As for
        `block_mask_base.BlockSparseMaskBase`.

    Example:

    ```python
    from vai_optimizer_tf.sparsity import keras3_block_mask

    mask = keras3_block_mask.BlockSparseMask(shape=(3, 3, 8, 4), axis=2, block_size=4,
                                             sparsity=0.5)
    mask.set_from_weights(np.random.rand(3, 3, 8, 4))   # keeps the 2 largest of each 4
    w = mask(tf.ones((3, 3, 8, 4)))                       # half of every block is zero
    ```
    """

    keras_module = keras
