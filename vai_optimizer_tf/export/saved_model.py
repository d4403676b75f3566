"""`export_saved_model`: a SavedModel for TF Serving, with `serving_default`."""

import os

import tensorflow as tf

from vai_optimizer_tf.export import signature
from vai_optimizer_tf.utils import atomic

SERVING_KEY = tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY  # "serving_default"


def export_saved_model(model, export_dir, batch_size=None, input_signature=None,
                       print_fn=print, overwrite=True):
    """Writes a SavedModel whose `serving_default` signature calls the model.

    The signature takes one named tensor per model input (keyed by the Keras
    input name, e.g. `image`) and returns a dict with one tensor per model
    output (keyed by the output layer name, e.g. `logits`). Layers run in
    inference mode (BatchNormalization uses its moving statistics, Dropout is
    off). Check it the way TF Serving sees it:

        saved_model_cli show --dir EXPORT_DIR --tag_set serve \\
            --signature_def serving_default

    For a tf_keras model the folder is also a Keras SavedModel:
    `tf_keras.models.load_model` reads it back, and so does
    `vai_p_tf2 --model=EXPORT_DIR`. A Keras 3 model is written the way
    `model.export(path, format="tf_saved_model")` writes it (with
    `keras.export.ExportArchive`): the `serve` endpoint and the
    `serving_default` signature, named as above; Keras 3 reads no SavedModel
    back as a Keras model (keep the `.keras` file for that).

    The folder is written atomically: into a temporary folder next to
    `export_dir`, then renamed into place. An existing folder is replaced as
    a whole (on Linux in one atomic swap), so TF Serving or a killed process
    never sees a half-written model; see `vai_optimizer_tf.utils.atomic` for
    what a kill can leave behind elsewhere.

    Args:
      model: A tf_keras or Keras 3 model, typically the slim model.
      export_dir: The SavedModel folder to write (TF Serving expects it under
        a numeric version folder, e.g. `models/my_model/1`). An existing
        folder is replaced as a whole.
      batch_size: `None` for a batch-size-polymorphic signature (`-1` in
        `saved_model_cli`), or a fixed batch size. Defaults to `None`.
      input_signature: Optional `tf.TensorSpec` (or list, one per input) for
        inputs whose non-batch dimensions the model leaves undefined.
        Defaults to the model's own input shapes.
      print_fn: Where the signature summary goes; `None` is silent.
        Defaults to `print`.
      overwrite: Replace an existing `export_dir`, as `model.save` does.
        With `False`, an existing one raises `FileExistsError`. Defaults to
        `True`.

    Returns:
      The `ModelSignature` of `serving_default`.

    Raises:
      ValueError: for a bad `batch_size` or `input_signature`.
      FileExistsError: if `overwrite=False` and `export_dir` exists.
      UnsupportedModelError: if `model` is not a built Keras model.

    Example:

    ```python
    import tensorflow as tf
    import tf_keras
    from vai_optimizer_tf import export

    inputs = tf_keras.Input((4,), name="features")
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(2, name="scores")(inputs))
    sig = export.export_saved_model(model, "serving/1")
    serve = tf.saved_model.load("serving/1").signatures["serving_default"]
    print(serve(features=tf.ones((3, 4)))["scores"].shape)   # (3, 2)
    ```
    """
    flavour = signature.check_model(model)
    specs = signature.input_specs(model, batch_size, input_signature)
    names = signature.output_names(model)
    export_dir = os.fspath(export_dir)
    atomic.check_writable([export_dir], overwrite)
    function = signature.serving_function(model, specs)
    serve = function.get_concrete_function()
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")  # Keras warns about unbuilt compiled metrics while tracing
    try:
        with atomic.atomic_path(export_dir, directory=True) as tmp:
            if flavour == "keras3":
                write_keras3_saved_model(model, function, tmp)
            else:
                model.save(tmp, save_format="tf", include_optimizer=False, overwrite=True,
                           signatures={SERVING_KEY: serve})
    finally:
        logger.setLevel(level)
    sig = signature.signature_of(specs, serve, names)
    if print_fn is not None:
        print_fn(f"SavedModel written to {export_dir}; signature {SERVING_KEY!r}:\n"
                 f"{sig.describe()}")
    return sig


def write_keras3_saved_model(model, function, path):
    """Writes what `model.export(path, format="tf_saved_model")` writes, with our signature.

    `keras.export.ExportArchive`, the writer behind `model.export`, serves
    its first endpoint, `serve`, as `serving_default` too.

    Args:
      model: A Keras 3 model.
      function: Its serving `tf.function` (`signature.serving_function`).
      path: The folder to write.
    """
    import keras  # pylint: disable=import-outside-toplevel
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", function)
    archive.write_out(path, verbose=False)
