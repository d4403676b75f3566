"""`BlockSparseMask`: the tf_keras constraint that holds an N:M pattern through training.

Like `ChannelMask`, it relies on tf_keras optimizers applying a variable's
constraint right after every update, inside the compiled train step (so it
holds with momentum, AdamW, `steps_per_execution`, mixed precision and
`tf.distribute`), and needs no callback and no wrapper layer.

The element mask itself is not stored in the layer config: it would be as
large as the kernel (and `.h5` configs are limited to 64 KB). The config
holds only the pattern (`block_size`, `sparsity`, the current `zeros` per
block, the input-channel `axis`); the mask lives in a non-trainable variable
and is set in one of two ways:

* `SparsePruner.sparse_model` (and `GradualSparsity`) set it explicitly;
* a model loaded from a file (or built from a config) recovers it from the
  kernel itself: pruned weights are exactly zero after every update, so the
  mask is the pattern's selection of the kernel's largest magnitudes, which
  for a kernel saved with the pattern keeps exactly its non-zero entries.
  This happens when the train step is first traced: the constraint is traced
  before any update runs, and reads the kernel eagerly at that moment
  (`tf.init_scope`, as tf_keras optimizers do to build their slots). Under
  `run_eagerly=True` the first call comes after the first update; the
  selection is then made on the updated kernel, which still satisfies the
  pattern.

The class is registered with Keras as `vai_optimizer_tf>BlockSparseMask`, and
under its bare name for the legacy `.h5` loader.
"""

import numpy as np
import tensorflow as tf
import tf_keras

from vai_optimizer_tf.sparsity import block_pattern
from vai_optimizer_tf.sparsity.sparse_targets import constraint_key

REGISTERED_NAME = "vai_optimizer_tf>BlockSparseMask"


