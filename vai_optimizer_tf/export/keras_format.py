"""`save_keras`: the slim model as a `.keras` (or legacy `.h5`) file."""

import os

import tf_keras

from vai_optimizer_tf.export import signature

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def save_keras(model, path, include_optimizer=False):
    """Saves a model as `.keras` (the Keras v3 zip) or `.h5` (HDF5).

    The slim model is a plain tf_keras model, so the file reloads with
    `tf_keras.models.load_model(path)` and no `custom_objects` (unless the
    source model had custom layers of its own). The format follows the
    suffix; `.h5` is for older pipelines that expect HDF5.

    Args:
      model: A tf_keras model, typically `runner.get_slim_model(...)`.
      path: Destination file ending in `.keras`, `.h5` or `.hdf5`. Its folder
        is created if missing; an existing file is replaced.
      include_optimizer: Also save the optimizer state of a compiled model.
        Defaults to `False`: a deployed model does not need it.

    Returns:
      `path`.

    Raises:
      ValueError: if `path` has another suffix.
      UnsupportedModelError: if `model` is not a built tf_keras model.

    Example:

    ```python
    import tf_keras
    from vai_optimizer_tf import export

    model = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(2)])
    path = export.save_keras(model, "model.keras")
    same = tf_keras.models.load_model(path)
    ```
    """
    signature.check_model(model)
    path = os.fspath(path)
    if not path.lower().endswith(KERAS_SUFFIXES):
        raise ValueError(f"Invalid `path`: expected a file name ending in .keras, .h5 or "
                         f".hdf5. Received: path={path!r}")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if path.lower().endswith(".keras"):
        if not include_optimizer and getattr(model, "optimizer", None) is not None:
            model = _without_optimizer(model)
        model.save(path, overwrite=True)
    else:
        model.save(path, include_optimizer=include_optimizer, overwrite=True)
    return path


def _without_optimizer(model):
    """An uncompiled copy sharing nothing with `model`; the .keras format has no flag for it."""
    clone = tf_keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone
