"""TFLite conversion: float, full-integer INT8 (post-training) and QAT models."""

import dataclasses
import os
import tempfile
from typing import Dict

import numpy as np
import tensorflow as tf

from vai_optimizer_tf.export import accuracy, saved_model, signature
from vai_optimizer_tf.export.tflite_model import TFLiteModel
from vai_optimizer_tf.utils import atomic

QUANTIZATIONS = ("float", "int8", "qat")


@dataclasses.dataclass(frozen=True)
class TFLiteExport:
    """What `export_tflite` wrote.

    Attributes:
      path: The `.tflite` file.
      quantization: `"float"`, `"int8"` or `"qat"`.
      size_bytes: The file size.
      metrics: Label -> metric value (`"keras"` and `"tflite <quantization>"`)
        when an `eval_fn` or `validation_data` was given, else empty.
    """

    path: str
    quantization: str
    size_bytes: int
    metrics: Dict[str, float]


def _check_quantization(quantization):
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"Invalid `quantization`: expected one of {QUANTIZATIONS}. "
                         f"Received: quantization={quantization!r}")
    return quantization


def representative_dataset(data, num_samples=100):
    """The generator function a TFLite converter calls for calibration.

    Args:
      data: Calibration inputs: an array `(N, ...)` for a single-input model,
        a list or tuple of arrays (one per input), a `tf.data.Dataset` of
        input batches, or a callable returning an iterable of input lists
        (the TFLite form, used as is).
      num_samples: How many single examples to use at most. Defaults to `100`.

    Returns:
      A callable yielding lists of float32 arrays with batch size 1.

    Raises:
      ValueError: for data of another kind or with no examples.

    Example:

    ```python
    import numpy as np
    from vai_optimizer_tf import export

    generate = export.representative_dataset(np.zeros((500, 28, 28, 1)), num_samples=10)
    print(sum(1 for _ in generate()))   # 10 single-example batches
    ```
    """
    if callable(data) and not isinstance(data, tf.data.Dataset):
        return data
    if isinstance(data, tf.data.Dataset):
        def from_dataset():
            count = 0
            for batch in data:
                parts = [np.asarray(t) for t in tf.nest.flatten(batch)]
                for i in range(len(parts[0])):
                    if count >= num_samples:
                        return
                    count += 1
                    yield [p[i:i + 1].astype(np.float32) for p in parts]
        return from_dataset
    arrays = list(data) if isinstance(data, (list, tuple)) else [data]
    arrays = [np.asarray(a) for a in arrays]
    if not arrays or arrays[0].ndim == 0 or len(arrays[0]) == 0:
        raise ValueError("Invalid `representative_data`: expected at least one example "
                         f"(an array of shape (N, ...)). Received: {type(data).__name__}")

    def from_arrays():
        for i in range(min(num_samples, len(arrays[0]))):
            yield [a[i:i + 1].astype(np.float32) for a in arrays]
    return from_arrays


def convert_to_tflite(model, quantization="float", representative_data=None,
                      num_calibration_samples=100, input_signature=None, sparse_weights=False):
    """Converts a tf_keras or Keras 3 model to a TFLite flatbuffer.

    * `"float"`: float32 weights and activations.
    * `"int8"`: full-integer post-training quantization. Weights and
      activations are int8, and so are the model's inputs and outputs
      (`TFLiteModel` converts for you). Activation ranges are calibrated on
      `representative_data`, which is required.
    * `"qat"`: a quantization-aware model from `prepare_qat_model` (or
      `tfmot.quantization.keras.quantize_model`) becomes a full-integer model
      using the ranges it learned; no calibration data is needed.

    The TFLite signature `serving_default` names inputs and outputs as the
    Keras model does.

    Args:
      model: A tf_keras or Keras 3 model.
      quantization: `"float"`, `"int8"` or `"qat"`. Defaults to `"float"`.
      representative_data: Calibration inputs for `"int8"`; see
        `representative_dataset` for the accepted forms. Defaults to `None`.
      num_calibration_samples: Examples used for calibration at most.
        Defaults to `100`.
      input_signature: Optional `tf.TensorSpec` (or list) for undefined
        input dimensions. Defaults to the model's own input shapes.
      sparse_weights: Also store sparse weights (such as N:M kernels) as
        their non-zero values plus indices,
        `tf.lite.Optimize.EXPERIMENTAL_SPARSITY`. Defaults to `False`.

    Returns:
      The flatbuffer, as `bytes`.

    Raises:
      ValueError: for an unknown `quantization`, or `"int8"` without
        `representative_data`.

    Example:

    ```python
    import tf_keras
    from vai_optimizer_tf import export

    model = tf_keras.Sequential([tf_keras.Input((4,), name="features"),
                                 tf_keras.layers.Dense(2, name="scores")])
    flatbuffer = export.convert_to_tflite(model)   # bytes, ready for a .tflite file
    ```
    """
    _check_quantization(quantization)
    if quantization == "int8" and representative_data is None:
        raise ValueError("Invalid `representative_data`: full-integer int8 quantization needs "
                         "calibration inputs, e.g. a few hundred training images. "
                         "Received: representative_data=None")
    flavour = signature.check_model(model)
    specs = signature.input_specs(model, None, input_signature)
    function = signature.serving_function(model, specs)
    if flavour == "keras3":
        # The converter cannot track a Keras 3 model's variables itself; from the
        # SavedModel that `model.export` writes, it reads them and the signature.
        with tempfile.TemporaryDirectory() as folder:
            saved_model.write_keras3_saved_model(model, function, folder)
            return _convert(tf.lite.TFLiteConverter.from_saved_model(
                folder, signature_keys=[saved_model.SERVING_KEY]), quantization,
                representative_data, num_calibration_samples, sparse_weights)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], model)
    return _convert(converter, quantization, representative_data, num_calibration_samples,
                    sparse_weights)


