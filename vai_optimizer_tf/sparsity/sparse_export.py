"""`export_sparse_model`: a fine-tuned N:M sparse model as plain Keras, SavedModel and TFLite.

The masks are dropped (the kernels keep their zeros), so the Keras model is
a plain model of its flavour (tf_keras or Keras 3); an `ActivationSparsity`
layer, when present, stays (it is plain TensorFlow ops in the SavedModel and
TFLite files). A Keras 3 model's SavedModel is what
`model.export(path, format="tf_saved_model")` writes. The TFLite files
are converted with `tf.lite.Optimize.EXPERIMENTAL_SPARSITY`, which stores
sparse weights as their non-zero values plus indices; each is then read back
from the interpreter and every sparse kernel's pattern is counted there.
"""

import dataclasses
import logging
import os
from typing import Any, Dict

from vai_optimizer_tf.export import keras_format, saved_model, tflite
from vai_optimizer_tf.graph import adapters
from vai_optimizer_tf.sparsity import block_mask_base as block_mask
from vai_optimizer_tf.sparsity import sparse_targets
from vai_optimizer_tf.sparsity import tflite_pattern_check
from vai_optimizer_tf.sparsity.activation_sparsity_base import ActivationSparsityBase
from vai_optimizer_tf.utils import atomic

logger = logging.getLogger("vai_optimizer_tf")

KERAS_NAME = "model.keras"
SAVED_MODEL_NAME = "saved_model"
TFLITE_NAMES = {"float": "model_float.tflite", "int8": "model_int8.tflite"}


@dataclasses.dataclass(frozen=True)
class SparseTFLite:
    """One sparse-encoded TFLite file.

    Attributes:
      path: The `.tflite` file.
      quantization: `"float"` or `"int8"`.
      size_bytes: Its size.
      dense_size_bytes: The size of the same model converted without sparse
        encoding (not written), for comparison.
      check: The `PatternCheck` of its kernels, read back from the interpreter.
    """

    path: str
    quantization: str
    size_bytes: int
    dense_size_bytes: int
    check: tflite_pattern_check.PatternCheck


@dataclasses.dataclass(frozen=True)
class SparseExport:
    """What `export_sparse_model` wrote.

    Attributes:
      model: The plain Keras model (masks removed, zeros kept).
      keras_path: The `.keras` file.
      saved_model_dir: The SavedModel folder (`serving_default` signature).
      tflite: Quantization -> `SparseTFLite`.
    """

    model: Any
    keras_path: str
    saved_model_dir: str
    tflite: Dict[str, SparseTFLite]

    @property
    def compliant(self):
        """Whether every TFLite file keeps the pattern in every sparse kernel."""
        return all(t.check.compliant for t in self.tflite.values())

    def describe(self):
        lines = [f"Keras model: {self.keras_path}", f"SavedModel: {self.saved_model_dir}"]
        for t in self.tflite.values():
            lines.append(f"TFLite {t.quantization}: {t.path}, {t.size_bytes / 1024:.1f} KB "
                         f"sparse-encoded ({t.dense_size_bytes / 1024:.1f} KB dense)")
            lines.append("  " + t.check.describe().replace("\n", "\n  "))
        return "\n".join(lines)


def plain_model(model):
    """A copy of a sparse model without its `BlockSparseMask`s (same weights, zeros kept).

    Raises:
      ValueError: if `model` has no block masks.
    """
    found = block_mask.find_block_masks(model)
    if not found:
        raise ValueError(f"Model {model.name!r} has no BlockSparseMask: pass a sparse model "
                         "built by vai_optimizer_tf.SparsePruner (or reloaded from one).")
    adapter = adapters.adapter_for(model)
    configs = {path: block_mask.without_block_masks(adapter.layer_config(path))
               for path in {path for path, _, _, _ in found}}
    return adapter.rebuild(layer_configs=configs)


