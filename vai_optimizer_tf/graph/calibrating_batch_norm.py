"""What both flavours' adaptive-BN calibration layers do, written once.

A calibration copy of a model (`ModelAdapter.rebuild_for_calibration`) has
every BatchNormalization replaced by `CalibratingBatchNormalization` with
momentum 0 and every training-only noise layer (Dropout and its kin)
switched off. In inference the copy computes exactly what the original
computes. In training mode each BatchNormalization normalizes with the
batch's statistics, as usual, and adds them to a running sum, so after any
number of batches the moving statistics can be set to their plain average:
the cumulative average that EagleEye's adaptive BN (and PyTorch's
`momentum=None`) uses, instead of Keras's exponential moving average.

Each flavour's `CalibratingBatchNormalization` (`tf_keras_calibration.py`,
`keras3_calibration.py`) mixes `CalibratingMixin` into its Keras's
BatchNormalization and says which layers `calibration_config` changes.
"""

import tensorflow as tf


class _Sums:
    """Running sums of one layer's batch statistics.

    A plain object holding `tf.Variable`s, not a tf.Module, so Keras does not
    count them as layer weights (`get_weights` stays that of a
    BatchNormalization).
    """

    def __init__(self, size, dtype):
        self.count = tf.Variable(0.0, trainable=False, dtype=dtype)
        self.mean = tf.Variable(tf.zeros(size, dtype), trainable=False)
        self.variance = tf.Variable(tf.zeros(size, dtype), trainable=False)


class CalibratingMixin:
    """Sums each training batch's statistics; mixed in front of a BatchNormalization class."""

    def build(self, input_shape):
        super().build(input_shape)
        self._sums = _Sums(tuple(self.moving_mean.shape), self.moving_mean.dtype)

    def call(self, inputs, training=None, mask=None):
        outputs = super().call(inputs, training=training, mask=mask)
        if training is True or (tf.is_tensor(training) and tf.get_static_value(training)):
            # momentum=0: the moving statistics now hold this batch's statistics.
            self._sums.count.assign_add(1.0)
            self._sums.mean.assign_add(tf.convert_to_tensor(self.moving_mean))
            self._sums.variance.assign_add(tf.convert_to_tensor(self.moving_variance))
        return outputs

    def reset_sums(self):
        """Forgets the batches seen so far."""
        self._sums.count.assign(0.0)
        self._sums.mean.assign(tf.zeros_like(self._sums.mean))
        self._sums.variance.assign(tf.zeros_like(self._sums.variance))

    def batches_seen(self):
        """How many training batches were summed since the last `reset_sums()`."""
        return int(self._sums.count.numpy())

    def set_average(self):
        """Sets the moving statistics to the average over the batches seen."""
        count = self._sums.count
        self.moving_mean.assign(self._sums.mean / count)
        self.moving_variance.assign(self._sums.variance / count)


def calibration_config(layer, batch_norms, noise_keys, unsynchronized):
    """`(class_name, config)` of `layer` in a calibration copy, or None to keep it as is.

    Args:
      layer: A layer of the model.
      batch_norms: The flavour's BatchNormalization classes (a tuple).
      noise_keys: `(noise layer class, config key of its amount)` pairs.
      unsynchronized: `fn(config)` making a BatchNormalization config one
        that `CalibratingBatchNormalization` accepts, without cross-replica
        synchronization, in place.

    Returns:
      `("CalibratingBatchNormalization", config)` for a BatchNormalization,
      `(None, config)` with the noise amount set to 0 for a noise layer, or
      None.
    """
    if isinstance(layer, batch_norms):
        config = dict(layer.get_config())
        config["momentum"] = 0.0
        unsynchronized(config)
        return "CalibratingBatchNormalization", config
    for cls, key in noise_keys:
        if isinstance(layer, cls):
            config = dict(layer.get_config())
            config[key] = 0.0
            return None, config
    return None
