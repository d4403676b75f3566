"""`export_model`: several deployment formats in one call (what `vai_p_tf2` uses)."""

import os

from vai_optimizer_tf.export import accuracy
from vai_optimizer_tf.export.frozen_graph import export_frozen_graph
from vai_optimizer_tf.export.keras_format import save_keras
from vai_optimizer_tf.export.saved_model import export_saved_model
from vai_optimizer_tf.export.tflite import convert_to_tflite
from vai_optimizer_tf.export.tflite_model import TFLiteModel
from vai_optimizer_tf.utils import atomic

FORMATS = ("keras", "h5", "saved_model", "frozen_graph", "pbtxt", "tflite", "tflite_int8")
# What each format writes, after the stem `<output_dir>/<name>`.
_WRITTEN = {"keras": (".keras",), "h5": (".h5",), "saved_model": ("_saved_model",),
            "frozen_graph": (".pb",), "pbtxt": (".pb", ".pbtxt"), "tflite": (".tflite",),
            "tflite_int8": ("_int8.tflite",)}


def check_formats(formats):
    """Validates a list (or comma-separated string) of format names.

    Args:
      formats: Names from `FORMATS`.

    Returns:
      The names as a list, without duplicates, in the given order.

    Raises:
      ValueError: for an empty list or an unknown name.

    Example:

    ```python
    from vai_optimizer_tf import export

    print(export.check_formats("keras,tflite,keras"))   # ['keras', 'tflite']
    ```
    """
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    formats = list(dict.fromkeys(formats or []))
    if not formats:
        raise ValueError(f"Invalid `formats`: expected at least one of {FORMATS}. "
                         f"Received: formats={formats!r}")
    for name in formats:
        if name not in FORMATS:
            raise ValueError(f"Invalid `formats`: expected names from {FORMATS}. "
                             f"Received: formats={formats!r}")
    return formats


def output_paths(output_dir, formats, name):
    """Every file or folder `export_model` writes for these formats.

    Args:
      output_dir: The export folder.
      formats: Names from `FORMATS`, or a comma-separated string.
      name: The file stem.

    Returns:
      The paths, in format order, without duplicates.

    Raises:
      ValueError: for an unknown format.

    Example:

    ```python
    from vai_optimizer_tf import export

    print(export.output_paths("deploy", "keras,pbtxt", "tiny"))
    # ['deploy/tiny.keras', 'deploy/tiny.pb', 'deploy/tiny.pbtxt']
    ```
    """
    stem = os.path.join(os.fspath(output_dir), name)
    paths = [stem + suffix for fmt in check_formats(formats) for suffix in _WRITTEN[fmt]]
    return list(dict.fromkeys(paths))


