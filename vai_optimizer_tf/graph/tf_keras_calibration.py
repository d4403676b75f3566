"""Adaptive-BN calibration layers for tf_keras models.

A calibration copy of a model (see `TfKerasAdapter.rebuild_for_calibration`)
has every BatchNormalization replaced by `CalibratingBatchNormalization` and
every training-only noise layer (Dropout and its kin) switched off. In
inference the copy computes exactly what the original computes. In training
mode each BatchNormalization normalizes with the batch's statistics, as
usual, and adds them to a running sum, so after any number of batches the
moving statistics can be set to their plain average: the cumulative average
that EagleEye's adaptive BN (and PyTorch's `momentum=None`) uses, instead of
Keras's exponential moving average.

Each batch's statistics are the ones the layer itself stores with
`momentum=0`: the batch mean, and the batch variance as the layer's own
training path computes it (with Bessel's correction in the fused kernel that
4D inputs use, without it for other ranks).
"""

import tensorflow as tf
import tf_keras

_BATCH_NORMS = (tf_keras.layers.BatchNormalization,
                tf_keras.layers.experimental.SyncBatchNormalization)
# Layers that only add noise in training mode, and the config key that sets its amount.
_NOISE_KEYS = ((tf_keras.layers.Dropout, "rate"), (tf_keras.layers.GaussianDropout, "rate"),
               (tf_keras.layers.AlphaDropout, "rate"), (tf_keras.layers.GaussianNoise, "stddev"))


class _Sums:
    """Running sums of one layer's batch statistics.

    A plain object, not a tf.Module, so Keras does not count its variables as
    layer weights (`get_weights` stays that of a BatchNormalization).
    """

    def __init__(self, size, dtype):
        self.count = tf.Variable(0.0, trainable=False, dtype=dtype)
        self.mean = tf.Variable(tf.zeros(size, dtype), trainable=False)
        self.variance = tf.Variable(tf.zeros(size, dtype), trainable=False)


@tf_keras.saving.register_keras_serializable(package="vai_optimizer_tf")
class CalibratingBatchNormalization(tf_keras.layers.BatchNormalization):
    """A BatchNormalization that sums each training batch's statistics.

    Only used inside calibration copies built by the library; its config is a
    BatchNormalization config with `momentum` set to 0.
    """

    def build(self, input_shape):
        super().build(input_shape)
        self._sums = _Sums(self.moving_mean.shape, self.moving_mean.dtype)

    def call(self, inputs, training=None, mask=None):
        outputs = super().call(inputs, training=training, mask=mask)
        if training is True or (tf.is_tensor(training) and tf.get_static_value(training)):
            # momentum=0: the moving statistics now hold this batch's statistics.
            self._sums.count.assign_add(1.0)
            self._sums.mean.assign_add(self.moving_mean)
            self._sums.variance.assign_add(self.moving_variance)
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
    if isinstance(layer, _BATCH_NORMS):
        config = dict(layer.get_config())
        config["momentum"] = 0.0
        config.pop("synchronized", None)
        return "CalibratingBatchNormalization", config
    for cls, key in _NOISE_KEYS:
        if isinstance(layer, cls):
            config = dict(layer.get_config())
            config[key] = 0.0
            return None, config
    return None
