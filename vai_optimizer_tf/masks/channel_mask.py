"""`ChannelMask`: the Keras constraint that keeps pruned channels at zero.

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
"""

import numpy as np
import tensorflow as tf
import tf_keras

REGISTERED_NAME = "vai_optimizer_tf>ChannelMask"


@tf_keras.saving.register_keras_serializable(package="vai_optimizer_tf")
class ChannelMask(tf_keras.constraints.Constraint):
    """Zeroes the pruned channel slices of a weight after every update.

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

    def __init__(self, shape, axes, inner=None):
        self.shape = tuple(int(d) for d in shape)
        self.inner_config = inner
        self.inner = tf_keras.constraints.get(inner) if inner else None
        self.keep = {}
        for axis, kept in axes:
            axis = int(axis)
            vector = np.zeros(self.shape[axis], dtype=np.float32)
            vector[np.asarray(kept, dtype=np.int64)] = 1.0
            self.keep[axis] = tf.Variable(vector, trainable=False, name=f"channel_keep_{axis}")

    def __call__(self, w):
        if self.inner is not None:
            w = self.inner(w)
        rank = len(self.shape)
        for axis, keep in self.keep.items():
            shape = [1] * rank
            shape[axis] = -1
            w = w * tf.reshape(tf.cast(keep, w.dtype), shape)
        return w

    def kept(self, axis):
        """The kept indices along `axis`, as a sorted int array."""
        return np.nonzero(self.keep[axis].numpy())[0]

    def set_kept(self, axis, kept):
        """Changes the kept indices along `axis`; takes effect at the next update."""
        vector = np.zeros(self.shape[axis], dtype=np.float32)
        vector[np.asarray(kept, dtype=np.int64)] = 1.0
        self.keep[axis].assign(vector)

    def get_config(self):
        return {"shape": list(self.shape),
                "axes": [[axis, [int(k) for k in self.kept(axis)]] for axis in self.keep],
                "inner": self.inner_config}


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


def is_channel_mask_config(value):
    return isinstance(value, dict) and value.get("class_name") in ("ChannelMask", REGISTERED_NAME)


def strip_masks(layer_config):
    """A copy of a layer config with every `ChannelMask` replaced by its inner constraint."""
    config = dict(layer_config)
    for key, value in layer_config.items():
        if key.endswith("_constraint") and is_channel_mask_config(value):
            config[key] = value.get("config", {}).get("inner")
    return config


def constraint_key(weight_name):
    """The layer config key of a weight's constraint (`kernel` -> `kernel_constraint`)."""
    return weight_name.replace("_kernel", "") + "_constraint"


def with_masks(layer_config, masks):
    """A copy of `layer_config` with `ChannelMask`s on the weights in `masks`.

    Args:
      layer_config: The layer's config (without masks).
      masks: Weight name -> `(shape, [[axis, kept], ...])`.

    Returns:
      `(config, unmasked)`: the new config, and the weight names whose layer
      has no constraint argument to hold a mask.
    """
    config = dict(layer_config)
    unmasked = []
    for name, (shape, axes) in masks.items():
        key = constraint_key(name)
        if key not in config:
            unmasked.append(name)
            continue
        mask = ChannelMask(shape, axes, inner=config.get(key))
        config[key] = tf_keras.saving.serialize_keras_object(mask)
    return config, unmasked
