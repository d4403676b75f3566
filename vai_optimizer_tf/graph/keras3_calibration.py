"""Adaptive-BN calibration layers for Keras 3 models.

The Keras 3 counterpart of `tf_keras_calibration.py` (see there): a
calibration copy of a model (`Keras3Adapter.rebuild_for_calibration`) has
every BatchNormalization replaced by `CalibratingBatchNormalization` with
momentum 0 and every training-only noise layer switched off. In training mode
each BatchNormalization normalizes with the batch's statistics and adds them
to a running sum, so the moving statistics can be set to their plain average
over the batches seen. Keras 3 computes a batch's variance without Bessel's
correction (`ops.moments`), and that is what the layer itself stores.
"""

import keras
import tensorflow as tf

# Layers that only add noise in training mode, and the config key that sets its amount.
_NOISE_KEYS = tuple((getattr(keras.layers, name), key) for name, key in (
    ("Dropout", "rate"), ("GaussianDropout", "rate"), ("AlphaDropout", "rate"),
    ("GaussianNoise", "stddev")) if hasattr(keras.layers, name))


class _Sums:
    """Running sums of one layer's batch statistics.

    A plain object holding `tf.Variable`s, which Keras 3 does not count as
    layer weights (`get_weights` stays that of a BatchNormalization).
    """

    def __init__(self, size, dtype):
        self.count = tf.Variable(0.0, trainable=False, dtype=dtype)
        self.mean = tf.Variable(tf.zeros(size, dtype), trainable=False)
        self.variance = tf.Variable(tf.zeros(size, dtype), trainable=False)


@keras.saving.register_keras_serializable(package="vai_optimizer_tf")
class CalibratingBatchNormalization(keras.layers.BatchNormalization):
    """A Keras 3 BatchNormalization that sums each training batch's statistics.

    Only used inside calibration copies built by the library; its config is a
    BatchNormalization config with `momentum` set to 0.
    """

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
        self._sums.count.assign(0.0)
        self._sums.mean.assign(tf.zeros_like(self._sums.mean))
        self._sums.variance.assign(tf.zeros_like(self._sums.variance))

    def batches_seen(self):
        return int(self._sums.count.numpy())

    def set_average(self):
        """Sets the moving statistics to the average over the batches seen."""
        count = self._sums.count
        self.moving_mean.assign(self._sums.mean / count)
        self.moving_variance.assign(self._sums.variance / count)


def calibration_config(layer):
    """`(class_name, config)` of `layer` in a calibration copy, or None to keep it as is."""
    if isinstance(layer, keras.layers.BatchNormalization):
        config = dict(layer.get_config())
        config["momentum"] = 0.0
        config["synchronized"] = False
        return "CalibratingBatchNormalization", config
    for cls, key in _NOISE_KEYS:
        if isinstance(layer, cls):
            config = dict(layer.get_config())
            config[key] = 0.0
            return None, config
    return None
