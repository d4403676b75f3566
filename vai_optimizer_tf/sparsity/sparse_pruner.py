"""`SparsePruner`: fine-grained N:M block sparsity, the Vitis `SparsePruner` for Keras.

The sparse model is the user's architecture rebuilt from its layer configs
(same layer names and configs, no wrapper layers), each sparse kernel
carrying a `BlockSparseMask` constraint that keeps its pruned entries at
zero through `fit` with any optimizer. With activation sparsity, a small
`ActivationSparsity` layer is inserted in front of each sparse layer.
"""

import logging

from vai_optimizer_tf.graph import adapters
from vai_optimizer_tf.sparsity import block_mask_base as block_mask
from vai_optimizer_tf.sparsity import block_pattern
from vai_optimizer_tf.sparsity import flavour_classes
from vai_optimizer_tf.sparsity import sparse_export
from vai_optimizer_tf.sparsity import sparse_targets
from vai_optimizer_tf.sparsity.activation_sparsity_base import ActivationSparsityBase

logger = logging.getLogger("vai_optimizer_tf")

ACTIVATION_SUFFIX = "input_sparsity"


class SparsePruner:
    """Builds N:M block-sparse versions of a model, and exports them.

    Blocks are `block_size` consecutive weights along the input-channel axis
    of Conv1D/2D/3D, ConvTranspose, Dense (and the pointwise kernel of
    separable convs); which axis that is comes from the layer registry. In
    each block the `w_sparsity * block_size` smallest magnitudes are zero.
    Layers whose input channels are not a multiple of the block (such as a
    3-channel stem) and depthwise kernels stay dense; `sparsity_report`
    lists them with the reason.

    The input can be a slim model from channel pruning: prune channels with
    `channel_divisible` a multiple of the block size, then sparsify the slim
    model. The model passed in is never modified.

    Args:
      model: A tf_keras or Keras 3 Sequential or Functional model (nested
        models and shared layers included).
      input_signature: Optional `tf.TensorSpec` (or list, one per input) for
        models whose input shape has undefined dimensions. Defaults to the
        model's own input shapes.

    Raises:
      UnsupportedModelError: for models no adapter reads.
      ValueError: if `model` is already N:M sparse, or is a sparse model of
        channel pruning (pass its slim model).

    Example:

    ```python
    import numpy as np
    import tf_keras
    import vai_optimizer_tf as vot

    inputs = tf_keras.Input((16, 16, 3))
    x = tf_keras.layers.Conv2D(16, 3, activation="relu", name="stem")(inputs)
    x = tf_keras.layers.Conv2D(32, 3, activation="relu", name="conv")(x)
    x = tf_keras.layers.GlobalAveragePooling2D()(x)
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(10, name="head")(x))

    pruner = vot.SparsePruner(model)
    sparse = pruner.sparse_model(w_sparsity=0.5, block_size=4)   # 2:4
    sparse.compile("adam", tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    sparse.fit(np.random.rand(32, 16, 16, 3), np.random.randint(0, 10, 32), verbose=0)
    print(vot.sparsity_report(sparse))
    ```
    """

    def __init__(self, model, input_signature=None):
        self.model = model
        self.input_signature = input_signature
        self._adapter = adapters.adapter_for(model, input_signature)
        self.graph = self._adapter.graph
        if any(issubclass(n.layer_class, ActivationSparsityBase) for n in self.graph.nodes) \
                or block_mask.find_block_masks(self._adapter.model):
            raise ValueError(
                f"Model {model.name!r} is already N:M sparse (it carries BlockSparseMask "
                "constraints or ActivationSparsity layers). Pass the dense model, or the "
                "slim model of channel pruning.")
        if self._adapter.channel_masks(self._adapter.model):
            raise ValueError(
                f"Model {model.name!r} is a sparse model of channel pruning (it carries "
                "ChannelMask constraints, which N:M sparsity would drop). Pass its slim model: "
                "runner.get_slim_model(spec, weights_from=sparse_model).")

    def plan(self, block_size=4, a_sparsity=0.0, excludes=None):
        """Which weights `sparse_model` would sparsify, and which it leaves dense.

        Args:
          block_size: Consecutive input channels per block. Defaults to `4`.
          a_sparsity: Activation sparsity (layers that cannot take it are
            excluded). Defaults to `0.0`.
          excludes: Layers (names or objects) to leave dense. Defaults to none.

        Returns:
          `(targets, exclusions)`: lists of `SparseTarget` and `Exclusion`.
        """
        return sparse_targets.plan_targets(self.graph, block_size, a_sparsity,
                                           self._adapter.resolve_layers(excludes))

    def sparse_model(self, w_sparsity=0.5, block_size=4, a_sparsity=0.0, excludes=None,
                     gradual=False):
        """Builds the N:M sparse model.

        Args:
          w_sparsity: Fraction of each weight block that is zero: `0.5` or
            `0.75`. Defaults to `0.5`.
          block_size: Consecutive input channels per block: 4, 8 or 16.
            `w_sparsity=0.5, block_size=4` is 2:4; `0.75` with 16 is 4:16.
            Defaults to `4`.
          a_sparsity: Fraction of each block of a sparse layer's *inputs*
            zeroed at run time: `0.0` or `0.5`, which requires
            `w_sparsity=0.75`. Defaults to `0.0`.
          excludes: Layers (names or objects) to leave dense. Defaults to none.
          gradual: Keep every weight for now (masks all ones), for
            `vot.callbacks.GradualSparsity` to reach `w_sparsity` during
            `fit`. Defaults to `False`: the pattern is applied now, keeping
            the largest magnitudes of every block.

        Returns:
          A new model of the input's flavour (uncompiled) with the user's
          layer names and configs, each sparse kernel constrained by a
          `BlockSparseMask` of that flavour.

        Raises:
          ValueError: for a bad `w_sparsity`/`block_size`/`a_sparsity`
            combination, an unknown layer in `excludes`, or a block size no
            layer can take.
        """
        w_sparsity, block_size, a_sparsity = block_pattern.check_sparsity_config(
            w_sparsity, block_size, a_sparsity)
        targets, exclusions = self.plan(block_size, a_sparsity, excludes)
        if not targets:
            self._raise_no_target(block_size, a_sparsity, exclusions)
        pattern = block_pattern.BlockPattern.from_sparsity(w_sparsity, block_size)
        zeros = 0 if gradual else pattern.zeros
        weights = self._adapter.all_weights()
        mask_class = flavour_classes.block_mask_class(self._adapter.flavour)
        configs, keeps = {}, {}
        for target in targets:
            value = weights[target.layer][target.index]
            keep = block_pattern.kept_mask(
                value, target.axis, block_pattern.BlockPattern(block_size, zeros))
            keeps[(target.layer, target.index)] = keep
            weights[target.layer] = list(weights[target.layer])
            weights[target.layer][target.index] = value * keep
            configs[target.layer] = block_mask.with_block_mask(
                mask_class, configs.get(target.layer, self._layer_config(target.layer)),
                target.weight, target.shape, target.axis, block_size, w_sparsity, zeros)
        model = self._adapter.rebuild(layer_configs=configs, layer_weights=weights)
        if a_sparsity > 0:
            model = self._with_activation_sparsity(model, targets, block_size, a_sparsity)
        for path, index, _, mask in self._adapter.constrained_weights(
                model, block_mask.BlockSparseMaskBase):
            mask.set_mask(keeps[(path, index)])
        logger.info("SparsePruner: %d weights at %s, %d left dense", len(targets),
                    pattern, len(exclusions))
        return model

    def _layer_config(self, path):
        return self.graph.nodes_of_layer(path)[0].config  # read without channel masks

    def _with_activation_sparsity(self, model, targets, block_size, a_sparsity):
        dtypes = {t.layer: self.graph.nodes_of_layer(t.layer)[0].config.get("dtype")
                  for t in targets}
        layer_class = flavour_classes.activation_sparsity_class(self._adapter.flavour)

        def layer_for(path):
            if path not in dtypes:
                return None
            kwargs = {"dtype": dtypes[path]} if dtypes[path] is not None else {}
            return layer_class(block_size, a_sparsity, **kwargs)

        return self._adapter.insert_before(model, layer_for, ACTIVATION_SUFFIX)[0]

    def _raise_no_target(self, block_size, a_sparsity, exclusions):
        listed = "; ".join(e.describe() for e in exclusions[:8]) or "the model has no kernels"
        if sparse_targets.plan_targets(self.graph, block_size, a_sparsity)[0]:
            raise ValueError(f"Invalid `excludes`: no layer is left to sparsify ({listed}).")
        raise ValueError(
            f"Invalid `block_size`: no layer of model {self.graph.name!r} can take blocks of "
            f"{block_size} input channels ({listed}). Choose a block size that divides the "
            "input channels of the layers to sparsify.")

    def export_sparse_model(self, model, output_dir, representative_data=None,
                            overwrite=True, print_fn=print):
        """Exports a (fine-tuned) sparse model for deployment.

        See `vai_optimizer_tf.sparsity.export_sparse_model`, which this calls
        with the pruner's `input_signature`.
        """
        return sparse_export.export_sparse_model(
            model, output_dir, representative_data=representative_data,
            input_signature=self.input_signature, overwrite=overwrite, print_fn=print_fn)
