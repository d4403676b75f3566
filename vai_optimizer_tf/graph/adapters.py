"""Picks the adapter that reads a model, by the model's Keras flavour.

Two flavours are read: tf_keras (Keras 2, `import tf_keras`) and Keras 3
(`import keras`, which is also `tf.keras` from TensorFlow 2.16 on). The
model's class decides: a `tf_keras.Model` gets `TfKerasAdapter`, a
`keras.Model` gets `Keras3Adapter`. The rest of the library only calls the
`ModelAdapter` methods, so it works the same on both.
"""

import importlib

from vai_optimizer_tf import errors

# Flavour -> (module of its adapter, adapter class, module of Keras itself).
_FLAVOURS = {
    "tf_keras": ("vai_optimizer_tf.graph.tf_keras_adapter", "TfKerasAdapter", "tf_keras"),
    "keras3": ("vai_optimizer_tf.graph.keras3_adapter", "Keras3Adapter", "keras"),
}
FLAVOURS = tuple(_FLAVOURS)


def flavour_of(model):
    """`"tf_keras"` or `"keras3"` for a Keras model (or layer) of that flavour, else None."""
    for flavour, (_, _, module) in _FLAVOURS.items():
        keras = importlib.import_module(module)
        if isinstance(model, keras.layers.Layer):
            return flavour
    return None


def keras_module(flavour):
    """The Keras package of a flavour: `tf_keras`, or `keras` for `"keras3"`."""
    return importlib.import_module(_FLAVOURS[flavour][2])


def adapter_class(flavour):
    """The `ModelAdapter` subclass of a flavour."""
    module, name, _ = _FLAVOURS[flavour]
    return getattr(importlib.import_module(module), name)


def adapter_for(model, input_signature=None):
    """The adapter for `model`, picked by its Keras flavour.

    Args:
      model: A tf_keras or Keras 3 model.
      input_signature: Optional input specs (see `TfKerasAdapter`).

    Returns:
      A `ModelAdapter`.

    Raises:
      UnsupportedModelError: for objects that are no Keras model, and for
        models the flavour's adapter cannot read (subclassed models).
    """
    flavour = flavour_of(model)
    if flavour is None:
        raise errors.UnsupportedModelError(
            "Expected a Keras model: a tf_keras (`import tf_keras`) or Keras 3 "
            "(`import keras`, or `tf.keras` in TensorFlow 2.16+) Sequential or Functional "
            f"model. Received: model of type {type(model).__module__}.{type(model).__name__}")
    return adapter_class(flavour)(model, input_signature)


def io_names(model):
    """`(input names, output names)` of a tf_keras or Keras 3 model.

    Raises:
      UnsupportedModelError: for objects that are no Keras model.
    """
    flavour = flavour_of(model)
    if flavour is None:
        raise errors.UnsupportedModelError(
            f"Expected a tf_keras or Keras 3 model. Received: {type(model).__name__}")
    return adapter_class(flavour).io_names(model)