def sparse_kernels(model):
    """`(layer, weight, values, in_axis, out_axis)` and the pattern of a sparse model's kernels."""
    found = block_mask.find_block_masks(model)
    masks = {(path, name): mask for path, name, _, mask in found}
    values = {(path, name): variable.numpy() for path, name, variable, _ in found}
    first = found[0][3]
    graph = adapters.adapter_for(model).graph
    a_sparsity = next((n.config["sparsity"] for n in graph.nodes
                       if issubclass(n.layer_class, ActivationSparsityBase)), 0.0)
    targets, _ = sparse_targets.plan_targets(graph, first.block_size, a_sparsity)
    kernels = [(t.layer, t.weight, values[(t.layer, t.weight)], t.axis, t.out_axis)
               for t in targets if (t.layer, t.weight) in masks]
    return kernels, first.target


def export_sparse_model(model, output_dir, representative_data=None, input_signature=None,
                        overwrite=True, print_fn=print):
    """Writes a sparse model as plain Keras, SavedModel and sparse-encoded TFLite files.

    Into `output_dir`: `model.keras` (masks removed: it loads with plain
    tf_keras, or plain Keras 3 for a Keras 3 model, unless the model has
    activation sparsity, whose layer needs `import vai_optimizer_tf`),
    `saved_model/` (TF Serving, plain TF ops; for a Keras 3 model written as
    `model.export(..., format="tf_saved_model")` writes it),
    `model_float.tflite` and, with `representative_data`, `model_int8.tflite`
    (full-integer), both converted with `tf.lite.Optimize.EXPERIMENTAL_SPARSITY`.
    Every file is written atomically. Each TFLite file is read back from the
    interpreter and the N:M pattern of every sparse kernel is counted there.

    Args:
      model: A sparse model from `SparsePruner.sparse_model` (fine-tuned).
      output_dir: The export folder (created if missing).
      representative_data: Calibration inputs for the int8 file (see
        `vai_optimizer_tf.export.representative_dataset`). Defaults to
        `None`: no int8 file.
      input_signature: Optional `tf.TensorSpec` (or list) for undefined
        input dimensions. Defaults to the model's own input shapes.
      overwrite: Replace existing files, as `model.save` does. With `False`
        an existing one raises `FileExistsError`. Defaults to `True`.
      print_fn: Where the summary goes; `None` is silent. Defaults to `print`.

    Returns:
      A `SparseExport`.

    Raises:
      ValueError: if `model` is not an N:M sparse model.
      FileExistsError: if `overwrite=False` and an output exists.

    Example:

    ```python
    result = pruner.export_sparse_model(sparse, "sparse_export")
    print(result.tflite["float"].size_bytes, result.compliant)   # ... True
    ```
    """
    output_dir = os.fspath(output_dir)
    quantizations = ["float"] + (["int8"] if representative_data is not None else [])
    keras_path = os.path.join(output_dir, KERAS_NAME)
    saved_dir = os.path.join(output_dir, SAVED_MODEL_NAME)
    tflite_paths = {q: os.path.join(output_dir, TFLITE_NAMES[q]) for q in quantizations}
    atomic.check_writable([keras_path, saved_dir] + list(tflite_paths.values()), overwrite)
    plain = plain_model(model)
    kernels, pattern = sparse_kernels(model)
    keras_format.save_keras(plain, keras_path, sparse_ok=True)
    saved_model.export_saved_model(plain, saved_dir, input_signature=input_signature,
                                   print_fn=None)
    files = {}
    for quantization in quantizations:
        content, dense = (tflite.convert_to_tflite(plain, quantization, representative_data,
                                                   input_signature=input_signature,
                                                   sparse_weights=sparse)
                          for sparse in (True, False))
        atomic.write_bytes_atomic(tflite_paths[quantization], content)
        check = tflite_pattern_check.check_pattern(content, kernels, pattern)
        files[quantization] = SparseTFLite(tflite_paths[quantization], quantization,
                                           len(content), len(dense), check)
        if not check.compliant:
            logger.warning("TFLite %s export: the N:M pattern did not survive.\n%s",
                           quantization, check.describe())
    result = SparseExport(plain, keras_path, saved_dir, files)
    if print_fn is not None:
        print_fn(result.describe())
    return result

