"""`SlimModelExport`: saves the slim model when `fit` ends."""

import os

from vai_optimizer_tf.callbacks.pruning_callback import PruningCallback
from vai_optimizer_tf.export import keras_format
from vai_optimizer_tf.export import saved_model


class SlimModelExport(PruningCallback):
    """At the end of `fit`, removes the pruned channels and saves the slim model.

    The spec the model ends with is saved beside it (`<filepath>.spec.json`).
    Both are written atomically (temporary path next to the target, then
    rename), so a run killed while saving leaves the previous files intact.

    Args:
      runner: The `IterativePruningRunner` that built the sparse model.
      filepath: Where to save the slim model (`.keras`, `.h5`, or a folder
        for a SavedModel with a `serving_default` signature, see
        `vai_optimizer_tf.export.export_saved_model`).

    Example:

    ```python
    sparse.fit(x, y, epochs=1, verbose=0,
               callbacks=[vot.callbacks.SlimModelExport(runner, "slim.keras")])
    ```
    """

    def __init__(self, runner, filepath):
        super().__init__()
        if not isinstance(filepath, (str, os.PathLike)) or not os.fspath(filepath):
            raise ValueError(f"Invalid `filepath`: expected a path. Received: filepath={filepath!r}")
        self.runner = runner
        self.filepath = os.fspath(filepath)

    def on_train_begin(self, logs=None):
        self.runner.mask_state(self.model)  # fails now if this is not a sparse model

    def on_train_end(self, logs=None):
        spec = self.runner.spec_from_model(self.model)
        slim = self.runner.get_slim_model(spec, weights_from=self.model)
        if self.filepath.lower().endswith(keras_format.KERAS_SUFFIXES):
            keras_format.save_keras(slim, self.filepath)
        else:
            saved_model.export_saved_model(slim, self.filepath, print_fn=None)
        spec.save(self.filepath + ".spec.json")
