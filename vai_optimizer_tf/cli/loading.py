"""What `vai_p_tf2` reads: models, user functions, input shapes, example data.

Every failure raises `CliError` (exit status 1) or, for a command line that is
wrong in itself, `UsageError` (exit status 2), with one line that says what is
wrong and how to fix it.
"""

import importlib
import importlib.util
import json
import math
import numbers
import os
import re
import sys
import zipfile

import numpy as np

_MAX_DETAIL = 300  # characters of a library error quoted in a one-line message
# Keras' messages for a class it cannot find, in the .h5 and the .keras loaders:
# (pattern, kind); a pattern without a `kind` group uses the given kind.
_UNKNOWN_OBJECT = (
    (re.compile(r"Unknown (?P<kind>\w+(?: \w+)?): '?(?P<name>[\w.>]+)'?"), None),
    (re.compile(r"Could not locate (?P<kind>class|function) '(?P<name>[\w.>]+)'"), None),
    (re.compile(r"Cannot deserialize object of type `(?P<name>[\w.>]+)`"), "class"),
)


class CliError(Exception):
    """A user error: the message is printed as one line, without traceback.

    Attributes:
      status: The exit status, 1.
    """

    status = 1


class UsageError(CliError):
    """The command line itself is wrong (a missing or malformed flag): exit status 2."""

    status = 2


def saved_flavour(path):
    """Which Keras flavour wrote the model at `path`: `"tf_keras"` or `"keras3"`.

    `.keras` files name the Keras version that wrote them in
    `metadata.json`, `.h5` files in their `keras_version` attribute (3.x is
    Keras 3, 2.x tf_keras). Only tf_keras writes SavedModel folders that
    hold a Keras model (`keras_metadata.pb`).

    Args:
      path: An existing `.keras`/`.h5` file or SavedModel folder.

    Returns:
      `"tf_keras"` or `"keras3"`.

    Raises:
      CliError: for a SavedModel without a Keras model in it, or a file that
        names no Keras version.
    """
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "keras_metadata.pb")):
            return "tf_keras"
        raise CliError(f"--model: {path!r} is a SavedModel for serving (no keras_metadata.pb, "
                       "as Keras 3's model.export writes it), which holds no Keras model; pass "
                       "the model's .keras file.")
    try:
        if path.lower().endswith(".keras"):
            with zipfile.ZipFile(path) as archive:
                version = json.loads(archive.read("metadata.json"))["keras_version"]
        else:
            import h5py  # pylint: disable=import-outside-toplevel
            with h5py.File(path, "r") as archive:
                version = archive.attrs["keras_version"]
    except Exception as e:  # a truncated or foreign file fails in many ways
        raise CliError(f"--model: cannot load {path!r}: cannot read which Keras wrote it "
                       f"({type(e).__name__}: {one_line(e)}). Pass a .keras or .h5 file "
                       "saved by Keras.") from e
    major = (version.decode() if isinstance(version, bytes) else str(version)).split(".")[0]
    return "keras3" if major.isdigit() and int(major) >= 3 else "tf_keras"


def load_model(path):
    """Loads a .keras/.h5 file or a Keras SavedModel folder with the Keras that wrote it.

    A file written by Keras 3 (`import keras`, or `tf.keras` in TensorFlow
    2.16+) is loaded with Keras 3, one written by tf_keras with tf_keras
    (see `saved_flavour`).

    Args:
      path: The model path.

    Returns:
      The model (compiled when it was saved compiled).

    Raises:
      CliError: if the path is missing or is not a loadable Keras model.
    """
    if not path:
        raise UsageError("--model is required: a .keras or .h5 file, or a Keras SavedModel "
                         "folder.")
    if not os.path.exists(path):
        raise CliError(f"--model: no such file or folder: {path!r}")
    is_saved_model = os.path.isdir(path)
    if is_saved_model and not os.path.exists(os.path.join(path, "saved_model.pb")):
        raise CliError(f"--model: folder {path!r} is not a SavedModel (no saved_model.pb).")
    if not is_saved_model and not path.lower().endswith((".keras", ".h5", ".hdf5")):
        raise CliError(f"--model: {path!r} is neither a .keras/.h5 file nor a SavedModel "
                       "folder.")
    flavour = saved_flavour(path)
    from vai_optimizer_tf.graph import adapters  # pylint: disable=import-outside-toplevel
    keras = adapters.keras_module(flavour)
    try:
        model = keras.models.load_model(path)
    except Exception as e:  # Keras raises many types for a bad file; all mean "unloadable".
        raise CliError(_load_failure(path, e, flavour)) from e
    if not isinstance(model, keras.Model) or not getattr(model, "inputs", None):
        raise CliError(f"--model: {path!r} loaded as {type(model).__name__}, not a Functional "
                       f"or Sequential {_FLAVOUR_NAMES[flavour]} model.")
    return model


_FLAVOUR_NAMES = {"tf_keras": "tf_keras", "keras3": "Keras 3"}


def _load_failure(path, error, flavour="tf_keras"):
    """One short line for a model that does not load (Keras quotes whole configs)."""
    text = one_line(error)
    for pattern, kind in _UNKNOWN_OBJECT:
        match = pattern.search(text)
        if match:
            kind = (kind or match.group("kind")).lower()
            return (f"--model: cannot load {path!r}: Keras does not know the custom {kind} "
                    f"{match.group('name')!r}. Register it with "
                    f"keras.saving.register_keras_serializable in a module you pass as --eval_fn "
                    f"or --train_fn (they are imported before the model).")
    for marker in (" using config=", " Full object config:", " config={"):
        text = text.split(marker)[0]
    if len(text) > _MAX_DETAIL:
        text = text[:_MAX_DETAIL - 3] + "..."
    return (f"--model: cannot load {path!r} as a {_FLAVOUR_NAMES[flavour]} model: "
            f"{type(error).__name__}: {text}")


