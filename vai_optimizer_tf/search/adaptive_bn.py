"""Adaptive BN: re-estimates BatchNormalization statistics of a pruned model.

Pruning shifts the statistics of every layer after a pruned one, so a pruned
model evaluated with its original moving statistics scores far below what it
is worth. EagleEye (Li et al., 2020) showed that re-estimating the statistics
on a few training batches makes the scores of candidate subnets predict
their accuracy after fine-tuning. The statistics are a plain average over the
batches (not Keras's exponential moving average), with BatchNormalization in
training mode and no weight update.
"""

import logging

import tensorflow as tf

from vai_optimizer_tf.search.calibration_data import calibration_batches

logger = logging.getLogger("vai_optimizer_tf")


class BatchNormCalibration:
    """Calibrates the BatchNormalization layers of a calibration copy in place.

    Args:
      model: A calibration copy (see `TfKerasAdapter.rebuild_for_calibration`).
      calibrating: Its calibrating layers, by layer path.
      batches: Input batches (see `calibration_batches`), or None with
        `calibration_fn`.
      calibration_fn: Optional `fn(model)` that runs forward passes in
        training mode (`model(x, training=True)`), Vitis style. Defaults to
        `None`.
    """

    def __init__(self, model, calibrating, batches=None, calibration_fn=None):
        if (batches is None) == (calibration_fn is None):
            raise ValueError("Pass exactly one of `batches` and `calibration_fn`.")
        self.model = model
        self.calibrating = dict(calibrating)
        self.batches = batches
        self.calibration_fn = calibration_fn

        @tf.function(reduce_retracing=True)
        def forward(x):
            model(x, training=True)

        self._forward = forward

    def run(self):
        """Re-estimates every BatchNormalization's moving statistics; returns the model."""
        if not self.calibrating:
            return self.model
        for layer in self.calibrating.values():
            layer.reset_sums()
        if self.calibration_fn is not None:
            self.calibration_fn(self.model)
        else:
            for x in self.batches:
                self._forward(x)
        unseen = [path for path, layer in self.calibrating.items() if layer.batches_seen() == 0]
        if unseen:
            raise ValueError(
                f"The calibration ran no training-mode forward pass through BatchNormalization "
                f"layers {unseen[:5]}. A calibration_fn must call `model(x, training=True)` on "
                "a few batches of training images.")
        for layer in self.calibrating.values():
            layer.set_average()
        return self.model


def make_calibration(model, calibrating, calibration_data, steps=50, batch_size=32):
    """A `BatchNormCalibration` from user-facing calibration arguments.

    `calibration_data` may also be a list of batches already read by
    `calibration_batches`.
    """
    if callable(calibration_data) and not isinstance(calibration_data, tf.data.Dataset):
        return BatchNormCalibration(model, calibrating, calibration_fn=calibration_data)
    if isinstance(calibration_data, PreparedBatches):
        return BatchNormCalibration(model, calibrating, batches=list(calibration_data))
    return BatchNormCalibration(model, calibrating,
                                batches=calibration_batches(calibration_data, steps, batch_size))


class PreparedBatches(list):
    """Input batches already read by `calibration_batches`, used as they are."""


def adaptive_bn(model, calibration_data, steps=50, batch_size=32):
    """Re-estimates the BatchNormalization statistics of `model` on calibration data.

    Each BatchNormalization's moving mean and variance become the average of
    the batch statistics over `steps` batches, computed with the layer in
    training mode (Dropout off, no weight updated). Useful after any pruning
    step, before evaluating or fine-tuning the pruned model. The moving
    statistics of `model` are updated in place (as `model.fit` would update
    them); nothing else changes.

    Args:
      model: A tf_keras or Keras 3 Sequential or Functional model, e.g. a sparse or slim
        model returned by a runner.
      calibration_data: A `tf.data.Dataset` of batches, a numpy array of
        inputs (or a list/dict of arrays, one per input), an `(x, y)` tuple
        (labels are ignored), or a callable `calibration_fn(model)` that runs
        `model(x, training=True)` on the batches it chooses.
      steps: Number of batches to read. Defaults to `50`.
      batch_size: Batch size for array inputs. Defaults to `32`.

    Returns:
      `model`.

    Raises:
      ValueError: for bad arguments, or a calibration_fn that runs no
        training-mode forward pass.

    Example:

    ```python
    import numpy as np
    import tf_keras
    import vai_optimizer_tf as vot

    model = tf_keras.Sequential([
        tf_keras.Input((8, 8, 3)), tf_keras.layers.Conv2D(4, 3),
        tf_keras.layers.BatchNormalization(), tf_keras.layers.ReLU()])
    x = np.random.rand(64, 8, 8, 3).astype("float32")
    vot.adaptive_bn(model, x, steps=2, batch_size=32)
    ```
    """
    return calibrate_in_place(
        model, lambda copy, calibrating: make_calibration(copy, calibrating, calibration_data,
                                                          steps, batch_size))


def calibrate_in_place(model, make):
    """Runs `make(copy, calibrating).run()` on a calibration copy of `model`, then copies
    the calibrated BatchNormalization weights back into `model`; returns `model`."""
    from vai_optimizer_tf.graph import adapters  # pylint: disable=import-outside-toplevel
    adapter = adapters.adapter_for(model)
    copy, calibrating = adapter.rebuild_for_calibration()
    if not calibrating:
        logger.warning("Model %r has no BatchNormalization layer: adaptive BN changes nothing.",
                       model.name)
        return model
    make(copy, calibrating).run()
    adapter.assign_source_weights({path: adapter.layer_values(copy, path)
                                   for path in calibrating})
    return model