@tf_keras.saving.register_keras_serializable(package="vai_optimizer_tf")
class BlockSparseMask(tf_keras.constraints.Constraint):
    """Keeps the pruned entries of an N:M block-sparse weight at zero.

    Args:
      shape: The weight's shape.
      axis: The weight's input-channel axis, along which blocks are cut.
      block_size: Consecutive input channels per block.
      sparsity: The target fraction of zeros per block (the model's
        `w_sparsity`).
      zeros: Zero entries per block that the mask holds now. Defaults to
        the target, `sparsity * block_size`; `GradualSparsity` raises it from
        0 during training.
      inner: Optional serialized constraint the layer had before, applied
        first. Defaults to `None`.

    Example:

    ```python
    mask = BlockSparseMask(shape=(3, 3, 8, 4), axis=2, block_size=4, sparsity=0.5)
    mask.set_from_weights(np.random.rand(3, 3, 8, 4))   # keeps the 2 largest of each 4
    w = mask(tf.ones((3, 3, 8, 4)))                       # half of every block is zero
    ```
    """

    def __init__(self, shape, axis, block_size, sparsity, zeros=None, inner=None):
        self.shape = tuple(int(d) for d in shape)
        self.axis = int(axis) % len(self.shape)
        self.block_size = int(block_size)
        self.sparsity = float(sparsity)
        target = block_pattern.BlockPattern.from_sparsity(self.sparsity, self.block_size)
        self.pattern = block_pattern.BlockPattern(
            self.block_size, target.zeros if zeros is None else int(zeros))
        self.inner_config = inner
        self.inner = tf_keras.constraints.get(inner) if inner else None
        # ONLY_FIRST_REPLICA: under a distribution strategy, an assignment made
        # while a replica function is traced is valid and mirrored.
        self.mask = tf.Variable(np.ones(self.shape, np.float32), trainable=False,
                                name="block_sparse_mask",
                                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self._is_set = False

    @property
    def target(self):
        """The `BlockPattern` the model aims at."""
        return block_pattern.BlockPattern.from_sparsity(self.sparsity, self.block_size)

    def __call__(self, w):
        if not self._is_set:
            self._recover(w)
        if self.inner is not None:
            w = self.inner(w)
        return w * tf.cast(self.mask, w.dtype)

    def _recover(self, w):
        if not tf.inside_function() and tf.distribute.has_strategy() \
                and not tf.distribute.in_cross_replica_context():
            raise ValueError(
                "BlockSparseMask has no mask yet and runs eagerly inside a distribution "
                "strategy's replica, after the first update. Call "
                "vai_optimizer_tf.sparsity.restore_masks(model) before training, or do not "
                "pass run_eagerly=True.")
        with tf.init_scope():  # eager, before the traced update runs
            try:
                value = np.asarray(w.numpy())
            except (AttributeError, NotImplementedError, ValueError) as e:
                raise ValueError(
                    "BlockSparseMask has no mask yet and was called on a symbolic tensor, "
                    "whose values cannot be read. Call it on the weight variable (as Keras "
                    "optimizers do), or call set_from_weights(kernel) first.") from e
            self.set_from_weights(value)

    def set_mask(self, keep):
        """Sets which entries are kept (a boolean array of the weight's shape)."""
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != self.shape:
            raise ValueError(f"Invalid `keep`: expected shape {self.shape}. "
                             f"Received: shape {keep.shape}")
        self.mask.assign(keep.astype(np.float32))
        self._is_set = True

    def set_from_weights(self, values, zeros=None):
        """Keeps the largest magnitudes of every block of `values` (ties: lower index).

        Args:
          values: The weight's current value (numpy).
          zeros: Zero entries per block from now on. Defaults to the current
            `pattern.zeros`.

        Returns:
          The boolean keep mask.
        """
        if zeros is not None:
            self.pattern = block_pattern.BlockPattern(self.block_size, int(zeros))
        keep = block_pattern.kept_mask(values, self.axis, self.pattern)
        self.set_mask(keep)
        return keep

    def kept(self):
        """The boolean keep mask now."""
        return self.mask.numpy() > 0

    def get_config(self):
        return {"shape": list(self.shape), "axis": self.axis, "block_size": self.block_size,
                "sparsity": self.sparsity, "zeros": self.pattern.zeros,
                "inner": self.inner_config}


def _register():
    """Also registers `BlockSparseMask` under its bare class name, for the `.h5` loader.

    See `ChannelMask`: tf_keras' legacy `.h5` loader looks constraints up by
    `class_name` alone. A class the user registered under that name first
    is left in place.
    """
    tf_keras.saving.get_custom_objects().setdefault(BlockSparseMask.__name__, BlockSparseMask)


_register()


def is_block_mask_config(value):
    """Whether a serialized constraint is a `BlockSparseMask`."""
    return isinstance(value, dict) and value.get("class_name") in (BlockSparseMask.__name__,
                                                                   REGISTERED_NAME)


def without_block_masks(layer_config):
    """A copy of a layer config with every `BlockSparseMask` replaced by its inner constraint."""
    config = dict(layer_config)
    for key, value in layer_config.items():
        if key.endswith("_constraint") and is_block_mask_config(value):
            config[key] = value.get("config", {}).get("inner")
    return config


def with_block_mask(layer_config, weight_name, shape, axis, block_size, sparsity, zeros):
    """A copy of `layer_config` with a `BlockSparseMask` on one weight.

    Args:
      layer_config: The layer's config (without block masks).
      weight_name: The weight's short name (`kernel`, `pointwise_kernel`).
      shape: The weight's shape.
      axis: Its input-channel axis.
      block_size: Consecutive input channels per block.
      sparsity: The target fraction of zeros.
      zeros: Zero entries per block held from the start.

    Returns:
      The new config, or `None` when the layer has no constraint argument
      for this weight.
    """
    key = constraint_key(weight_name)
    if key not in layer_config:
        return None
    config = dict(layer_config)
    mask = BlockSparseMask(shape, axis, block_size, sparsity, zeros=zeros,
                           inner=layer_config.get(key))
    config[key] = tf_keras.saving.serialize_keras_object(mask)
    return config


def restore_masks(model):
    """Sets every `BlockSparseMask` of `model` from its kernel's current values now.

    Each block keeps its `pattern.kept` largest magnitudes, which for a
    kernel saved with the pattern are exactly its non-zero entries. `fit`
    does this by itself for a freshly loaded model (when the train step is
    traced, before the first update); call this after `load_weights` into a
    model that has already trained, or before training with
    `run_eagerly=True`.

    Args:
      model: A tf_keras model with block masks.

    Returns:
      The number of masks set.

    Raises:
      ValueError: if `model` has no block masks.
    """
    found = find_block_masks(model)
    if not found:
        raise ValueError(f"Model {model.name!r} has no BlockSparseMask: it is not a sparse "
                         "model of vai_optimizer_tf.SparsePruner.")
    for _, _, variable, mask in found:
        keep = mask.set_from_weights(variable.numpy())
        variable.assign(variable.numpy() * keep)
    return len(found)


def find_block_masks(model, prefix=""):
    """Every `BlockSparseMask` of a tf_keras model, nested models included.

    Returns:
      A list of `(layer path, weight name, variable, mask)`, in layer order.
    """
    found = []
    for layer in model.layers:
        path = prefix + layer.name
        if isinstance(layer, tf_keras.Model) and getattr(layer, "_is_graph_network", False):
            found.extend(find_block_masks(layer, path + "/"))
            continue
        for variable in layer.weights:
            constraint = getattr(variable, "constraint", None)
            if isinstance(constraint, BlockSparseMask):
                name = variable.name.split("/")[-1].split(":")[0]
                found.append((path, name, variable, constraint))
    return found
