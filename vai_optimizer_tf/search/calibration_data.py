"""Calibration inputs for adaptive BN: a fixed list of input batches.

Batches are read once and kept, so every candidate subnet is calibrated on
exactly the same inputs, and a resumed search scores candidates as an
uninterrupted one would.
"""

import hashlib
import numbers

import numpy as np
import tensorflow as tf


def _is_dataset(data):
    return isinstance(data, tf.data.Dataset)


def _inputs_of(element):
    """The model inputs of a dataset element or an `(x, y)` pair, as Keras unpacks them."""
    if isinstance(element, tuple) and 1 <= len(element) <= 3:
        return element[0]
    return element


def _check_positive(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"Invalid `{name}`: expected a positive integer. "
                         f"Received: {name}={value!r}")
    return int(value)


def calibration_batches(data, steps=50, batch_size=32):
    """Reads up to `steps` input batches from `data`.

    Args:
      data: A `tf.data.Dataset` of batches (elements `x`, `(x,)`, `(x, y)` or
        `(x, y, sample_weight)`, as `model.fit` takes them), a numpy array or
        tensor of inputs, a list of arrays (one per model input), a dict of
        named inputs, or an `(x, y)` tuple. Labels are ignored.
      steps: Number of batches. Defaults to `50`.
      batch_size: Batch size for array inputs (a dataset is already
        batched). Defaults to `32`.

    Returns:
      A non-empty list of batches (tensors, lists or dicts of tensors).

    Raises:
      ValueError: for bad `steps`/`batch_size`, or data that yields nothing.
      TypeError: for data of an unsupported type.
    """
    steps = _check_positive("steps", steps)
    batch_size = _check_positive("batch_size", batch_size)
    if _is_dataset(data):
        batches = [_inputs_of(element) for element in data.take(steps)]
    else:
        x = _inputs_of(data) if isinstance(data, tuple) else data
        arrays = tf.nest.flatten(x)
        if not arrays or not all(isinstance(a, np.ndarray) or tf.is_tensor(a) for a in arrays):
            raise TypeError(
                "Invalid `calibration_data`: expected a tf.data.Dataset, a numpy array (or a "
                "list/dict of arrays, one per model input), an (x, y) tuple, or a callable "
                f"calibration_fn(model). Received: {type(data).__name__}")
        count = int(np.shape(arrays[0])[0])
        batches = [tf.nest.map_structure(lambda a, s=start: tf.constant(a[s:s + batch_size]), x)
                   for start in range(0, count, batch_size)][:steps]
    if not batches:
        raise ValueError("Invalid `calibration_data`: it yields no batch. Pass a few batches "
                         "of training images (labels are ignored).")
    return batches


def batches_digest(batches):
    """A hex digest of the calibration inputs, for cache keys."""
    digest = hashlib.sha256()
    for batch in batches:
        for value in tf.nest.flatten(batch):
            array = np.ascontiguousarray(np.asarray(value))
            digest.update(str(array.shape).encode())
            digest.update(str(array.dtype).encode())
            digest.update(array.tobytes())
    return digest.hexdigest()[:16]
