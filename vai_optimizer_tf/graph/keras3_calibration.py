"""Adaptive-BN calibration layers for Keras 3 models.

The Keras 3 counterpart of `tf_keras_calibration.py`; see
`calibrating_batch_norm.py` for what a calibration copy of a model is. Keras 3
computes a batch's variance without Bessel's correction (`ops.moments`), and
that is what the layer itself stores.
"""

import keras

from vai_optimizer_tf.graph import calibrating_batch_norm

# Layers that only add noise in training mode, and the config key that sets its amount.
_NOISE_KEYS = tuple((getattr(keras.layers, name), key) for name, key in (
    ("Dropout", "rate"), ("GaussianDropout", "rate"), ("AlphaDropout", "rate"),
    ("GaussianNoise", "stddev")) if hasattr(keras.layers, name))


@keras.saving.register_keras_serializable(package="vai_optimizer_tf")
class CalibratingBatchNormalization(calibrating_batch_norm.CalibratingMixin,
                                    keras.layers.BatchNormalization):
    """A Keras 3 BatchNormalization that sums each training batch's statistics.

    Only used inside calibration copies built by the library; its config is a
    BatchNormalization config with `momentum` set to 0.
    """


def _unsynchronized(config):
    config["synchronized"] = False


def calibration_config(layer):
    """`(class_name, config)` of `layer` in a calibration copy, or None to keep it as is."""
    return calibrating_batch_norm.calibration_config(layer, (keras.layers.BatchNormalization,),
                                                     _NOISE_KEYS, _unsynchronized)
