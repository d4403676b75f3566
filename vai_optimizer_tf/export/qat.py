"""`prepare_qat_model`: hands the slim model to TFMOT quantization-aware training.

The slim model is a plain tf_keras Functional or Sequential model, so
`tfmot.quantization.keras.quantize_model` accepts it as it is. The flow is:

    prune -> fine-tune the sparse model -> get_slim_model(weights_from=...)
    -> prepare_qat_model -> compile, fit a few epochs
    -> export_tflite(..., quantization="qat")

Quantization-aware training belongs on the slim model, not the sparse one:
the slim model is the architecture that will be deployed, and its smaller
layers train faster.

TFMOT wraps tf_keras layers only; it has no Keras 3 support. For a Keras 3
model `prepare_qat_model` refuses with the two ways out: prune the tf_keras
build of the model (the same code with `import tf_keras as keras`), or skip
QAT and export full-integer post-training quantization
(`export_tflite(..., quantization="int8")`). The slim Keras 3 model is not
converted to tf_keras behind the user's back: the two flavours' configs
differ (dtype policies, op layers, activations such as `hard_sigmoid`), so a
conversion could not promise the same outputs.
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
      UnsupportedModelError: if `model` is not a built tf_keras model (a
        Keras 3 model is refused with the tf_keras and int8 routes), or
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
    if signature.check_model(model) == "keras3":
        raise errors.UnsupportedModelError(
            f"Model {model.name!r} is a Keras 3 model, and TFMOT quantization-aware training "
            "needs a tf_keras model (TFMOT has no Keras 3 support). Either prune the tf_keras "
            "build of the model (`import tf_keras as keras`, or TF_USE_LEGACY_KERAS=1 for "
            "tf.keras code) and call prepare_qat_model on its slim model, or skip QAT and "
            "export full-integer post-training quantization: "
            "export.export_tflite(slim, 'model_int8.tflite', quantization='int8', "
            "representative_data=x_train[:500]).")
    # Imported here: importing TFMOT sets TF_USE_LEGACY_KERAS for the process.
    import tensorflow_model_optimization as tfmot  # pylint: disable=import-outside-toplevel
    try:
        return tfmot.quantization.keras.quantize_model(model)
    except (RuntimeError, ValueError) as e:
        raise errors.UnsupportedModelError(
            f"TFMOT cannot make model {model.name!r} quantization-aware: {e} "
            "Annotate the layer with a QuantizeConfig (tfmot.quantization.keras."
            "quantize_annotate_layer) and use quantize_apply, or replace it.") from e
