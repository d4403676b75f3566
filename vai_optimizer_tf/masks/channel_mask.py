"""`ChannelMask`: the tf_keras constraint that keeps pruned channels at zero.

tf_keras optimizers apply a variable's constraint right after every update,
inside the compiled train step, in `model.fit` and in custom
`optimizer.apply_gradients` loops alike, with `steps_per_execution`, mixed
precision and `tf.distribute` strategies. So a sparse model whose masked
weights carry this constraint keeps its pruned channels exactly zero with
SGD momentum, Adam or AdamW weight decay, and needs no callback.

The mask is one 0/1 vector per sliced axis, held in non-trainable variables so
a pruning callback can change it during `fit` without retracing. Its config
stores the kept indices, so `model.save` / `load_model` restore it, and the
class is registered with Keras under `vai_optimizer_tf>ChannelMask`, and under
its bare name `ChannelMask` for the legacy `.h5` loader (see `_register`).
Keras 3 models get the Keras 3 class of `keras3_channel_mask.py`, which
behaves the same and is registered under the same name in Keras 3.
"""

import tf_keras

from vai_optimizer_tf.masks.channel_mask_base import (REGISTERED_NAME, ChannelMaskBase,  # noqa: F401
                                                      constraint_key, is_channel_mask_config,
                                                      strip_masks)


@tf_keras.saving.register_keras_serializable(package="vai_optimizer_tf")
class ChannelMask(ChannelMaskBase, tf_keras.constraints.Constraint):
    """Zeroes the pruned channel slices of a weight after every update (tf_keras).

    Args:
      shape: The weight's shape.
      axes: List of `[axis, kept]` pairs: a sliced axis and the kept indices
        along it (all indices when nothing is pruned on that axis yet).
      inner: Optional serialized constraint the layer had before, applied
        first. Defaults to `None`.

    Example:

    ```python
    mask = ChannelMask(shape=(3, 3, 8, 4), axes=[[3, [0, 2]]])
    w = mask(tf.ones((3, 3, 8, 4)))   # output channels 1 and 3 are zero
    ```
    """

    keras_module = tf_keras


def _register():
    """Also registers `ChannelMask` under its bare class name.

    The `.keras` loader finds registered classes by `registered_name`
    (`vai_optimizer_tf>ChannelMask`), but tf_keras' legacy `.h5` loader looks
    constraints up by `class_name` alone (`ChannelMask`), so without this a
    sparse `.h5` file fails with "Unknown constraint: 'ChannelMask'" even
    after `import vai_optimizer_tf`. A class the user registered under that
    name first is left in place.
    """
    tf_keras.saving.get_custom_objects().setdefault(ChannelMask.__name__, ChannelMask)


_register()
