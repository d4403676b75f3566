"""`prepare_qat_model`: hands the slim model to TFMOT quantization-aware training.

The slim model is a plain tf_keras Functional or Sequential model, so
`tfmot.quantization.keras.quantize_model` accepts it as it is. The flow is:

    prune -> fine-tune the sparse model -> get_slim_model(weights_from=...)
    -> prepare_qat_model -> compile, fit a few epochs
    -> export_tflite(..., quantization="qat")

Quantization-aware training belongs on the slim model, not the sparse one:
the slim model is the architecture that will be deployed, and its smaller
layers train faster.
"""

from vai_optimizer_tf import errors
from vai_optimizer_tf.export import signature


def prepare_qat_model(model):
    """Returns a copy of `model` with TFMOT fake-quantization for QAT.

    A thin, checked call of `tfmot.quantization.keras.quantize_model` with
    TFMOT's default 8-bit scheme (per-channel weights, per-tensor
    activations), matching TFLite's int8 kernels. The result is uncompiled:
    compile it with your optimizer and loss and fine-tune for an epoch or
    two, then convert it with `export_tflite(..., quantization="qat")`.

    Args:
      model: A tf_keras model, typically `runner.get_slim_model(...)`.

    Returns:
      A new tf_keras model whose layers are wrapped in `QuantizeWrapperV2`.

    Raises:
      UnsupportedModelError: if `model` is not a built tf_keras model, or
        TFMOT's default scheme does not cover one of its layers (the message
        names it; annotate it with `tfmot.quantization.keras` yourself).

    Example:

    ```python
    import numpy as np
    import tf_keras
    from vai_optimizer_tf import export

    inputs = tf_keras.Input((8, 8, 1), name="image")
    x = tf_keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = tf_keras.layers.GlobalAveragePooling2D()(x)
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(2, name="logits")(x))

    qat = export.prepare_qat_model(model)
    qat.compile("adam", tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(np.random.rand(16, 8, 8, 1), np.random.randint(0, 2, 16), verbose=0)
    ```
    """
    signature.check_model(model)
    # Imported here: importing TFMOT sets TF_USE_LEGACY_KERAS for the process.
    import tensorflow_model_optimization as tfmot  # pylint: disable=import-outside-toplevel
    try:
        return tfmot.quantization.keras.quantize_model(model)
    except (RuntimeError, ValueError) as e:
        raise errors.UnsupportedModelError(
            f"TFMOT cannot make model {model.name!r} quantization-aware: {e} "
            "Annotate the layer with a QuantizeConfig (tfmot.quantization.keras."
            "quantize_annotate_layer) and use quantize_apply, or replace it.") from e
