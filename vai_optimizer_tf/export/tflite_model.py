"""`TFLiteModel`: a TFLite flatbuffer called like a Keras model.

It lets one `eval_fn` score the Keras model and its TFLite conversions alike
(`m(x)` or `m.predict(x)`), and lets the benchmarks time the interpreter.
Full-integer models take and return int8; `TFLiteModel` quantizes float
inputs and dequantizes outputs with the scales stored in the model, so the
caller always works in float.
"""

import os
import warnings

import numpy as np
import tensorflow as tf


def _interpreter_class():
    """The LiteRT interpreter when installed, else TensorFlow's (deprecated) one."""
    try:
        # pylint: disable-next=import-outside-toplevel
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter
    except ImportError:
        return tf.lite.Interpreter


class TFLiteModel:
    """Runs a TFLite model through its `serving_default` signature.

    Args:
      model: The flatbuffer as `bytes`, or the path of a `.tflite` file.
      num_threads: Interpreter threads. Defaults to `None` (the runtime's
        choice).

    Raises:
      ValueError: if `model` is neither bytes nor an existing file, or has no
        signature.

    Example:

    ```python
    import numpy as np
    import tf_keras
    from vai_optimizer_tf import export

    inputs = tf_keras.Input((4,), name="features")
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(2, name="scores")(inputs))
    lite = export.TFLiteModel(export.convert_to_tflite(model))
    x = np.ones((3, 4), "float32")
    print(np.abs(lite(x) - model.predict(x, verbose=0)).max())   # ~1e-7
    ```
    """

    def __init__(self, model, num_threads=None):
        if isinstance(model, (str, os.PathLike)):
            if not os.path.isfile(model):
                raise ValueError(f"Invalid `model`: no TFLite file at {os.fspath(model)!r}. "
                                 f"Received: model={model!r}")
            with open(model, "rb") as f:
                model = f.read()
        if not isinstance(model, (bytes, bytearray)):
            raise ValueError(f"Invalid `model`: expected TFLite flatbuffer bytes or a .tflite "
                             f"path. Received: model={type(model).__name__}")
        self.model_content = bytes(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
            self.interpreter = _interpreter_class()(model_content=self.model_content,
                                                    num_threads=num_threads)
        signatures = self.interpreter.get_signature_list()
        if not signatures:
            raise ValueError("Invalid `model`: the TFLite model has no signature; convert it "
                             "with vai_optimizer_tf.export.convert_to_tflite.")
        self.signature_key = ("serving_default" if "serving_default" in signatures
                              else next(iter(signatures)))
        self._runner = self.interpreter.get_signature_runner(self.signature_key)
        self.input_details = self._runner.get_input_details()
        self.output_details = self._runner.get_output_details()
        self.input_names = list(signatures[self.signature_key]["inputs"])
        self.output_names = list(signatures[self.signature_key]["outputs"])

    @property
    def is_integer(self):
        """Whether the model takes integer (quantized) inputs."""
        return any(np.issubdtype(d["dtype"], np.integer) for d in self.input_details.values())

    @staticmethod
    def _quantize(x, detail):
        dtype = detail["dtype"]
        scale, zero_point = detail["quantization"]
        x = np.asarray(x)
        if not np.issubdtype(dtype, np.integer) or scale == 0:
            return x.astype(dtype)
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)

    @staticmethod
    def _dequantize(y, detail):
        scale, zero_point = detail["quantization"]
        if not np.issubdtype(y.dtype, np.integer) or scale == 0:
            return y
        return (y.astype(np.float32) - zero_point) * scale

    def __call__(self, inputs):
        """Runs one batch.

        Args:
          inputs: An array (single-input models), a list of arrays in input
            order, or a dict input name -> array.

        Returns:
          A float array (single-output models), else a list in output order.
        """
        if isinstance(inputs, dict):
            feeds = dict(inputs)
        else:
            arrays = inputs if isinstance(inputs, (list, tuple)) else [inputs]
            if len(arrays) != len(self.input_names):
                raise ValueError(f"Invalid `inputs`: expected {len(self.input_names)} arrays "
                                 f"({self.input_names}). Received: {len(arrays)}")
            feeds = dict(zip(self.input_names, arrays))
        feeds = {name: self._quantize(value, self.input_details[name])
                 for name, value in feeds.items()}
        results = self._runner(**feeds)
        outputs = [self._dequantize(results[name], self.output_details[name])
                   for name in self.output_names]
        return outputs[0] if len(outputs) == 1 else outputs

    def predict(self, x, batch_size=32, verbose=0):
        """Runs `x` in batches of `batch_size`, like `keras.Model.predict`.

        Args:
          x: An array, or a list of arrays for several inputs.
          batch_size: Rows per interpreter call. Defaults to `32`.
          verbose: Ignored; accepted for `keras.Model.predict` compatibility.

        Returns:
          The concatenated outputs.
        """
        del verbose
        arrays = x if isinstance(x, (list, tuple)) else [x]
        n = len(arrays[0])
        chunks = [self([a[i:i + batch_size] for a in arrays]) for i in range(0, n, batch_size)]
        if chunks and isinstance(chunks[0], list):
            return [np.concatenate(parts) for parts in zip(*chunks)]
        return np.concatenate(chunks) if chunks else np.zeros((0,))
