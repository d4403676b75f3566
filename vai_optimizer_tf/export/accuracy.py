"""`compare`: one metric for the Keras model and each of its exported forms."""

import math
import numbers

import numpy as np


def top1_accuracy(model, x, y, batch_size=256):
    """Top-1 accuracy of a Keras model or `TFLiteModel` on `(x, y)`.

    Args:
      model: Anything with `predict(x, batch_size=..., verbose=0)`.
      x: Inputs.
      y: Integer class labels `(N,)`, or one-hot labels `(N, classes)`.
      batch_size: Rows per call. Defaults to `256`.

    Returns:
      The fraction of rows whose highest-scoring class is the label.

    Example:

    ```python
    import numpy as np
    import tf_keras
    from vai_optimizer_tf import export

    model = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(3)])
    x = np.random.rand(10, 4).astype("float32")
    y = np.argmax(model.predict(x, verbose=0), axis=-1)
    print(export.top1_accuracy(model, x, y))   # 1.0
    ```
    """
    y = np.asarray(y)
    if y.ndim > 1 and y.shape[-1] > 1:
        y = np.argmax(y, axis=-1)
    predictions = np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    return float(np.mean(np.argmax(predictions, axis=-1) == y.reshape(-1)))


def _check_value(label, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        raise ValueError(f"Invalid `eval_fn`: expected it to return one number. Received "
                         f"{value!r} for the {label} model.")
    return float(value)


def compare(models, eval_fn=None, validation_data=None, print_fn=print):
    """Scores several forms of one model and prints the values side by side.

    Args:
      models: Label -> model, in print order; the first one is the reference
        (typically `{"keras": slim, "tflite int8": TFLiteModel(...)}`).
      eval_fn: Optional `fn(model) -> float`. It receives each model in turn
        and must only call `m(x)` or `m.predict(x)`. Defaults to `None`.
      validation_data: Optional `(x, y)` with class labels; top-1 accuracy.
        Used when `eval_fn` is `None`. Defaults to `None`.
      print_fn: Where the table goes; `None` is silent. Defaults to `print`.

    Returns:
      Label -> value.

    Raises:
      ValueError: if neither `eval_fn` nor `validation_data` is given, or
        `eval_fn` returns something other than one number.

    Example:

    ```python
    import numpy as np
    import tf_keras
    from vai_optimizer_tf import export

    model = tf_keras.Sequential([tf_keras.Input((4,), name="features"),
                                 tf_keras.layers.Dense(3, name="scores")])
    x = np.random.rand(32, 4).astype("float32")
    y = np.argmax(model.predict(x, verbose=0), axis=-1)
    lite = export.TFLiteModel(export.convert_to_tflite(model))
    values = export.compare({"keras": model, "tflite float": lite}, validation_data=(x, y))
    ```
    """
    if eval_fn is None and validation_data is None:
        raise ValueError("Pass `eval_fn` or `validation_data` to compare models. "
                         "Received: eval_fn=None, validation_data=None")
    if eval_fn is None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError(f"Invalid `validation_data`: expected a pair (x, y). "
                             f"Received: validation_data={type(validation_data).__name__}")
        x, y = validation_data
        metric = "top-1 accuracy"
        values = {label: top1_accuracy(m, x, y) for label, m in models.items()}
    else:
        metric = getattr(eval_fn, "__name__", "eval_fn")
        values = {label: _check_value(label, eval_fn(m)) for label, m in models.items()}
    if print_fn is not None:
        first, reference = next(iter(values.items()))
        width = max(len(label) for label in values)
        lines = [f"{metric}:"]
        for i, (label, value) in enumerate(values.items()):
            delta = f"  ({value - reference:+.4f} vs {first})" if i else ""
            lines.append(f"  {label:<{width}}  {value:.4f}{delta}")
        print_fn("\n".join(lines))
    return values
