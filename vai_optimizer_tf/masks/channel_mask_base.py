"""What every flavour's `ChannelMask` constraint does, and mask configs as plain dicts.

The mask is one 0/1 vector per sliced axis, held in non-trainable
`tf.Variable`s so a pruning callback can change it during `fit` without
retracing. Its config stores the kept indices, so `model.save` / `load_model`
restore it. Each Keras flavour has its own constraint class (`channel_mask.py`
for tf_keras, `keras3_channel_mask.py` for Keras 3), both registered under
`vai_optimizer_tf>ChannelMask` in their flavour's registry; this module holds
the logic they share.
"""

import numpy as np
import tensorflow as tf

REGISTERED_NAME = "vai_optimizer_tf>ChannelMask"


class ChannelMaskBase:
    """Zeroes the pruned channel slices of a weight; mixed into a flavour's `Constraint`.

    Takes the arguments of the flavour's `ChannelMask` (see there). A
    flavour's class sets `keras_module` (`tf_keras`, or Keras 3's `keras`),
    which serializes it and its inner constraint.
    """

    keras_module = None

    def __init__(self, shape, axes, inner=None):
        self.shape = tuple(int(d) for d in shape)
        self.inner_config = inner
        self.inner = self._deserialize_constraint(inner) if inner else None
        self.keep = {}
        for axis, kept in axes:
            axis = int(axis)
            vector = np.zeros(self.shape[axis], dtype=np.float32)
            vector[np.asarray(kept, dtype=np.int64)] = 1.0
            self.keep[axis] = tf.Variable(vector, trainable=False, name=f"channel_keep_{axis}")

    def _deserialize_constraint(self, config):
        """The flavour's constraint object of a serialized constraint."""
        return self.keras_module.constraints.get(config)

    def serialize(self):
        """This mask as its flavour serializes it into a layer config."""
        return self.keras_module.saving.serialize_keras_object(self)

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

    @staticmethod
    def constraint_key(weight_name):
        """The layer config key of a weight's constraint (`kernel` -> `kernel_constraint`)."""
        return constraint_key(weight_name)

    @staticmethod
    def strip_masks(layer_config):
        """A copy of a layer config with every mask replaced by its inner constraint."""
        return strip_masks(layer_config)


def is_channel_mask_config(value):
    """Whether `value` is a serialized `ChannelMask` (of either flavour)."""
    return isinstance(value, dict) and value.get("class_name") in ("ChannelMask", REGISTERED_NAME)


def strip_masks(layer_config, is_mask=is_channel_mask_config):
    """A copy of a layer config with every mask replaced by its inner constraint.

    Args:
      layer_config: A layer config.
      is_mask: `fn(serialized constraint) -> bool` picking the masks to
        strip. Defaults to `is_channel_mask_config` (every `ChannelMask`).

    Returns:
      The new config.
    """
    config = dict(layer_config)
    for key, value in layer_config.items():
        if key.endswith("_constraint") and is_mask(value):
            config[key] = value.get("config", {}).get("inner")
    return config


def constraint_key(weight_name):
    """The layer config key of a weight's constraint (`kernel` -> `kernel_constraint`)."""
    return weight_name.replace("_kernel", "") + "_constraint"