def one_line(error):
    """An exception's message on one line."""
    return " ".join(str(error).split())


def parse_callable(spec, flag):
    """Splits a `module:function` or `path/to/file.py:function` flag value.

    Args:
      spec: The flag value.
      flag: The flag name, for messages.

    Returns:
      `(module_name, attribute)`.

    Raises:
      UsageError: for a value without both parts.
    """
    module_name, sep, attribute = (spec or "").rpartition(":")
    if not sep or not module_name or not attribute:
        raise UsageError(f"--{flag}: expected module:function or path/to/file.py:function. "
                         f"Received: {spec!r}")
    return module_name, attribute


def load_callable(spec, flag):
    """Imports `module:function` or `path/to/file.py:function`.

    The current folder is searched first, as `python script.py` would.

    Args:
      spec: The flag value.
      flag: The flag name, for messages.

    Returns:
      The callable.

    Raises:
      UsageError: for a malformed value.
      CliError: for an import error, or a missing or non-callable attribute.
    """
    module_name, attribute = parse_callable(spec, flag)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        if module_name.endswith(".py"):
            if not os.path.isfile(module_name):
                raise CliError(f"--{flag}: no such file: {module_name!r}")
            name = "vai_p_tf2_user_" + os.path.splitext(os.path.basename(module_name))[0]
            file_spec = importlib.util.spec_from_file_location(name, module_name)
            module = importlib.util.module_from_spec(file_spec)
            sys.modules[name] = module
            file_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except CliError:
        raise
    except Exception as e:  # the user's module may raise anything while importing
        raise CliError(f"--{flag}: cannot import {module_name!r}: {type(e).__name__}: "
                       f"{one_line(e)}") from e
    function = getattr(module, attribute, None)
    if function is None:
        raise CliError(f"--{flag}: module {module_name!r} has no attribute {attribute!r}.")
    if not callable(function):
        raise CliError(f"--{flag}: {spec!r} is a {type(function).__name__}, not a function.")
    return function


def checked_metric(function, flag):
    """Wraps an eval_fn so that a non-number result is a one-line `CliError`."""

    def eval_fn(model):
        value = function(model)
        if hasattr(value, "numpy"):
            value = value.numpy()
        if isinstance(value, np.ndarray) and value.size == 1:
            value = value.reshape(()).item()
        if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                or not math.isfinite(value):
            raise CliError(f"--{flag}: {getattr(function, '__name__', 'eval_fn')} returned "
                           f"{value!r} ({type(value).__name__}); it must return one finite "
                           "number, e.g. the validation accuracy.")
        return float(value)

    eval_fn.__name__ = getattr(function, "__name__", "eval_fn")
    return eval_fn


def parse_input_shape(text):
    """`"1,224,224,3"` -> `[1, 224, 224, 3]`; `?`, `None` or `-1` give `None` (any size).

    Raises:
      UsageError: for anything but comma-separated positive integers and `?`.
    """
    dims = []
    for part in text.replace(" ", "").split(","):
        if part in ("?", "None", "-1"):
            dims.append(None)
        elif part.isdigit() and int(part) > 0:
            dims.append(int(part))
        else:
            raise UsageError(f"--input_shape: expected comma-separated positive integers "
                             f"(? for any), e.g. 1,224,224,3. Received: {text!r}")
    return dims


def input_signature(shapes, model=None):
    """`tf.TensorSpec`s from `--input_shape` values, or `None` when none are given.

    Args:
      shapes: Strings like `"1,224,224,3"`; `?` or `None` leave a dimension open.
      model: Optional model whose input count and dtypes are used.

    Returns:
      A list of `tf.TensorSpec`, or `None`.

    Raises:
      UsageError: for a malformed shape.
      CliError: for a count that differs from the model's inputs.
    """
    if not shapes:
        return None
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    specs = [parse_input_shape(text) for text in shapes]
    if model is not None and len(specs) != len(model.inputs):
        raise CliError(f"--input_shape: the model has {len(model.inputs)} input(s) but "
                       f"{len(specs)} shape(s) were given; repeat the flag once per input.")
    dtypes = ([tf.as_dtype(t.dtype) for t in model.inputs] if model is not None
              else [tf.float32] * len(specs))
    return [tf.TensorSpec(dims, dtype) for dims, dtype in zip(specs, dtypes)]


def load_dataset(name):
    """`(x_train, y_train), (x_test, y_test)` of a built-in example dataset."""
    from vai_optimizer_tf import datasets  # pylint: disable=import-outside-toplevel
    try:
        if name == "fashion_mnist":
            return datasets.load_fashion_mnist()
        if name == "mnist_5k":
            return datasets.load_mnist_5k()
        return datasets.load_example_dataset()[1]
    except (ImportError, FileNotFoundError) as e:
        raise CliError(f"--dataset={name}: {one_line(e)}") from e


def fit_to_model(x, model):
    """Reshapes 28x28x1 images to the model's single input shape, or raises."""
    if len(model.inputs) != 1:
        raise CliError("--dataset needs a model with one input.")
    shape = tuple(model.inputs[0].shape[1:])
    if None in shape or int(np.prod(shape)) != int(np.prod(x.shape[1:])):
        raise CliError(f"--dataset: the example images are 28x28x1 but the model input is "
                       f"{(None,) + shape}; pass your own --eval_fn/--train_fn instead.")
    return x.reshape((-1,) + shape)
