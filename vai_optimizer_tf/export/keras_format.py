"""`save_keras`: the slim model as a `.keras` (or legacy `.h5`) file."""

import json
import logging
import os

from vai_optimizer_tf.export import signature
from vai_optimizer_tf.graph import adapters
from vai_optimizer_tf.utils import atomic

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
logger = logging.getLogger("vai_optimizer_tf")


def save_keras(model, path, include_optimizer=False, sparse_ok=False, overwrite=True):
    """Saves a model as `.keras` (the Keras v3 zip) or `.h5` (HDF5).

    The slim model is a plain model of its Keras flavour, so the file reloads
    with `tf_keras.models.load_model(path)` (or `keras.models.load_model` for
    a Keras 3 model) and no `custom_objects` (unless the source model had
    custom layers of its own). A sparse model is saved too,
    with a warning: its channel masks are vai_optimizer_tf objects, so its
    file loads only where the library is imported. The format follows the
    suffix; `.h5` is for older pipelines that expect HDF5.

    The file is written atomically: to a temporary file next to `path`, then
    renamed, so a process killed while saving leaves the previous file (or
    the new one) intact, never a truncated one.

    Args:
      model: A tf_keras or Keras 3 model, typically `runner.get_slim_model(...)`.
      path: Destination file ending in `.keras`, `.h5` or `.hdf5`. Its folder
        is created if missing.
      include_optimizer: Also save the optimizer state of a compiled model.
        Defaults to `False`: a deployed model does not need it.
      sparse_ok: Save a sparse model without the warning, e.g. to fine-tune
        it in another process. Defaults to `False`.
      overwrite: Replace an existing file at `path`, as `model.save` does.
        With `False`, an existing file raises `FileExistsError` (where
        `model.save` would prompt). Defaults to `True`.

    Returns:
      `path`.

    Raises:
      ValueError: if `path` has another suffix.
      FileExistsError: if `overwrite=False` and `path` exists.
      UnsupportedModelError: if `model` is not a built Keras model.

    Example:

    ```python
    import tf_keras
    from vai_optimizer_tf import export

    model = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(2)])
    path = export.save_keras(model, "model.keras")
    same = tf_keras.models.load_model(path)
    ```
    """
    flavour = signature.check_model(model)
    path = os.fspath(path)
    if not path.lower().endswith(KERAS_SUFFIXES):
        raise ValueError(f"Invalid `path`: expected a file name ending in .keras, .h5 or "
                         f".hdf5. Received: path={path!r}")
    atomic.check_writable([path], overwrite)
    library_layers = [] if sparse_ok else _layers_using_the_library(model)
    if library_layers:
        logger.warning(
            "Model %r carries vai_optimizer_tf objects in layers %s (the channel masks of a "
            "sparse model), so %s loads only after `import vai_optimizer_tf`. For deployment, "
            "save the slim model: runner.get_slim_model(weights_from=sparse_model).",
            model.name, library_layers[:5], path)
    if path.lower().endswith(".keras") and not include_optimizer \
            and getattr(model, "optimizer", None) is not None:
        model = _without_optimizer(model, flavour)
    with atomic.atomic_path(path) as tmp:  # the temporary name keeps the suffix (the format)
        if path.lower().endswith(".keras"):
            model.save(tmp, overwrite=True)
        else:
            model.save(tmp, include_optimizer=include_optimizer, overwrite=True)
    return path


def _layers_using_the_library(model):
    """Names of layers whose config refers to a vai_optimizer_tf class."""
    return [layer.name for layer in model.layers
            if "vai_optimizer_tf" in json.dumps(layer.get_config(), default=str)]


def _without_optimizer(model, flavour):
    """An uncompiled copy sharing nothing with `model`; the .keras format has no flag for it."""
    clone = adapters.keras_module(flavour).models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone
