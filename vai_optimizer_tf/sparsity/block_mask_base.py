"""What every flavour's `BlockSparseMask` constraint does, and finding the masks of a model.

A `BlockSparseMask` keeps the pruned entries of an N:M block-sparse weight
at zero. It relies on the optimizers of both Keras flavours applying a
variable's constraint right after every update, inside the compiled train
step (so it holds with momentum, AdamW, `steps_per_execution`, mixed
precision, XLA and `tf.distribute`), and needs no callback and no wrapper
layer. Each flavour has its own constraint class (`tf_keras_block_mask.py`,
`keras3_block_mask.py`), both registered under
`vai_optimizer_tf>BlockSparseMask` in their flavour's registry; this module
holds the logic they share.

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
  (`tf.init_scope`, as optimizers do to build their slots). Under
  `run_eagerly=True` the first call comes after the first update; the
  selection is then made on the updated kernel, which still satisfies the
  pattern.
"""

import numpy as np
import tensorflow as tf

from vai_optimizer_tf.graph import adapters
from vai_optimizer_tf.masks import channel_mask_base
from vai_optimizer_tf.sparsity import block_pattern
from vai_optimizer_tf.sparsity.sparse_targets import constraint_key

REGISTERED_NAME = "vai_optimizer_tf>BlockSparseMask"


class BlockSparseMaskBase:
    """Keeps the pruned entries of an N:M weight at zero; mixed into a flavour's `Constraint`.

    A flavour's class sets `keras_module` (`tf_keras`, or Keras 3's `keras`),
    which serializes it and its inner constraint.

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
    """

    keras_module = None

    def __init__(self, shape, axis, block_size, sparsity, zeros=None, inner=None):
        self.shape = tuple(int(d) for d in shape)
        self.axis = int(axis) % len(self.shape)
        self.block_size = int(block_size)
        self.sparsity = float(sparsity)
        target = block_pattern.BlockPattern.from_sparsity(self.sparsity, self.block_size)
        self.pattern = block_pattern.BlockPattern(
            self.block_size, target.zeros if zeros is None else int(zeros))
        self.inner_config = inner
        self.inner = self._deserialize_constraint(inner) if inner else None
        # ONLY_FIRST_REPLICA: under a distribution strategy, an assignment made
        # while a replica function is traced is valid and mirrored.
        self.mask = tf.Variable(np.ones(self.shape, np.float32), trainable=False,
                                name="block_sparse_mask",
                                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self._is_set = False

    def _deserialize_constraint(self, config):
        """The flavour's constraint object of a serialized constraint."""
        return self.keras_module.constraints.get(config)

    def serialize(self):
        """This mask as its flavour serializes it into a layer config."""
        return self.keras_module.saving.serialize_keras_object(self)

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


def is_block_mask_config(value):
    """Whether a serialized constraint is a `BlockSparseMask` (of either flavour)."""
    return isinstance(value, dict) and value.get("class_name") in ("BlockSparseMask",
                                                                   REGISTERED_NAME)


def without_block_masks(layer_config):
    """A copy of a layer config with every `BlockSparseMask` replaced by its inner constraint."""
    return channel_mask_base.strip_masks(layer_config, is_block_mask_config)


def with_block_mask(mask_class, layer_config, weight_name, shape, axis, block_size, sparsity,
                    zeros):
    """A copy of `layer_config` with a `BlockSparseMask` on one weight.

    Args:
      mask_class: The flavour's `BlockSparseMask` class.
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
    config[key] = mask_class(shape, axis, block_size, sparsity, zeros=zeros,
                             inner=layer_config.get(key)).serialize()
    return config


def find_block_masks(model):
    """Every `BlockSparseMask` of a tf_keras or Keras 3 model, nested models included.

    Returns:
      A list of `(layer path, weight name, variable, mask)`, in layer order.
    """
    adapter = adapters.adapter_for(model)
    return [(path, variable.name.split("/")[-1].split(":")[0], variable, mask)
            for path, _, variable, mask in adapter.constrained_weights(model,
                                                                       BlockSparseMaskBase)]


def restore_masks(model):
    """Sets every `BlockSparseMask` of `model` from its kernel's current values now.

    Each block keeps its `pattern.kept` largest magnitudes, which for a
    kernel saved with the pattern are exactly its non-zero entries. `fit`
    does this by itself for a freshly loaded model (when the train step is
    traced, before the first update); call this after `load_weights` into a
    model that has already trained, or before training with
    `run_eagerly=True`.

    Args:
      model: A tf_keras or Keras 3 model with block masks.

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
