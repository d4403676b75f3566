"""Adaptive-BN calibration layers for tf_keras models.

See `calibrating_batch_norm.py` for what a calibration copy of a model is.
Each batch's statistics are the ones the layer itself stores with
`momentum=0`: the batch mean, and the batch variance as the layer's own
training path computes it (with Bessel's correction in the fused kernel that
4D inputs use, without it for other ranks).
"""

import tf_keras

from vai_optimizer_tf.graph import calibrating_batch_norm

_BATCH_NORMS = (tf_keras.layers.BatchNormalization,
                tf_keras.layers.experimental.SyncBatchNormalization)
# Layers that only add noise in training mode, and the config key that sets its amount.
_NOISE_KEYS = ((tf_keras.layers.Dropout, "rate"), (tf_keras.layers.GaussianDropout, "rate"),
               (tf_keras.layers.AlphaDropout, "rate"), (tf_keras.layers.GaussianNoise, "stddev"))


@tf_keras.saving.register_keras_serializable(package="vai_optimizer_tf")
class CalibratingBatchNormalization(calibrating_batch_norm.CalibratingMixin,
                                    tf_keras.layers.BatchNormalization):
    """A BatchNormalization that sums each training batch's statistics.

    Only used inside calibration copies built by the library; its config is a
    BatchNormalization config with `momentum` set to 0.
    """


def _unsynchronized(config):
    config.pop("synchronized", None)


def calibration_config(layer):
    """`(class_name, config)` of `layer` in a calibration copy, or None to keep it as is."""
    return calibrating_batch_norm.calibration_config(layer, _BATCH_NORMS, _NOISE_KEYS,
                                                     _unsynchronized)