def _convert(converter, quantization, representative_data, num_calibration_samples,
             sparse_weights):
    """Sets `converter` up for `quantization` (and sparse weights) and converts."""
    optimizations = []
    if quantization in ("int8", "qat"):
        optimizations.append(tf.lite.Optimize.DEFAULT)
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    if sparse_weights:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    if optimizations:
        converter.optimizations = optimizations
    if quantization == "int8":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.representative_dataset = representative_dataset(representative_data,
                                                                   num_calibration_samples)
    return converter.convert()


def export_tflite(model, path, quantization="float", representative_data=None,
                  num_calibration_samples=100, input_signature=None, eval_fn=None,
                  validation_data=None, print_fn=print, overwrite=True):
    """Converts a model to TFLite, writes it, and reports its accuracy.

    When `eval_fn` or `validation_data` is given, the Keras model and the
    TFLite model are both scored and the two values are printed side by
    side, so the cost of conversion and quantization is visible.

    Args:
      model: A tf_keras or Keras 3 model, typically the slim model (or its QAT version
        for `quantization="qat"`).
      path: Destination file, ending in `.tflite`.
      quantization: `"float"`, `"int8"` or `"qat"`; see `convert_to_tflite`.
        Defaults to `"float"`.
      representative_data: Calibration inputs, required for `"int8"`.
        Defaults to `None`.
      num_calibration_samples: Examples used for calibration at most.
        Defaults to `100`.
      input_signature: Optional `tf.TensorSpec` (or list) for undefined
        input dimensions. Defaults to the model's own input shapes.
      eval_fn: Optional `fn(model) -> float`, called with the Keras model and
        with a `TFLiteModel`; it must only call `m(x)` or `m.predict(x)`.
        Defaults to `None`.
      validation_data: Optional `(x, y)` with integer (or one-hot) class
        labels; top-1 accuracy is reported. Defaults to `None`.
      print_fn: Where the report goes; `None` is silent. Defaults to `print`.
      overwrite: Replace an existing file at `path`, as `model.save` does.
        With `False`, an existing file raises `FileExistsError`. Defaults to
        `True`.

    Returns:
      A `TFLiteExport`.

    Raises:
      ValueError: for a `path` not ending in `.tflite`, an unknown
        `quantization`, or `"int8"` without `representative_data`.
      FileExistsError: if `overwrite=False` and `path` exists.

    Example:

    ```python
    import numpy as np
    import tf_keras
    from vai_optimizer_tf import export

    inputs = tf_keras.Input((4,), name="features")
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(3, name="scores")(inputs))
    x = np.random.rand(64, 4).astype("float32")
    y = np.argmax(model.predict(x, verbose=0), axis=-1)
    result = export.export_tflite(model, "model_int8.tflite", quantization="int8",
                                  representative_data=x, validation_data=(x, y))
    print(result.metrics)   # {'keras': 1.0, 'tflite int8': 0.98...}
    ```
    """
    path = os.fspath(path)
    if not path.endswith(".tflite"):
        raise ValueError(f"Invalid `path`: expected a file name ending in .tflite. "
                         f"Received: path={path!r}")
    atomic.check_writable([path], overwrite)
    content = convert_to_tflite(model, quantization, representative_data,
                                num_calibration_samples, input_signature)
    atomic.write_bytes_atomic(path, content)
    metrics = {}
    if eval_fn is not None or validation_data is not None:
        metrics = accuracy.compare({"keras": model,
                                    f"tflite {quantization}": TFLiteModel(content)},
                                   eval_fn=eval_fn, validation_data=validation_data,
                                   print_fn=print_fn)
    if print_fn is not None:
        print_fn(f"TFLite ({quantization}) written to {path}: {len(content) / 1024:.1f} KB")
    return TFLiteExport(path, quantization, len(content), metrics)

