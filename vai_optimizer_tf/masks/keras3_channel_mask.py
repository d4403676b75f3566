"""`ChannelMask` for Keras 3 models: the constraint that keeps pruned channels at zero.

Keras 3 optimizers apply `variable.constraint` right after every update
(`BaseOptimizer.apply`), so, as with tf_keras, a sparse Keras 3 model keeps
its pruned channels exactly zero through `fit` and custom `apply_gradients`
loops without any callback. The test suite checks it with SGD momentum, Adam,
AdamW, `steps_per_execution > 1`, mixed precision, `jit_compile=True` (XLA),
`MirroredStrategy` and a `tf.GradientTape` loop (tests/test_training_masks.py).

The class is registered in Keras 3's registry under the same name as the
tf_keras one, `vai_optimizer_tf>ChannelMask`, so a sparse `.keras` file of
either flavour loads after `import vai_optimizer_tf`.
"""

import keras

from vai_optimizer_tf.masks.channel_mask_base import ChannelMaskBase


@keras.saving.register_keras_serializable(package="vai_optimizer_tf")
class ChannelMask(ChannelMaskBase, keras.constraints.Constraint):
    """Zeroes the pruned channel slices of a weight after every update (Keras 3).

    Args:
      shape: The weight's shape.
      axes: List of `[axis, kept]` pairs: a sliced axis and the kept indices
        along it (all indices when nothing is pruned on that axis yet).
      inner: Optional serialized constraint the layer had before, applied
        first. Defaults to `None`.

    Example:

    ```python
    from vai_optimizer_tf.masks import keras3_channel_mask

    mask = keras3_channel_mask.ChannelMask(shape=(3, 3, 8, 4), axes=[[3, [0, 2]]])
    w = mask(tf.ones((3, 3, 8, 4)))   # output channels 1 and 3 are zero
    ```
    """

    keras_module = keras