def export_model(model, output_dir, formats=("keras", "saved_model"), name=None,
                 batch_size=None, input_signature=None, representative_data=None,
                 eval_fn=None, validation_data=None, print_fn=print, overwrite=True):
    """Writes `model` in each of `formats` under `output_dir`.

    | format         | written                               |
    |----------------|---------------------------------------|
    | `keras`        | `<name>.keras`                        |
    | `h5`           | `<name>.h5`                           |
    | `saved_model`  | `<name>_saved_model/` (TF Serving)    |
    | `frozen_graph` | `<name>.pb`                           |
    | `pbtxt`        | `<name>.pb` and `<name>.pbtxt`        |
    | `tflite`       | `<name>.tflite` (float32)             |
    | `tflite_int8`  | `<name>_int8.tflite` (full integer)   |

    When `eval_fn` or `validation_data` is given and a TFLite format is
    written, the Keras model and every TFLite model are scored side by side.

    Each file and folder is written atomically (temporary path, then
    rename). Existing ones are replaced, as `model.save` does; with
    `overwrite=False`, every path is checked before anything is written, and
    the first existing one raises `FileExistsError`. The slim model keeps
    the original model's name, so exporting `keras` next to the original
    `<name>.keras` would replace it: pass `overwrite=False` (what `vai_p_tf2`
    does unless `--overwrite`), or another `name` or `output_dir`.

    Args:
      model: A tf_keras or Keras 3 model, typically the slim model.
      output_dir: Folder for the files; created if missing.
      formats: Names from `FORMATS`, or a comma-separated string. Defaults to
        `("keras", "saved_model")`.
      name: File stem. Defaults to the model's name.
      batch_size: Fixed batch size of the SavedModel signature and frozen
        graph; `None` keeps it open. Defaults to `None`.
      input_signature: Optional `tf.TensorSpec` (or list) for undefined input
        dimensions. Defaults to the model's own input shapes.
      representative_data: Calibration inputs, required for `tflite_int8`.
        Defaults to `None`.
      eval_fn: Optional `fn(model) -> float`; see `export_tflite`. Defaults to
        `None`.
      validation_data: Optional `(x, y)` for top-1 accuracy. Defaults to
        `None`.
      print_fn: Where the report goes; `None` is silent. Defaults to `print`.
      overwrite: Replace existing files and folders. Defaults to `True`, as
        in `model.save`.

    Returns:
      Format name -> written path, plus `"metrics"` -> label -> value when the
      models were scored.

    Raises:
      ValueError: for an unknown format, or `tflite_int8` without
        `representative_data`.
      FileExistsError: if `overwrite=False` and a path to write exists (its
        `filename` attribute names it); nothing is written then.

    Example:

    ```python
    import tf_keras
    from vai_optimizer_tf import export

    model = tf_keras.Sequential([tf_keras.Input((4,), name="features"),
                                 tf_keras.layers.Dense(2, name="scores")], name="tiny")
    paths = export.export_model(model, "deploy", formats="keras,frozen_graph,tflite")
    print(sorted(paths))   # ['frozen_graph', 'keras', 'tflite']
    ```
    """
    formats = check_formats(formats)
    if "tflite_int8" in formats and representative_data is None:
        raise ValueError("Invalid `representative_data`: format 'tflite_int8' needs calibration "
                         "inputs. Received: representative_data=None")
    output_dir = os.fspath(output_dir)
    name = name or model.name
    atomic.check_writable(output_paths(output_dir, formats, name), overwrite)
    os.makedirs(output_dir, exist_ok=True)
    stem = os.path.join(output_dir, name)
    paths = {}
    if "keras" in formats:
        paths["keras"] = save_keras(model, stem + ".keras")
    if "h5" in formats:
        paths["h5"] = save_keras(model, stem + ".h5")
    if "saved_model" in formats:
        export_saved_model(model, stem + "_saved_model", batch_size, input_signature,
                           print_fn=print_fn)
        paths["saved_model"] = stem + "_saved_model"
    if "frozen_graph" in formats or "pbtxt" in formats:
        frozen = export_frozen_graph(model, stem + ".pb", as_text="pbtxt" in formats,
                                     batch_size=batch_size, input_signature=input_signature,
                                     print_fn=print_fn)
        if "frozen_graph" in formats:
            paths["frozen_graph"] = frozen.path
        if "pbtxt" in formats:
            paths["pbtxt"] = frozen.text_path
    lite = {}
    for fmt, quantization, path in (("tflite", "float", stem + ".tflite"),
                                    ("tflite_int8", "int8", stem + "_int8.tflite")):
        if fmt not in formats:
            continue
        content = convert_to_tflite(model, quantization, representative_data,
                                    input_signature=input_signature)
        atomic.write_bytes_atomic(path, content)
        paths[fmt] = path
        lite[f"tflite {quantization}"] = TFLiteModel(content)
        if print_fn is not None:
            print_fn(f"TFLite ({quantization}) written to {path}: {len(content) / 1024:.1f} KB")
    if lite and (eval_fn is not None or validation_data is not None):
        paths["metrics"] = accuracy.compare({"keras": model, **lite}, eval_fn=eval_fn,
                                            validation_data=validation_data, print_fn=print_fn)
    return paths
