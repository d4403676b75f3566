"""Picks the adapter that reads a model, by the model's Keras flavour."""

from vai_optimizer_tf.graph.tf_keras_adapter import TfKerasAdapter


def adapter_for(model, input_signature=None):
    """The adapter for `model`.

    Args:
      model: A Keras model.
      input_signature: Optional input specs (see `TfKerasAdapter`).

    Returns:
      An adapter instance.

    Raises:
      UnsupportedModelError: for models no adapter reads.
    """
    return TfKerasAdapter(model, input_signature)
